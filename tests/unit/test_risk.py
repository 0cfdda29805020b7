"""Customer risk profile arithmetic on a hand-built book; every figure computed by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from domain.risk import DisputeRow, InstallmentRow, MovementRow, PromiseRow, promise_record, risk_profile, ratio

D = date


def inst(inv, n, issue, due, amount):
    return InstallmentRow(inv, n, issue, due, amount)


def mv(inv, n, kind, day, amount):
    return MovementRow(inv, n, kind, day, amount)


INSTALLMENTS = [
    inst("I1", 1, D(2026, 1, 1), D(2026, 1, 31), 1000),
    inst("I2", 1, D(2026, 1, 10), D(2026, 2, 10), 300),
    inst("I2", 2, D(2026, 1, 10), D(2026, 3, 10), 600),
    inst("I3", 1, D(2026, 1, 5), D(2026, 2, 5), 500),
    inst("I4", 1, D(2026, 2, 1), D(2026, 3, 3), 200),
    inst("I5", 1, D(2026, 3, 15), D(2026, 4, 14), 400),
    inst("I6", 1, D(2026, 2, 15), D(2026, 3, 1), 100),
]
MOVEMENTS = [
    *(mv(r.invoice_number, r.installment, "invoiced", r.issue_date, r.amount_minor) for r in INSTALLMENTS),
    mv("I1", 1, "allocated", D(2026, 1, 20), -600),     # partial payment
    mv("I1", 1, "allocated", D(2026, 2, 10), -400),     # settled 10 days late
    mv("I2", 1, "allocated", D(2026, 2, 5), -300),      # settled 5 days early
    mv("I3", 1, "allocated", D(2026, 2, 3), -500),      # paid 2 days early ...
    mv("I3", 1, "unallocated", D(2026, 2, 20), 500),    # ... bounced: open again
    mv("I3", 1, "allocated", D(2026, 3, 1), -500),      # settled 24 days late
    mv("I4", 1, "written_off", D(2026, 3, 20), -200),   # written off, not settled
    mv("I6", 1, "credited", D(2026, 3, 2), -30),
    mv(None, None, "cash_received", D(2026, 3, 25), 50),
    mv(None, None, "cash_received", D(2026, 4, 2), 70),  # after the as-of date: ignored
    mv(None, None, "open_credit", D(2026, 3, 5), 20),
]
DISPUTES = [
    DisputeRow("I2", "disputed", D(2026, 3, 12), 40, 600, "damaged"),
    DisputeRow("I6", "disputed", D(2026, 3, 5), 30, None, "wrong price"),
    DisputeRow("I6", "resolved", D(2026, 3, 20), 35, None, "credited"),
]


def profile(as_of=D(2026, 3, 31), **kw):
    return risk_profile("C1", "EUR", as_of, INSTALLMENTS, MOVEMENTS, DISPUTES, **kw)


def test_ratio_rounds_half_even_to_four_places_exactly():
    assert ratio(1, 3) == Decimal("0.3333")
    assert ratio(2, 3) == Decimal("0.6667")
    assert ratio(5, 100_000) == Decimal("0.0000")   # 0.00005 -> even
    assert ratio(15, 100_000) == Decimal("0.0002")  # 0.00015 -> even
    assert ratio(-15, 100_000) == Decimal("-0.0002")
    assert ratio(1, 0) is None


def test_open_overdue_and_exposure():
    p = profile()
    # open: I2/2 600 + I5 400 + I6 70; overdue: I2/2 (due 03-10) + I6 (due 03-01)
    assert (p.open_minor, p.open_items, p.overdue_minor, p.overdue_items) == (1070, 3, 670, 2)
    e = p.exposure
    assert (e.open_ar_minor, e.exposure_minor, e.unapplied_cash_minor, e.open_credits_minor, e.net_exposure_minor) == (
        1070, 1070, 50, 20, 1000)
    e = profile(open_orders_minor=500).exposure
    assert (e.open_orders_minor, e.exposure_minor, e.net_exposure_minor) == (500, 1570, 1500)


def test_largest_and_oldest_overdue_item():
    p = profile()
    assert (p.largest_overdue.invoice_number, p.largest_overdue.installment, p.largest_overdue.open_minor,
            p.largest_overdue.days_past_due) == ("I2", 2, 600, 21)
    assert (p.oldest_overdue.invoice_number, p.oldest_overdue.open_minor, p.oldest_overdue.days_past_due) == ("I6", 70, 30)


def test_payment_behaviour_weighted_by_amount():
    b = profile().payment
    # settled: I1 1000 x +10, I2/1 300 x -5, I3 500 x +24 -> 20500 / 1800 = 11.38888...
    assert b.average_days_late == Decimal("11.3889")
    assert (b.settled_installments, b.settled_late_installments, b.share_installments_late) == (3, 2, Decimal("0.6667"))
    # invoices fully settled: I1 (late) and I3 (late); I2 still has an open installment
    assert (b.settled_invoices, b.settled_late_invoices, b.share_invoices_late) == (2, 2, Decimal("1.0000"))
    assert (b.written_off_installments, b.written_off_minor) == (1, 200)


def test_a_bounced_payment_reopens_the_item_until_paid_again():
    p = profile(D(2026, 2, 25))
    assert p.open_minor == 500 + 600 + 200 + 100
    assert p.overdue_minor == 500  # I3, due 02-05, open again since 02-20
    assert p.oldest_overdue.days_past_due == 20
    assert p.payment.settled_installments == 2  # I1 and I2/1; I3's early payment bounced


def test_open_disputes_as_of():
    assert [(d.invoice_number, d.disputed_on, d.amount_minor, d.open_minor) for d in profile().open_disputes] == [
        ("I2", D(2026, 3, 12), 600, 600)]
    assert [d.invoice_number for d in profile(D(2026, 3, 12)).open_disputes] == ["I6", "I2"]
    assert profile(D(2026, 3, 4)).open_disputes_count == 0


def test_dso_over_the_trailing_90_days():
    dso = profile().dso
    # window 2026-01-01 .. 2026-03-31; sales 3100; 1070 x 90 / 3100 = 31.0645...
    assert (dso.window_from, dso.credit_sales_minor, dso.dso) == (D(2026, 1, 1), 3100, Decimal("31.0645"))
    assert profile(D(2025, 12, 31)).dso.dso is None


def test_trend_by_month_end():
    trend = profile(trend_months=3).trend
    assert [(t.period, t.as_of, t.open_minor, t.overdue_minor, t.dso, t.settled_installments, t.average_days_late)
            for t in trend] == [
        ("2026-01", D(2026, 1, 31), 1800, 0, Decimal("67.5000"), 0, None),
        ("2026-02", D(2026, 2, 28), 1400, 500, Decimal("46.6667"), 2, Decimal("6.5385")),
        ("2026-03", D(2026, 3, 31), 1070, 670, Decimal("31.0645"), 1, Decimal("24.0000")),
    ]


def test_credited_in_full_on_the_issue_date_counts_as_settled_that_day():
    rows = [inst("X", 1, D(2026, 1, 1), D(2026, 1, 31), 100)]
    moves = [mv("X", 1, "invoiced", D(2026, 1, 1), 100), mv("X", 1, "credited", D(2026, 1, 1), -100)]
    b = risk_profile("C", "EUR", D(2026, 2, 1), rows, moves).payment
    assert (b.settled_installments, b.average_days_late) == (1, Decimal("-30.0000"))


def test_an_empty_customer():
    p = risk_profile("C", "EUR", D(2026, 2, 1), [], [])
    assert (p.open_minor, p.largest_overdue, p.payment.average_days_late, p.dso.dso, len(p.trend)) == (0, None, None, None, 6)


def test_promises_decided_by_the_as_of_date_and_the_kept_rate():
    promises = [PromiseRow("PR1", "broken", D(2026, 3, 11), 500, 0), PromiseRow("PR2", "kept", D(2026, 3, 15), 300, 300),
                PromiseRow("PR3", "broken", D(2026, 3, 28), 2000, 0)]
    assert promise_record(promises, D(2026, 3, 10)).kept_rate is None
    mid = promise_record(promises, D(2026, 3, 20))
    assert (mid.kept, mid.broken, mid.kept_rate, mid.last_broken_on) == (1, 1, Decimal("0.5000"), D(2026, 3, 11))
    full = risk_profile("C1", "EUR", D(2026, 3, 31), INSTALLMENTS, MOVEMENTS, promises=promises).promises
    assert (full.kept, full.broken, full.kept_rate, full.last_broken_on) == (1, 2, Decimal("0.3333"), D(2026, 3, 28))
