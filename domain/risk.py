"""Customer risk profile: how much a customer owes, how late it pays, what is in dispute.

Pure arithmetic over one customer's receivable rows (the ``ar_items`` view's installments,
movements and dispute events, already cut to what was known at the report's stream
position or recorded time). Everything here is a function of its inputs and the as-of
business date ``D``; nothing reads a clock or a database, so a report computed from the
same rows is the same bytes.

Definitions (README, "Customer risk profile"):

* **open AR** at D: the sum of the installments' open amounts from movements effective on
  or before D. **Overdue**: the part whose due date is before D.
* **exposure**: open AR + open orders (``open_orders_minor``: credit management passes
  its open sales orders; 0 until then). **Net exposure** = exposure - unapplied cash -
  open credits. Unapplied cash and open credits are shown apart, never netted silently.
* **settlement date** of an installment: the business date on which its open amount
  (movements summed per day, in effective-date order) last fell to 0 and stayed there up
  to D. A bounced payment that reopens an item cancels its earlier settlement.
  An installment whose closing day includes a write-off is *written off*, not settled.
* **days late** = settlement date - due date (negative = early). **Average days late** is
  weighted by the installment amount over installments settled by D. An installment is
  settled late when days late > 0; an invoice when all its installments are settled and
  at least one of them late.
* **open disputes** at D: invoices whose last dispute event effective by D (ordered by
  business date, then stream position) is a dispute, not a resolution.
* **promises to pay** at D: verdicts of the customer's promises (``PromiseToPayKept`` /
  ``PromiseToPayBroken``, recorded by the clock) whose business date is on or before D;
  the **promise-kept rate** = kept / (kept + broken).
* **DSO** at D: open AR at D / credit sales (invoices issued in the 90 days ending on D,
  ``[D-89, D]``) x 90; ``None`` when there were no sales in the window.
* **trend**: the same figures at the end of each of the last months (the current month
  ends at D), with the average days late of what settled within that month.

Money is integers in minor units; ratios are :class:`~decimal.Decimal` rounded half-even
once, to 4 places.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

import msgspec

DSO_WINDOW_DAYS = 90
TREND_MONTHS = 6


# ---- inputs --------------------------------------------------------------------------------


class InstallmentRow(NamedTuple):
    invoice_number: str
    installment: int
    issue_date: date
    due_date: date
    amount_minor: int


class MovementRow(NamedTuple):
    """A signed change of an installment's open amount (``installment`` set), of unapplied
    cash or of open credits (``installment`` None); kinds as in ``projections.ar_items``."""

    invoice_number: str | None
    installment: int | None
    kind: str
    effective_date: date
    amount_minor: int


class DisputeRow(NamedTuple):
    invoice_number: str
    kind: str  # "disputed" | "resolved"
    effective_date: date
    position: int
    amount_minor: int | None
    reason: str


class PromiseRow(NamedTuple):
    """The verdict on one promise to pay (the clock's fact), dated by its business date."""

    promise_id: str
    kind: str  # "kept" | "broken"
    effective_date: date
    promised_minor: int
    paid_minor: int


# ---- outputs -------------------------------------------------------------------------------


class Exposure(msgspec.Struct, frozen=True, kw_only=True):
    open_ar_minor: int
    open_orders_minor: int
    exposure_minor: int
    unapplied_cash_minor: int
    open_credits_minor: int
    net_exposure_minor: int


class PaymentBehaviour(msgspec.Struct, frozen=True, kw_only=True):
    """How the customer paid what it settled by D: the inputs credit scoring reads."""

    settled_installments: int
    settled_late_installments: int
    share_installments_late: Decimal | None
    settled_invoices: int
    settled_late_invoices: int
    share_invoices_late: Decimal | None
    average_days_late: Decimal | None
    written_off_installments: int
    written_off_minor: int


class OverdueItem(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    installment: int
    due_date: date
    open_minor: int
    days_past_due: int


class OpenDispute(msgspec.Struct, frozen=True, kw_only=True):
    invoice_number: str
    disputed_on: date
    amount_minor: int | None
    reason: str
    open_minor: int


class Dso(msgspec.Struct, frozen=True, kw_only=True):
    window_from: date
    window_days: int
    credit_sales_minor: int
    dso: Decimal | None


class PromiseRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Promises to pay decided by D (collections): the broken count is a scoring input."""

    kept: int = 0
    broken: int = 0
    kept_rate: Decimal | None = None  # kept / (kept + broken); None before any verdict
    last_broken_on: date | None = None


class TrendPoint(msgspec.Struct, frozen=True, kw_only=True):
    period: str  # YYYY-MM
    as_of: date
    open_minor: int
    overdue_minor: int
    dso: Decimal | None
    settled_installments: int
    average_days_late: Decimal | None


class RiskProfile(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str
    currency: str
    as_of: date
    exposure: Exposure
    open_minor: int
    open_items: int
    overdue_minor: int
    overdue_items: int
    payment: PaymentBehaviour
    largest_overdue: OverdueItem | None
    oldest_overdue: OverdueItem | None
    open_disputes: list[OpenDispute]
    open_disputes_count: int
    dso: Dso
    trend: list[TrendPoint]
    promises: PromiseRecord = msgspec.field(default_factory=PromiseRecord)


# ---- arithmetic ----------------------------------------------------------------------------


def ratio(numerator: int, denominator: int) -> Decimal | None:
    """numerator / denominator rounded half-even to 4 places, exactly (integer arithmetic)."""
    if denominator == 0:
        return None
    negative = (numerator < 0) != (denominator < 0)
    q, r = divmod(abs(numerator) * 10_000, abs(denominator))
    if 2 * r > abs(denominator) or (2 * r == abs(denominator) and q % 2):
        q += 1
    return Decimal(-q if negative else q).scaleb(-4)


class _ItemState(NamedTuple):
    open_minor: int
    settled_on: date | None  # set when open is 0 at D and it was not written off
    written_off: bool


def _item_state(moves: Sequence[tuple[date, int, str]], as_of: date) -> _ItemState:
    """Walk one installment's movements (sorted by date) up to ``as_of``, a day at a time."""
    balance, closed_on, closed_by_write_off = 0, None, False
    i, n = 0, len(moves)
    while i < n and moves[i][0] <= as_of:
        day, before, write_off = moves[i][0], balance, False
        while i < n and moves[i][0] == day:
            balance += moves[i][1]
            write_off = write_off or moves[i][2] == "written_off"
            i += 1
        if balance > 0:
            closed_on, closed_by_write_off = None, False
        elif before > 0 or closed_on is None:
            closed_on, closed_by_write_off = day, write_off
    if balance > 0 or closed_on is None:
        return _ItemState(max(balance, 0), None, False)
    if closed_by_write_off:
        return _ItemState(0, None, True)
    return _ItemState(0, closed_on, False)


class _Book:
    """One customer's rows indexed for repeated as-of evaluation (profile and trend)."""

    def __init__(self, installments: Iterable[InstallmentRow], movements: Iterable[MovementRow]) -> None:
        self.items = sorted(installments, key=lambda r: (r.due_date, r.invoice_number, r.installment))
        self.moves: dict[tuple[str, int], list[tuple[date, int, str]]] = defaultdict(list)
        self.cash: list[tuple[date, int]] = []
        self.credits: list[tuple[date, int]] = []
        for m in movements:
            if m.installment is not None and m.invoice_number is not None:
                self.moves[(m.invoice_number, m.installment)].append((m.effective_date, m.amount_minor, m.kind))
            elif m.kind.startswith("cash_"):
                self.cash.append((m.effective_date, m.amount_minor))
            elif m.kind == "open_credit":
                self.credits.append((m.effective_date, m.amount_minor))
        for moves in self.moves.values():
            moves.sort()  # by date (same-day order is irrelevant: a day is applied as a whole)

    def states(self, as_of: date) -> list[tuple[InstallmentRow, _ItemState]]:
        return [(row, _item_state(self.moves.get((row.invoice_number, row.installment), ()), as_of))
                for row in self.items if row.issue_date <= as_of]


def _overdue(row: InstallmentRow, open_minor: int, as_of: date) -> OverdueItem:
    return OverdueItem(invoice_number=row.invoice_number, installment=row.installment, due_date=row.due_date,
                       open_minor=open_minor, days_past_due=(as_of - row.due_date).days)


def _payment(states: Sequence[tuple[InstallmentRow, _ItemState]]) -> PaymentBehaviour:
    weighted = weight = late = settled = written_off = written_off_minor = 0
    invoices: dict[str, list[bool | None]] = defaultdict(list)  # per installment: late?, None = not settled
    for row, st in states:
        if st.settled_on is not None:
            days = (st.settled_on - row.due_date).days
            settled += 1
            late += days > 0
            weighted += row.amount_minor * days
            weight += row.amount_minor
            invoices[row.invoice_number].append(days > 0)
        else:
            invoices[row.invoice_number].append(None)
            if st.written_off:
                written_off += 1
                written_off_minor += row.amount_minor
    done = [flags for flags in invoices.values() if None not in flags]
    late_invoices = sum(any(flags) for flags in done)
    return PaymentBehaviour(
        settled_installments=settled, settled_late_installments=late, share_installments_late=ratio(late, settled),
        settled_invoices=len(done), settled_late_invoices=late_invoices, share_invoices_late=ratio(late_invoices, len(done)),
        average_days_late=ratio(weighted, weight), written_off_installments=written_off, written_off_minor=written_off_minor,
    )


def _open_disputes(disputes: Iterable[DisputeRow], as_of: date, open_by_invoice: dict[str, int]) -> list[OpenDispute]:
    last: dict[str, DisputeRow] = {}
    for d in sorted(disputes, key=lambda d: (d.effective_date, d.position)):
        if d.effective_date <= as_of:
            last[d.invoice_number] = d
    return [
        OpenDispute(invoice_number=d.invoice_number, disputed_on=d.effective_date, amount_minor=d.amount_minor,
                    reason=d.reason, open_minor=open_by_invoice.get(d.invoice_number, 0))
        for d in sorted(last.values(), key=lambda d: (d.effective_date, d.invoice_number))
        if d.kind == "disputed"
    ]


def promise_record(promises: Iterable[PromiseRow], as_of: date) -> PromiseRecord:
    """Kept and broken promises decided on or before ``as_of``."""
    decided = [p for p in promises if p.effective_date <= as_of]
    broken = [p.effective_date for p in decided if p.kind == "broken"]
    kept = len(decided) - len(broken)
    return PromiseRecord(kept=kept, broken=len(broken), kept_rate=ratio(kept, len(decided)),
                         last_broken_on=max(broken, default=None))


def _dso(book: _Book, open_minor: int, as_of: date) -> Dso:
    start = as_of - timedelta(days=DSO_WINDOW_DAYS - 1)
    sales = sum(r.amount_minor for r in book.items if start <= r.issue_date <= as_of)
    return Dso(window_from=start, window_days=DSO_WINDOW_DAYS, credit_sales_minor=sales,
               dso=ratio(open_minor * DSO_WINDOW_DAYS, sales))


def _month_ends(as_of: date, months: int) -> list[date]:
    """``as_of`` itself (the current month to date), then the previous month-ends, oldest first."""
    points, point = [], as_of
    for _ in range(months):
        points.append(point)
        point = point.replace(day=1) - timedelta(days=1)
    return points[::-1]


def _trend_point(book: _Book, point: date) -> TrendPoint:
    states = book.states(point)
    open_minor = sum(st.open_minor for _, st in states)
    overdue = sum(st.open_minor for row, st in states if row.due_date < point)
    month_start = point.replace(day=1)
    settled = [(row, st) for row, st in states if st.settled_on is not None and st.settled_on >= month_start]
    behaviour = _payment(settled)
    return TrendPoint(period=point.strftime("%Y-%m"), as_of=point, open_minor=open_minor, overdue_minor=overdue,
                      dso=_dso(book, open_minor, point).dso, settled_installments=behaviour.settled_installments,
                      average_days_late=behaviour.average_days_late)


def risk_profile(
    customer_id: str,
    currency: str,
    as_of: date,
    installments: Iterable[InstallmentRow],
    movements: Iterable[MovementRow],
    disputes: Iterable[DisputeRow] = (),
    promises: Iterable[PromiseRow] = (),
    *,
    open_orders_minor: int = 0,
    trend_months: int = TREND_MONTHS,
) -> RiskProfile:
    """The profile of one customer as of business date ``as_of``.

    ``movements`` may include rows effective after ``as_of``: they are ignored, so the
    caller can pass one read and evaluate several dates (so may ``promises``: verdicts
    dated after ``as_of`` do not count). ``open_orders_minor`` is the value
    of the customer's open sales orders (credit management); it only enters exposure.
    """
    book = _Book(installments, movements)
    states = book.states(as_of)
    open_minor = sum(st.open_minor for _, st in states)
    overdue = [(row, st) for row, st in states if st.open_minor > 0 and row.due_date < as_of]
    unapplied = sum(a for d, a in book.cash if d <= as_of)
    credits = sum(a for d, a in book.credits if d <= as_of)
    exposure = open_minor + open_orders_minor
    open_by_invoice: dict[str, int] = defaultdict(int)
    for row, st in states:
        open_by_invoice[row.invoice_number] += st.open_minor
    largest = max(overdue, key=lambda p: (p[1].open_minor, -p[0].due_date.toordinal()), default=None)
    oldest = overdue[0] if overdue else None  # items are sorted by due date, invoice, installment
    disputes_open = _open_disputes(disputes, as_of, open_by_invoice)
    return RiskProfile(
        customer_id=customer_id,
        currency=currency,
        as_of=as_of,
        exposure=Exposure(open_ar_minor=open_minor, open_orders_minor=open_orders_minor, exposure_minor=exposure,
                          unapplied_cash_minor=unapplied, open_credits_minor=credits,
                          net_exposure_minor=exposure - unapplied - credits),
        open_minor=open_minor,
        open_items=sum(1 for _, st in states if st.open_minor > 0),
        overdue_minor=sum(st.open_minor for _, st in overdue),
        overdue_items=len(overdue),
        payment=_payment(states),
        largest_overdue=_overdue(largest[0], largest[1].open_minor, as_of) if largest else None,
        oldest_overdue=_overdue(oldest[0], oldest[1].open_minor, as_of) if oldest else None,
        open_disputes=disputes_open,
        open_disputes_count=len(disputes_open),
        dso=_dso(book, open_minor, as_of),
        trend=[_trend_point(book, point) for point in _month_ends(as_of, trend_months)],
        promises=promise_record(promises, as_of),
    )
