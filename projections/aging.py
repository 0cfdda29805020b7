"""Aging report: open receivables by bucket, as of a business date, as known at a time
or stream position, from the ``ar_items`` rows (the source of truth).

Every report states the stream ``position`` it was computed at, read in the same
snapshot as its rows; asking again with ``at_position`` (or the same ``known_at``)
gives the same figures, whatever was recorded since, so reports reproduce byte for byte.

Two read paths give the same sums:

* *as known now* (no earlier position, no known-at time): the movements pre-summed by
  (currency, kind, due date) and effective month (``ar_aging_months``) before the
  as-of date's month, and by effective day (``ar_aging_grid``) within it - a few
  thousand rows however many invoices there are;
* *as known then* or by customer: the movements themselves, filtered by position and
  recorded time.

An item's amount in a bucket is its open amount at the as-of date (movements effective
by then): invoiced - credited - allocated (+ reversals) - written off. Summing per due
date first and bucketing due dates (:mod:`domain.aging`) is what keeps it fast, and why
the total reconciles to the ledger exactly. Unapplied cash and open credits are shown
apart, never netted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from domain.aging import Buckets, bucket_totals
from domain.errors import RuleViolation
from projections.ar_items import CASH_KINDS, ITEM_KINDS
from projections.db import ViewDatabase

GROUPS = ("customer", "region", "industry", "salesperson")
_ATTRIBUTE = {"region": 1, "industry": 2, "salesperson": 3}


@dataclass(frozen=True, slots=True)
class Scope:
    """Which rows a report counts: stream ``position`` (inclusive) and ``known_at``."""

    position: int
    known_at: datetime | None = None
    use_grid: bool = False  # the grid holds everything up to the view's position

    def where(self, alias: str = "m") -> tuple[list[str], list[Any]]:
        if self.use_grid:
            return [], []
        clauses, params = [f"{alias}.position <= ?"], [self.position]
        if self.known_at is not None:
            clauses.append(f"{alias}.recorded_at <= ?")
            params.append(iso_utc(self.known_at))
        return clauses, params


def iso_utc(moment: datetime) -> str:
    """The form ``recorded_at`` is stored in (UTC isoformat); naive times are UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def view_position(db: ViewDatabase) -> int:
    rows = db.query("SELECT position FROM projection_positions WHERE name = 'ar_items'")
    return int(rows[0][0]) if rows else 0


def resolve_scope(db: ViewDatabase, at_position: int | None, known_at: datetime | None) -> Scope:
    """The scope of a report and the position it states (call inside ``db.snapshot()``).

    * neither: everything the view holds; position = the view's position;
    * ``at_position`` N: refused beyond the view's position (it would not reproduce);
    * ``known_at`` T: position = the last position recorded by T, so asking again later
      states the same position and counts the same rows.
    """
    head = view_position(db)
    if at_position is not None:
        if at_position < 0 or at_position > head:
            raise RuleViolation("at_position", "not_after_head", f"{at_position} is beyond the reports' position {head}")
        head = at_position
    if known_at is None:
        return Scope(head, None, use_grid=at_position is None)
    stamp = iso_utc(known_at)
    last = 0
    for table in ("ar_movements", "ar_customer_versions"):
        rows = db.query(f"SELECT MAX(position) FROM {table} WHERE recorded_at <= ? AND position <= ?", (stamp, head))
        last = max(last, int(rows[0][0] or 0))
    return Scope(last, known_at)


# ---- sums ------------------------------------------------------------------------------


def customer_attributes(db: ViewDatabase, scope: Scope) -> dict[str, tuple[str, str, str, str]]:
    """customer_id -> (currency, region, industry, salesperson) as at the scope."""
    clauses, params = Scope(scope.position, scope.known_at).where("v")
    sql = ("SELECT customer_id, position, currency, region, industry, salesperson FROM ar_customer_versions v"
           f" WHERE {' AND '.join(clauses)} ORDER BY customer_id, position")
    return {r[0]: (r[2], r[3], r[4], r[5]) for r in db.query(sql, params)}


def customer_currencies(db: ViewDatabase, scope: Scope) -> set[str]:
    """Currencies of the customers registered within the scope (a currency is
    reported even when nothing is open in it)."""
    clauses, params = Scope(scope.position, scope.known_at).where("v")
    sql = f"SELECT DISTINCT currency FROM ar_customer_versions v WHERE {' AND '.join(clauses)}"
    return {r[0] for r in db.query(sql, params)}


def amounts_by_due(db: ViewDatabase, scope: Scope, as_of: date, *, by_customer: bool = False) -> list[tuple[str, str, str, str, int]]:
    """``(customer_id or '', currency, kind, due_date or '', amount)`` of every movement
    effective on or before ``as_of`` within the scope, summed."""
    if scope.use_grid and not by_customer:
        sql = ("SELECT '', currency, kind, due_date, SUM(amount_minor) FROM ("
               " SELECT currency, kind, due_date, amount_minor FROM ar_aging_months WHERE effective_month < ?"
               " UNION ALL"
               " SELECT currency, kind, due_date, amount_minor FROM ar_aging_grid WHERE effective_date >= ? AND effective_date <= ?"
               ") t GROUP BY currency, kind, due_date")
        params = (as_of.isoformat()[:7], as_of.replace(day=1).isoformat(), as_of.isoformat())
        return [(r[0], r[1], r[2], r[3], int(r[4])) for r in db.query(sql, params)]
    clauses, params = Scope(scope.position, scope.known_at).where()
    who, group = ("m.customer_id", "m.customer_id, ") if by_customer else ("''", "")
    sql = (f"SELECT {who}, m.currency, m.kind, COALESCE(i.due_date, ''), SUM(m.amount_minor)"
           " FROM ar_movements m LEFT JOIN ar_installments i ON i.invoice_number = m.invoice_number AND i.installment = m.installment"
           f" WHERE m.effective_date <= ? AND {' AND '.join(clauses)}"
           f" GROUP BY {group}m.currency, m.kind, COALESCE(i.due_date, '')")
    return [(r[0], r[1], r[2], r[3], int(r[4])) for r in db.query(sql, [as_of.isoformat(), *params])]


@dataclass
class Sheet:
    """Sums of one currency (or one group within it)."""

    by_due: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    unapplied: int = 0
    open_credits: int = 0
    kinds: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, kind: str, due: str, amount: int) -> None:
        self.kinds[kind] += amount
        if kind in ITEM_KINDS:
            self.by_due[date.fromisoformat(due)] += amount
        elif kind in CASH_KINDS:
            self.unapplied += amount
        elif kind == "open_credit":
            self.open_credits += amount

    def is_empty(self) -> bool:
        return not any(self.by_due.values()) and not self.unapplied and not self.open_credits


def _bucket_rows(buckets: Buckets, as_of: date, sheet: Sheet) -> tuple[list[dict[str, Any]], int]:
    totals = bucket_totals(buckets, as_of, sheet.by_due.items())
    return [{"label": label, "amount_minor": amount} for label, amount in zip(buckets.labels, totals)], sum(totals)


def aging_report(db: ViewDatabase, as_of: date, *, at_position: int | None = None, known_at: datetime | None = None,
                 by: str | None = None, buckets: Buckets | None = None) -> list[dict[str, Any]]:
    """One report dict per currency (sorted by currency); see the module docstring."""
    if by is not None and by not in GROUPS:
        raise RuleViolation("by", "one_of", f"must be one of {', '.join(GROUPS)}")
    buckets = buckets or Buckets()
    with db.snapshot():
        scope = resolve_scope(db, at_position, known_at)
        rows = amounts_by_due(db, scope, as_of, by_customer=by is not None)
        customers = customer_attributes(db, scope) if by in _ATTRIBUTE else {}
        currencies = customer_currencies(db, scope)
    return build_reports(as_of, scope.position, rows, customers, currencies, by, buckets)


def build_reports(as_of: date, position: int, rows: Iterable[tuple[str, str, str, str, int]],
                  customers: dict[str, tuple[str, str, str, str]], currencies: set[str], by: str | None,
                  buckets: Buckets) -> list[dict[str, Any]]:
    totals: dict[str, Sheet] = defaultdict(Sheet)
    groups: dict[str, dict[str, Sheet]] = defaultdict(lambda: defaultdict(Sheet))
    for cid, currency, kind, due, amount in rows:
        totals[currency].add(kind, due, amount)
        if by is not None:
            key = cid if by == "customer" else customers.get(cid, ("", "", "", ""))[_ATTRIBUTE[by]]
            groups[currency][key].add(kind, due, amount)
    for currency in currencies:
        totals[currency]  # a registered customer's currency is reported even with nothing open
    if not totals:
        totals[None] = Sheet()  # type: ignore[index]  # an empty ledger: one report, no currency
    reports = []
    for currency in sorted(totals):
        sheet = totals[currency]
        bucket_rows, total = _bucket_rows(buckets, as_of, sheet)
        k = sheet.kinds
        report: dict[str, Any] = {
            "as_of": as_of.isoformat(), "position": position, "currency": currency, "buckets": bucket_rows,
            "total_minor": total, "unapplied_minor": sheet.unapplied, "open_credits_minor": sheet.open_credits,
            "reconciliation": {
                "invoiced_minor": k["invoiced"], "credited_minor": -k["credited"],
                "allocated_minor": -(k["allocated"] + k["unallocated"]), "written_off_minor": -k["written_off"],
            },
        }
        if by is not None:
            report[f"by_{by}"] = [
                {f"{by}_id" if by == "customer" else by: key, "buckets": rows_, "total_minor": sub_total}
                for key, group in sorted(groups[currency].items()) if not group.is_empty()
                for rows_, sub_total in [_bucket_rows(buckets, as_of, group)]
            ]
        reports.append(report)
    return reports
