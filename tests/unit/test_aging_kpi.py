"""Aging buckets and KPI formulas, checked against figures worked out by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from domain import kpi
from domain.aging import Buckets, bucket_totals, days_past_due, parse_edges
from domain.errors import RuleViolation


def test_days_past_due_is_zero_until_due():
    assert days_past_due(date(2026, 3, 1), date(2026, 3, 1)) == 0
    assert days_past_due(date(2026, 2, 1), date(2026, 3, 1)) == 0
    assert days_past_due(date(2026, 3, 31), date(2026, 3, 1)) == 30


def test_default_buckets_and_labels():
    b = Buckets()
    assert b.labels == ("current", "1-30", "31-60", "61-90", "91+")
    assert [b.index(d) for d in (0, 1, 30, 31, 60, 61, 90, 91, 400)] == [0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_configurable_edges():
    b = parse_edges("0,15,45")
    assert b.labels == ("current", "1-15", "16-45", "46+")
    assert parse_edges("0").labels == ("current", "1+")
    for bad, rule in (("30,60", "starts_at_zero"), ("0,30,30", "increasing"), ("0,x", "whole_days"), ("", "whole_days")):
        with pytest.raises(RuleViolation) as err:
            parse_edges(bad)
        assert err.value.field == "buckets" and err.value.rule == rule


def test_bucket_totals_place_each_due_date_once():
    as_of = date(2026, 4, 30)
    rows = [(date(2026, 5, 10), 100), (date(2026, 4, 30), 50), (date(2026, 4, 29), 7), (date(2026, 3, 31), 3),
            (date(2026, 3, 30), 11), (date(2026, 1, 30), 13), (date(2026, 1, 29), 17)]
    # current 150 | 1-30: 1 and 30 days -> 10 | 31-60: 31 days -> 11 | 61-90: 90 days -> 13 | 91+: 91 days -> 17
    assert bucket_totals(Buckets(), as_of, rows) == [150, 10, 11, 13, 17]


def test_rounding_is_half_even_once():
    assert kpi.rounded(Fraction(1, 8)) == Decimal("0.1250")
    assert kpi.rounded(Fraction(5, 100000)) == Decimal("0.0000")  # 0.00005 -> even
    assert kpi.rounded(Fraction(15, 100000)) == Decimal("0.0002")  # 0.00015 -> even
    assert kpi.rounded(Fraction(-1, 3)) == Decimal("-0.3333")
    assert kpi.rounded(None) is None


def test_period_kpis_by_hand():
    # March 2026 (31 days): AR 1 Mar 10,000; sales 30,000; AR 31 Mar 20,000 of which 12,000 not yet due.
    f = kpi.PeriodFigures(start=date(2026, 3, 1), end=date(2026, 3, 31), credit_sales=30_000, ar_start=10_000,
                          ar_end=20_000, current_ar_end=12_000)
    out = kpi.kpis(f, [(31, 30_000)])
    assert out["dso"] == Decimal("20.6667")              # 20000/30000*31 = 20.66666..
    assert out["best_possible_dso"] == Decimal("12.4000")  # 12000/30000*31
    assert out["add"] == Decimal("8.2667")               # 8000/30000*31 = 8.26666..
    assert out["cei"] == Decimal("71.4286")              # (10000+30000-20000)/(10000+30000-12000)*100 = 20000/28000
    assert out["turnover"] == Decimal("2.0000")          # 30000 / 15000
    assert out["turnover_days"] == Decimal("15.5000")    # 31 / 2
    assert out["countback_dso"] == Decimal("20.6667")    # AR within the last month: 20000/30000*31


def test_division_by_zero_is_none():
    f = kpi.PeriodFigures(start=date(2026, 3, 1), end=date(2026, 3, 31), credit_sales=0, ar_start=0, ar_end=0, current_ar_end=0)
    out = kpi.kpis(f, [])
    assert out["dso"] is None and out["best_possible_dso"] is None and out["add"] is None
    assert out["cei"] is None and out["turnover"] is None and out["turnover_days"] is None
    assert out["countback_dso"] == Decimal("0.0000")  # no AR: nothing to count back


def test_countback_walks_back_month_by_month():
    # AR 50,000; March sales 30,000 (31 days), February 16,000 (28 days), January 20,000 (31 days):
    # 31 + 28 + (4,000 / 20,000) x 31 = 65.2 days
    periods = [(31, 30_000), (28, 16_000), (31, 20_000)]
    assert kpi.countback_dso(50_000, periods) == Decimal("65.2000")
    assert kpi.countback_dso(30_000, periods) == Decimal("31.0000")
    assert kpi.countback_dso(0, periods) == Decimal("0.0000")
    assert kpi.countback_dso(70_000, periods) is None  # more AR than all sales given
    assert kpi.countback_dso(10, [(30, 0), (31, 100)]) == Decimal("33.1000")  # a month without sales counts whole


def test_months_back_follow_calendar_months():
    assert kpi.months_back(date(2026, 3, 31), 3) == [
        (date(2026, 3, 1), date(2026, 3, 31)), (date(2026, 2, 1), date(2026, 2, 28)), (date(2026, 1, 1), date(2026, 1, 31))]
    assert kpi.months_back(date(2026, 3, 15), 2) == [
        (date(2026, 2, 16), date(2026, 3, 15)), (date(2026, 1, 16), date(2026, 2, 15))]
    assert kpi.months_back(date(2026, 1, 31), 1) == [(date(2026, 1, 1), date(2026, 1, 31))]
