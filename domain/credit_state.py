"""What the customer account keeps for credit management (``AccountState.credit``).

It lives on the account so that one load answers an order credit check: the running
open-AR total (kept by the appliers of the money events, in the account's currency), the
uninvoiced orders, the limit, covers, holds and grade. Every field has a default, so
snapshots taken before credit management existed still decode (``ar_synced`` False makes
the first reader derive the open-AR total from the invoices once).
"""

from __future__ import annotations

from datetime import date

import msgspec


class CoverState(msgspec.Struct, kw_only=True):
    kind: str  # insurance | guarantee
    provider: str
    covered_minor: int
    valid_from: date
    valid_until: date | None = None

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day <= self.valid_until)


class OrderState(msgspec.Struct, kw_only=True):
    order_id: str
    amount_minor: int
    open_minor: int  # not yet invoiced
    ordered_on: date
    placed_by: str
    status: str = "placed"  # placed | approved | held | rejected | cancelled | invoiced
    decision: str | None = None

    @property
    def counts_in_exposure(self) -> bool:
        return self.status in ("placed", "approved", "held")


class LimitRequestState(msgspec.Struct, kw_only=True):
    request_id: str
    limit_minor: int
    requested_by: str
    status: str = "requested"  # requested | approved | rejected


class HoldState(msgspec.Struct, kw_only=True):
    cause: str
    automatic: bool
    reason: str
    placed_on: date


class Signal(msgspec.Struct, kw_only=True):
    """Something since the last assessment that brings a review forward."""

    kind: str  # late_payment | dispute | broken_promise
    on: date


class WarningState(msgspec.Struct, kw_only=True):
    threshold: str
    measured: str
    raised_on: date


class CreditState(msgspec.Struct, kw_only=True):
    grade: str | None = None
    previous_grade: str | None = None
    score: int | None = None
    assessed_on: date | None = None
    assessed_overdue_days: int = 0
    limit_minor: int | None = None
    limit_requests: dict[str, LimitRequestState] = msgspec.field(default_factory=dict)
    covers: dict[str, CoverState] = msgspec.field(default_factory=dict)
    orders: dict[str, OrderState] = msgspec.field(default_factory=dict)
    open_orders_minor: int = 0
    open_ar_minor: int = 0
    ar_synced: bool = False
    holds: dict[str, HoldState] = msgspec.field(default_factory=dict)
    signals: list[Signal] = msgspec.field(default_factory=list)
    last_review_id: str | None = None
    warnings: dict[str, WarningState] = msgspec.field(default_factory=dict)

    def covered_on(self, day: date) -> int:
        return sum(c.covered_minor for c in self.covers.values() if c.valid_on(day))
