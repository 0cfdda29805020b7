"""Receivables KPIs of a period, exactly as DESIGN.md defines them (pure).

Inputs are integer minor units and whole days; every ratio is computed exactly (as a
:class:`fractions.Fraction`) and rounded **once**, half-even, to 4 decimal places.
A ratio whose denominator is zero (no credit sales, no receivables) is ``None``
(``null`` in JSON): it is undefined, not zero.

Period ``[from, to]``; ``days`` = to - from + 1; ``ar_start`` = AR at the end of the day
before ``from``; ``ar_end`` = AR at the end of ``to``; ``current_ar_end`` = the part of
``ar_end`` not yet past due on ``to``; ``credit_sales`` = invoices issued in the period.

* DSO = ar_end / credit_sales x days
* best possible DSO = current_ar_end / credit_sales x days
* ADD (average days delinquent) = DSO - best possible DSO
  = (ar_end - current_ar_end) / credit_sales x days (computed exactly, rounded once)
* CEI = (ar_start + credit_sales - ar_end) / (ar_start + credit_sales - current_ar_end) x 100
* turnover = credit_sales / ((ar_start + ar_end) / 2); turnover days = days / turnover
* count-back DSO: see :func:`countback_dso`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

PLACES = 4


def rounded(value: Fraction | int | None) -> Decimal | None:
    """Round an exact value half-even to 4 places, with integer arithmetic only."""
    if value is None:
        return None
    value = Fraction(value)
    scaled = value * 10**PLACES
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * rest
    if twice > scaled.denominator or (twice == scaled.denominator and whole % 2 == 1):
        whole += 1
    return Decimal(whole).scaleb(-PLACES).quantize(Decimal(1).scaleb(-PLACES))


def ratio(numerator: int | Fraction, denominator: int | Fraction) -> Fraction | None:
    """``numerator / denominator`` exactly, or ``None`` when the denominator is zero."""
    return None if denominator == 0 else Fraction(numerator) / Fraction(denominator)


def _times(value: Fraction | None, factor: int) -> Fraction | None:
    return None if value is None else value * factor


def dso(ar_end: int, credit_sales: int, days: int) -> Decimal | None:
    return rounded(_times(ratio(ar_end, credit_sales), days))


def best_possible_dso(current_ar_end: int, credit_sales: int, days: int) -> Decimal | None:
    return rounded(_times(ratio(current_ar_end, credit_sales), days))


def average_days_delinquent(ar_end: int, current_ar_end: int, credit_sales: int, days: int) -> Decimal | None:
    return rounded(_times(ratio(ar_end - current_ar_end, credit_sales), days))


def cei(ar_start: int, credit_sales: int, ar_end: int, current_ar_end: int) -> Decimal | None:
    return rounded(_times(ratio(ar_start + credit_sales - ar_end, ar_start + credit_sales - current_ar_end), 100))


def turnover(credit_sales: int, ar_start: int, ar_end: int) -> Decimal | None:
    return rounded(ratio(2 * credit_sales, ar_start + ar_end))


def turnover_days(days: int, credit_sales: int, ar_start: int, ar_end: int) -> Decimal | None:
    """days / turnover = days x average AR / credit sales (``None`` without sales)."""
    return rounded(_times(ratio(ar_start + ar_end, 2 * credit_sales), days))


def countback_dso(ar_end: int, periods: Sequence[tuple[int, int]]) -> Decimal | None:
    """Count-back DSO: how many days of the most recent credit sales the AR represents.

    ``periods`` are ``(days, credit_sales)`` of consecutive periods walking *back* from
    the period end (most recent first; the report uses calendar months ending on ``to``).
    Starting with AR at the period end, each period whose credit sales are covered by
    the remaining AR adds all its days and its sales are subtracted; the first period
    whose sales exceed what remains adds the fraction ``remaining / sales`` of its days,
    and the walk stops. AR of zero or less gives 0. If the periods given run out before
    the AR is exhausted the figure is undefined: ``None``.
    """
    remaining = ar_end
    total = Fraction(0)
    if remaining <= 0:
        return rounded(total)
    for days, sales in periods:
        if remaining > sales:
            total += days
            remaining -= sales
            continue
        total += Fraction(remaining * days, sales)
        return rounded(total)
    return None


def months_back(end: date, count: int) -> list[tuple[date, date]]:
    """``count`` consecutive month-long periods ending on ``end``, most recent first:
    (end shifted back k months, end shifted back k-1 months], clamped to month ends."""
    periods = []
    upper = end
    for k in range(1, count + 1):
        lower = _shift_months(end, -k)
        periods.append((lower + timedelta(days=1), upper))
        upper = lower
    return periods


def _shift_months(day: date, months: int) -> date:
    month_index = day.year * 12 + day.month - 1 + months
    year, month = divmod(month_index, 12)
    month += 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    # end of month stays end of month (31 Mar -> 28 Feb -> 31 Jan)
    if day == (date(day.year + day.month // 12, day.month % 12 + 1, 1) - timedelta(days=1)):
        return date(year, month, last)
    return date(year, month, min(day.day, last))


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    """What the ledger says about one period, in minor units."""

    start: date
    end: date
    credit_sales: int
    ar_start: int
    ar_end: int
    current_ar_end: int

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def kpis(f: PeriodFigures, countback_periods: Sequence[tuple[int, int]]) -> dict[str, Decimal | None]:
    """Every ratio of the period, keyed as the ``arledger kpi`` report names them."""
    return {
        "dso": dso(f.ar_end, f.credit_sales, f.days),
        "countback_dso": countback_dso(f.ar_end, countback_periods),
        "best_possible_dso": best_possible_dso(f.current_ar_end, f.credit_sales, f.days),
        "add": average_days_delinquent(f.ar_end, f.current_ar_end, f.credit_sales, f.days),
        "cei": cei(f.ar_start, f.credit_sales, f.ar_end, f.current_ar_end),
        "turnover": turnover(f.credit_sales, f.ar_start, f.ar_end),
        "turnover_days": turnover_days(f.days, f.credit_sales, f.ar_start, f.ar_end),
    }
