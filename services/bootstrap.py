"""Wire the application from settings: one place that builds the real dependencies,
so tests and every process (CLI, API, workers) get the same graph."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services import collections_registration
from services.clock.policy import load_policy
from services.credit import CreditService  # importing it registers the credit handlers and appliers
from services.ledger import LedgerService, utc_now
from services.logging import configure_logging
from services.persistence import LedgerStore
from services.settings import Settings


@dataclass
class App:
    settings: Settings
    store: LedgerStore
    ledger: LedgerService
    credit: CreditService | None = None

    def close(self) -> None:
        self.ledger.close()  # its committer finishes what was submitted before the store closes
        self.store.close()


def bootstrap(settings: Settings | None = None, *, clock: Callable[[], datetime] = utc_now, configure_logs: bool = True) -> App:
    settings = settings or Settings.from_env()
    if configure_logs:
        configure_logging(settings)
    collections_registration.register(load_policy(settings.dunning_policy).promise_tolerance_days)
    store = LedgerStore(settings)
    ledger = LedgerService(store, clock=clock)
    return App(settings=settings, store=store, ledger=ledger, credit=CreditService(store, ledger, policy_file=settings.scorecard or None))
