"""KPI report of a period: the ledger figures from ``ar_items`` and the ratios of
:mod:`domain.kpi`, per currency, stating the stream position like every report.

AR here is the open amount of invoice installments (the aging total); unapplied cash
and open credits are not netted against it. Count-back DSO walks back up to
``COUNTBACK_MONTHS`` calendar months ending on the period's last day.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from domain import kpi
from domain.errors import RuleViolation
from projections.aging import Scope, customer_currencies, resolve_scope
from projections.ar_items import ITEM_KINDS
from projections.db import ViewDatabase

COUNTBACK_MONTHS = 24


def _sums(db: ViewDatabase, scope: Scope, upto: date) -> list[tuple[str, str, str, str, int]]:
    """``(currency, kind, due_date, effective_date, amount)`` effective on or before ``upto``."""
    if scope.use_grid:
        sql = ("SELECT currency, kind, due_date, effective_date, amount_minor FROM ar_aging_grid"
               " WHERE effective_date <= ? AND amount_minor <> 0")
        return [(r[0], r[1], r[2], r[3], int(r[4])) for r in db.query(sql, (upto.isoformat(),))]
    clauses, params = scope.where()
    sql = ("SELECT m.currency, m.kind, COALESCE(i.due_date, ''), m.effective_date, SUM(m.amount_minor)"
           " FROM ar_movements m LEFT JOIN ar_installments i ON i.invoice_number = m.invoice_number AND i.installment = m.installment"
           f" WHERE m.effective_date <= ? AND {' AND '.join(clauses)}"
           " GROUP BY m.currency, m.kind, COALESCE(i.due_date, ''), m.effective_date")
    return [(r[0], r[1], r[2], r[3], int(r[4])) for r in db.query(sql, [upto.isoformat(), *params])]


class _Figures:
    """Accumulates one currency's period figures from the summed rows."""

    def __init__(self, start: date, end: date) -> None:
        self.start, self.end = start.isoformat(), end.isoformat()
        self.day_before = (start - timedelta(days=1)).isoformat()
        self.months = [(lo.isoformat(), hi.isoformat(), (hi - lo).days + 1) for lo, hi in kpi.months_back(end, COUNTBACK_MONTHS)]
        self.ar_start = self.ar_end = self.current_end = self.sales = 0
        self.month_sales = [0] * len(self.months)

    def add(self, kind: str, due: str, effective: str, amount: int) -> None:
        if kind not in ITEM_KINDS:
            return
        self.ar_end += amount
        if due >= self.end:
            self.current_end += amount
        if effective <= self.day_before:
            self.ar_start += amount
        if kind == "invoiced":
            if effective >= self.start:
                self.sales += amount
            for i, (lo, hi, _) in enumerate(self.months):
                if lo <= effective <= hi:
                    self.month_sales[i] += amount
                    break


def kpi_report(db: ViewDatabase, start: date, end: date, *, at_position: int | None = None,
               known_at: datetime | None = None) -> list[dict[str, Any]]:
    """One KPI dict per currency (sorted by currency) for the period ``[start, end]``."""
    if end < start:
        raise RuleViolation("to", "not_before_from", f"{end} is before {start}")
    with db.snapshot():
        scope = resolve_scope(db, at_position, known_at)
        rows = _sums(db, scope, end)
        currencies = customer_currencies(db, scope)
    figures: dict[str | None, _Figures] = defaultdict(lambda: _Figures(start, end))
    for currency, kind, due, effective, amount in rows:
        figures[currency].add(kind, due, effective, amount)
    for currency in currencies:
        figures[currency]
    if not figures:
        figures[None]
    reports = []
    for currency in sorted(figures, key=lambda c: c or ""):
        f = figures[currency]
        period = kpi.PeriodFigures(start=start, end=end, credit_sales=f.sales, ar_start=f.ar_start, ar_end=f.ar_end,
                                   current_ar_end=f.current_end)
        ratios = kpi.kpis(period, [(days, sales) for (_, _, days), sales in zip(f.months, f.month_sales)])
        reports.append({
            "from": start.isoformat(), "to": end.isoformat(), "credit_sales_minor": f.sales, "ar_start_minor": f.ar_start,
            "ar_end_minor": f.ar_end, "current_ar_end_minor": f.current_end, **ratios, "days": period.days,
            "position": scope.position, "currency": currency,
        })
    return reports


def period_range(period: str, year: int, number: int | None = None) -> tuple[date, date]:
    """``month``/``quarter`` ``number`` (1-based) or the whole ``year`` as a date range."""
    if period == "year":
        return date(year, 1, 1), date(year, 12, 31)
    size = {"month": 1, "quarter": 3}.get(period)
    if size is None:
        raise RuleViolation("period", "one_of", "must be month, quarter or year")
    limit = 12 // size
    if number is None or not 1 <= number <= limit:
        raise RuleViolation("number", "range", f"a {period} number from 1 to {limit} is required")
    first_month = (number - 1) * size + 1
    start = date(year, first_month, 1)
    last_month = first_month + size - 1
    end = (date(year + last_month // 12, last_month % 12 + 1, 1)) - timedelta(days=1)
    return start, end
