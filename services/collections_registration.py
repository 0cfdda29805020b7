"""Plug the collections commands into the ledger service and their appliers into the
account (imported once by ``services.bootstrap``)."""

from __future__ import annotations

from domain.account import register_applier
from domain.collections_commands import APPLIERS, handlers
from services.ledger import register_handler


def register(default_promise_tolerance_days: int) -> None:
    for event_type, applier in APPLIERS.items():
        register_applier(event_type, applier)
    for command_type, handler in handlers(default_promise_tolerance_days).items():
        register_handler(command_type, handler)
