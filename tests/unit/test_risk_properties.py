"""Properties of the risk profile on generated books, against a brute-force day-by-day oracle."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.risk import InstallmentRow, MovementRow, ratio, risk_profile

BASE = date(2026, 1, 1)
AS_OF = date(2026, 6, 30)

steps = st.lists(st.tuples(st.integers(0, 40), st.integers(1, 100),
                           st.sampled_from(["allocated", "allocated", "unallocated", "credited", "written_off"])), max_size=6)
items = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 60), st.integers(1, 10_000), steps), min_size=1, max_size=8)


def build(spec):
    rows, moves = [], []
    for k, (issue_off, terms, amount, item_steps) in enumerate(spec):
        issue = BASE + timedelta(days=issue_off)
        row = InstallmentRow(f"I{k}", 1, issue, issue + timedelta(days=terms), amount)
        rows.append(row)
        moves.append(MovementRow(row.invoice_number, 1, "invoiced", issue, amount))
        day, balance, paid, closed = issue, amount, 0, False
        for gap, pct, kind in item_steps:
            day += timedelta(days=gap)
            if closed:
                break
            if kind == "unallocated":
                change = paid * pct // 100
                paid -= change
            elif kind == "written_off":
                change, closed = -balance, True
            else:
                change = -(max(balance * pct // 100, 1) if balance else 0)
                paid -= change if kind == "allocated" else 0
            if change:
                balance += change
                moves.append(MovementRow(row.invoice_number, 1, kind, day, change))
    return rows, moves


def oracle(row, moves, as_of):
    """Balance at the end of every day from the issue date to as_of; settlement = first day of
    the final run of zero balances, provided the item was issued by then."""
    mine = [m for m in moves if m.invoice_number == row.invoice_number]
    balances, day = [], row.issue_date
    while day <= as_of:
        balances.append((day, sum(m.amount_minor for m in mine if m.effective_date <= day)))
        day += timedelta(days=1)
    if not balances or balances[-1][1] > 0:
        return (balances[-1][1] if balances else 0), None, False
    i = len(balances) - 1
    while i > 0 and balances[i - 1][1] <= 0:
        i -= 1
    settled_on = balances[i][0]
    written_off = any(m.kind == "written_off" and m.effective_date == settled_on for m in mine)
    return 0, (None if written_off else settled_on), written_off


@settings(max_examples=100, deadline=None)
@given(items, st.integers(0, 180))
def test_profile_agrees_with_a_day_by_day_oracle(spec, as_of_offset):
    rows, moves = build(spec)
    as_of = AS_OF - timedelta(days=as_of_offset)
    p = risk_profile("C", "EUR", as_of, rows, moves, trend_months=2)
    issued = [r for r in rows if r.issue_date <= as_of]
    truth = {r.invoice_number: oracle(r, moves, as_of) for r in issued}
    assert p.open_minor == sum(t[0] for t in truth.values())
    assert p.overdue_minor == sum(truth[r.invoice_number][0] for r in issued if r.due_date < as_of)
    settled = [(r, truth[r.invoice_number][1]) for r in issued if truth[r.invoice_number][1] is not None]
    assert p.payment.settled_installments == len(settled)
    assert p.payment.written_off_installments == sum(t[2] for t in truth.values())
    assert p.open_items + p.payment.settled_installments + p.payment.written_off_installments == len(issued)
    weighted = sum(r.amount_minor * (s - r.due_date).days for r, s in settled)
    assert p.payment.average_days_late == ratio(weighted, sum(r.amount_minor for r, _ in settled))
    e = p.exposure
    assert e.net_exposure_minor == e.open_ar_minor - e.unapplied_cash_minor - e.open_credits_minor
    last = p.trend[-1]
    assert (last.as_of, last.open_minor, last.overdue_minor, last.dso) == (as_of, p.open_minor, p.overdue_minor, p.dso.dso)
