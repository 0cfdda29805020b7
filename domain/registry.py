"""Registries: small aggregates that make identifiers unique across the whole ledger.

A customer account is the consistency boundary for money (allocation limits, open
amounts), but an invoice number must be unique across *all* accounts, and a command's
idempotency key across all commands. Each such claim is an aggregate of its own whose
id is derived from the claimed value (uuid5); saving its first event together with
the account's events, in one atomic save, means a second claim collides on the
store's (originator_id, version) key and the whole command records nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID, uuid5

from domain.events import Event

NAMESPACE = UUID("6f1c3a52-4d1e-4bb0-9a57-2f0b1f6d8e11")


def account_id(customer_id: str) -> UUID:
    """Aggregate id of a customer account, derived from the customer's external code."""
    return uuid5(NAMESPACE, f"customer:{customer_id}")


def reference_id(kind: str, reference: str) -> UUID:
    """Aggregate id of a claimed document reference (invoice, payment, credit note...)."""
    return uuid5(NAMESPACE, f"{kind}:{reference}")


def idempotency_id(actor: str, key: str) -> UUID:
    """Idempotency keys are scoped to the actor who sent them, as payment APIs do."""
    return uuid5(NAMESPACE, f"idempotency:{actor}:{key}")


def event_id(originator_id: UUID, originator_version: int) -> UUID:
    """Stable id of a stored event: the same on every read, export and re-send."""
    return uuid5(originator_id, str(originator_version))


class ReferenceClaimed(Event, frozen=True, kw_only=True):
    """``reference`` of ``kind`` now belongs to ``customer_id``'s account."""

    public: ClassVar[bool] = False
    kind: str
    reference: str
    customer_id: str


class CommandRecorded(Event, frozen=True, kw_only=True):
    """An idempotent command was recorded; ``fingerprint`` identifies its body and
    ``result`` is the answer given the first time, returned again on a repeat."""

    public: ClassVar[bool] = False
    idempotency_key: str
    fingerprint: str
    result: dict[str, Any]
