"""Risk profile queries: read one customer's (or every customer's) ``ar_items`` rows as they
were at a *cut* of the stream, then hand them to the pure :func:`domain.risk.risk_profile`.

A :class:`Cut` fixes what a report may see: business date ``as_of`` (movements effective
on or before it), stream ``position`` (rows written at or before it) and, for auditors,
``known_at`` (rows recorded at or before that time). Every query filters on all three,
so a report stamped with its position is reproduced byte for byte by ``--at-position``
however much was recorded since, including late-dated events.

There are no tables of its own: the ``ar_items`` view already holds everything, indexed
by customer (``ar_promises`` holds the clock's verdicts on promises to pay, so they are cut
the same way). One profile is five indexed lookups; ``all_profiles`` streams each table
once, ordered by customer, and merges the groups.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import date, datetime
from functools import lru_cache
from itertools import groupby
from typing import Any, NamedTuple

from domain.errors import RuleViolation
from domain.risk import TREND_MONTHS, DisputeRow, InstallmentRow, MovementRow, PromiseRow, RiskProfile, risk_profile
from projections.ar_items import ArItemsProjection
from projections.db import ViewDatabase

#: ISO date text -> date; a ledger has few distinct dates, so parsing is cached.
_D = lru_cache(maxsize=65_536)(date.fromisoformat)


class Cut(NamedTuple):
    """What a report may see: effective by ``as_of``, at or before ``position``, recorded by ``known_at``."""

    as_of: date
    position: int
    known_at: datetime | None = None

    def where(self, date_column: str) -> tuple[str, list[Any]]:
        sql = f" AND {date_column} <= ? AND position <= ?"
        params: list[Any] = [self.as_of.isoformat(), self.position]
        if self.known_at is not None:
            sql += " AND recorded_at <= ?"
            params.append(self.known_at.isoformat())
        return sql, params


#: ar_disputes is indexed by invoice, not customer: reach a customer's rows through its invoices.
_CUSTOMER_INVOICES = " AND invoice_number IN (SELECT invoice_number FROM ar_installments WHERE customer_id = ? AND installment = 1)"


def projection_position(db: ViewDatabase) -> int:
    rows = db.query("SELECT position FROM projection_positions WHERE name = ?", (ArItemsProjection.name,))
    return int(rows[0][0]) if rows else 0


def resolve_cut(db: ViewDatabase, as_of: date, *, known_at: datetime | None = None, at_position: int | None = None,
                customer_id: str | None = None) -> Cut:
    """The cut a report runs at. Its position is ``at_position``; else, with ``known_at``,
    the last position the report counts (recorded by then; for one ``customer_id``, that
    customer's last, an indexed lookup instead of a scan); else the ``ar_items`` view's."""
    head = projection_position(db)
    if at_position is not None:
        if at_position < 0 or at_position > head:
            raise RuleViolation("at_position", "within_projection",
                                f"position {at_position} is not between 0 and the ar_items view's position {head}")
        return Cut(as_of, at_position, known_at)
    if known_at is None:
        return Cut(as_of, head, None)
    where, params = "recorded_at <= ? AND position <= ?", [known_at.isoformat(), head]
    # MAX(position + 0): keeps PostgreSQL from walking the primary key backwards past every
    # other customer's rows instead of using the customer index
    movements = f"SELECT MAX(position + 0) FROM ar_movements WHERE {where}"
    disputes = f"SELECT MAX(position + 0) FROM ar_disputes WHERE {where}"
    promises = f"SELECT MAX(position + 0) FROM ar_promises WHERE {where}"
    if customer_id is not None:
        movements += " AND customer_id = ?"
        disputes += _CUSTOMER_INVOICES
        promises += " AND customer_id = ?"
        params.append(customer_id)
    found = [db.query(sql, params)[0][0] for sql in (movements, disputes, promises)]
    return Cut(as_of, max((int(p) for p in found if p is not None), default=0), known_at)


# ---- row readers -----------------------------------------------------------------------

_INSTALLMENTS = "SELECT customer_id, invoice_number, installment, issue_date, due_date, amount_minor FROM ar_installments"
_MOVEMENTS = "SELECT customer_id, invoice_number, installment, kind, effective_date, amount_minor FROM ar_movements"
_DISPUTES = "SELECT customer_id, invoice_number, kind, effective_date, position, amount_minor, reason FROM ar_disputes"
_PROMISES = "SELECT customer_id, promise_id, kind, effective_date, promised_minor, paid_minor FROM ar_promises"


# Both drivers return INTEGER/BIGINT columns as int: only the ISO dates need converting.
def _installment(r: Sequence[Any]) -> InstallmentRow:
    return InstallmentRow(r[1], r[2], _D(r[3]), _D(r[4]), r[5])


def _movement(r: Sequence[Any]) -> MovementRow:
    return MovementRow(r[1], r[2], r[3], _D(r[4]), r[5])


def _dispute(r: Sequence[Any]) -> DisputeRow:
    return DisputeRow(r[1], r[2], _D(r[3]), r[4], r[5], r[6])


def _promise(r: Sequence[Any]) -> PromiseRow:
    return PromiseRow(r[1], r[2], _D(r[3]), r[4], r[5])


def customer_currency(db: ViewDatabase, customer_id: str) -> str:
    rows = db.query("SELECT currency FROM ar_customers WHERE customer_id = ?", (customer_id,))
    if not rows:
        raise RuleViolation("customer_id", "known_customer", f"no customer {customer_id!r} in the ar_items view")
    return rows[0][0]


def customer_profile(db: ViewDatabase, customer_id: str, cut: Cut, *, open_orders_minor: int = 0,
                     trend_months: int = TREND_MONTHS) -> RiskProfile:
    """One customer's profile at ``cut`` (the API credit management calls)."""
    currency = customer_currency(db, customer_id)
    inst_sql, inst_params = cut.where("issue_date")
    move_sql, move_params = cut.where("effective_date")
    disp_sql, disp_params = cut.where("effective_date")
    installments = db.query(f"{_INSTALLMENTS} WHERE customer_id = ?{inst_sql}", [customer_id, *inst_params])
    movements = db.query(f"{_MOVEMENTS} WHERE customer_id = ?{move_sql}", [customer_id, *move_params])
    disputes = db.query(f"{_DISPUTES} WHERE 1 = 1{disp_sql}{_CUSTOMER_INVOICES}", [*disp_params, customer_id])
    promises = db.query(f"{_PROMISES} WHERE customer_id = ?{disp_sql}", [customer_id, *disp_params])
    return risk_profile(customer_id, currency, cut.as_of, map(_installment, installments), map(_movement, movements),
                        map(_dispute, disputes), map(_promise, promises), open_orders_minor=open_orders_minor,
                        trend_months=trend_months)


def broken_promise_dates(db: ViewDatabase, as_of: date) -> dict[str, tuple[date, ...]]:
    """customer_id -> the business dates of its promises to pay broken on or before
    ``as_of``, as known now (credit management's review signals and warning rule)."""
    out: dict[str, list[date]] = {}
    for customer_id, day in db.query("SELECT customer_id, effective_date FROM ar_promises WHERE kind = 'broken'"
                                     " AND effective_date <= ? ORDER BY customer_id, effective_date", (as_of.isoformat(),)):
        out.setdefault(customer_id, []).append(_D(day))
    return {customer_id: tuple(days) for customer_id, days in out.items()}


@contextmanager
def _stream(db: ViewDatabase, sql: str, params: Sequence[Any], name: str) -> Iterator[Iterator[tuple[Any, ...]]]:
    """Rows of a large query without holding them all: a server-side cursor on PostgreSQL
    (inside the caller's transaction), ``fetchmany`` on SQLite."""
    cursor = db.conn.cursor(name=name) if db.dialect == "postgres" else db.conn.cursor()
    if db.dialect == "postgres":
        cursor.itersize = 5000

    def rows() -> Iterator[tuple[Any, ...]]:
        while batch := cursor.fetchmany(5000):
            yield from batch

    try:
        cursor.execute(db.adapt(sql), params)
        yield rows()
    finally:
        cursor.close()


def _groups(rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    for key, group in groupby(rows, key=lambda r: r[0]):
        yield key, list(group)


class _Merge:
    """Hands out a stream's group for a customer. All streams are ordered by customer_id with
    the database's own collation, and every customer id in them is in ``ar_customers``, so
    groups are matched by equality alone (no Python string comparison)."""

    def __init__(self, rows: Iterator[tuple[Any, ...]]) -> None:
        self.groups = _groups(rows)
        self.head = next(self.groups, None)

    def take(self, customer_id: str) -> list[tuple[Any, ...]]:
        if self.head is None or self.head[0] != customer_id:
            return []
        rows = self.head[1]
        self.head = next(self.groups, None)
        return rows


def all_profiles(db: ViewDatabase, cut: Cut, *, trend_months: int = 0) -> Iterator[RiskProfile]:
    """Every customer's profile at ``cut``, in one ordered pass over each table."""
    inst_sql, inst_params = cut.where("issue_date")
    move_sql, move_params = cut.where("effective_date")
    with ExitStack() as stack:
        if db.dialect == "postgres":  # server-side cursors live in a transaction
            stack.enter_context(db.conn.transaction())
        customers = stack.enter_context(_stream(db, "SELECT customer_id, currency FROM ar_customers ORDER BY customer_id", (), "risk_c"))
        installments = _Merge(stack.enter_context(_stream(
            db, f"{_INSTALLMENTS} WHERE 1 = 1{inst_sql} ORDER BY customer_id", inst_params, "risk_i")))
        movements = _Merge(stack.enter_context(_stream(
            db, f"{_MOVEMENTS} WHERE 1 = 1{move_sql} ORDER BY customer_id", move_params, "risk_m")))
        disputes = _Merge(stack.enter_context(_stream(
            db, f"{_DISPUTES} WHERE 1 = 1{move_sql} ORDER BY customer_id", move_params, "risk_d")))
        promises = _Merge(stack.enter_context(_stream(
            db, f"{_PROMISES} WHERE 1 = 1{move_sql} ORDER BY customer_id", move_params, "risk_p")))
        for customer_id, currency in customers:
            yield risk_profile(
                customer_id, currency, cut.as_of,
                map(_installment, installments.take(customer_id)),
                map(_movement, movements.take(customer_id)),
                map(_dispute, disputes.take(customer_id)),
                map(_promise, promises.take(customer_id)),
                trend_months=trend_months,
            )
