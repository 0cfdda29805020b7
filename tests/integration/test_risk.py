"""Risk profiles read from the ``ar_items`` view on SQLite and PostgreSQL: figures on a
hand-built ledger, as-known-at answers, and the streamed ``all_profiles`` pass."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from domain import commands as c
from domain.errors import RuleViolation
from projections.ar_items import open_items
from projections.risk import all_profiles, customer_profile, resolve_cut
from tests.integration.test_ar_items import run, view_db  # noqa: F401 - view_db is a fixture

D = date


def catch_up(app, db) -> int:
    return run(app, db).position("ar_items")


def invoice(x, number, amount, issue, due=None, installments=(), customer="C1"):
    x(c.IssueInvoice(customer_id=customer, invoice_number=number, currency="EUR", amount_minor=amount, issue_date=issue,
                     due_date=due, installments=[c.InstallmentSpec(due_date=d, amount_minor=a) for d, a in installments]),
      actor="sales")


def pay(x, payment_id, amount, value_date, invoice_number=None, installment=None, customer="C1"):
    x(c.ReceivePayment(customer_id=customer, payment_id=payment_id, currency="EUR", amount_minor=amount, value_date=value_date),
      actor="cash")
    if invoice_number:
        x(c.AllocatePayment(payment_id=payment_id, invoice_number=invoice_number, installment=installment), actor="cash")


def record_ledger(app) -> int:
    """The book of tests/unit/test_risk.py, recorded through commands; returns the stream
    position before the first dispute."""
    x = app.ledger.execute
    x(c.RegisterCustomer(customer_id="C1", name="Acme", currency="EUR"), actor="sales")
    x(c.RegisterCustomer(customer_id="C2", name="Bolt", currency="EUR"), actor="sales")
    invoice(x, "I1", 1000, D(2026, 1, 1), D(2026, 1, 31))
    invoice(x, "I2", 900, D(2026, 1, 10), installments=[(D(2026, 2, 10), 300), (D(2026, 3, 10), 600)])
    invoice(x, "I3", 500, D(2026, 1, 5), D(2026, 2, 5))
    invoice(x, "I4", 200, D(2026, 2, 1), D(2026, 3, 3))
    invoice(x, "I5", 400, D(2026, 3, 15), D(2026, 4, 14))
    invoice(x, "I6", 100, D(2026, 2, 15), D(2026, 3, 1))
    invoice(x, "J1", 700, D(2026, 1, 2), D(2026, 1, 20), customer="C2")
    pay(x, "P1", 600, D(2026, 1, 20), "I1")                    # partial
    pay(x, "P2", 400, D(2026, 2, 10), "I1")                    # settles I1 10 days late
    pay(x, "P3", 300, D(2026, 2, 5), "I2", 1)                  # 5 days early
    pay(x, "P4", 500, D(2026, 2, 3), "I3")                     # early, but ...
    x(c.ReversePayment(payment_id="P4", reversed_on=D(2026, 2, 20), reason="bounced"), actor="cash")
    pay(x, "P5", 500, D(2026, 3, 1), "I3")                     # settles I3 24 days late
    x(c.RequestWriteOff(write_off_id="W1", invoice_number="I4", amount_minor=200, reason="insolvent"), actor="collector")
    x(c.ApproveWriteOff(write_off_id="W1", effective_date=D(2026, 3, 20)), actor="controller")
    x(c.IssueCreditNote(customer_id="C1", credit_note_number="CN1", currency="EUR", amount_minor=30, issue_date=D(2026, 3, 2),
                        invoice_number="I6"), actor="sales")
    pay(x, "P6", 50, D(2026, 3, 25))                           # unapplied cash
    pay(x, "P7", 70, D(2026, 4, 2))                            # after the as-of date
    x(c.IssueCreditNote(customer_id="C1", credit_note_number="CN2", currency="EUR", amount_minor=20, issue_date=D(2026, 3, 5)),
      actor="sales")
    before_disputes = app.store.max_position()
    x(c.DisputeInvoice(invoice_number="I2", disputed_on=D(2026, 3, 12), reason="damaged", amount_minor=600), actor="collector")
    x(c.DisputeInvoice(invoice_number="I6", disputed_on=D(2026, 3, 5), reason="wrong price"), actor="collector")
    x(c.ResolveDispute(invoice_number="I6", resolved_on=D(2026, 3, 20), resolution="credited"), actor="collector")
    pay(x, "Q1", 700, D(2026, 1, 15), "J1", customer="C2")
    return before_disputes


def test_profile_figures_on_a_hand_built_ledger(app, view_db):
    before_disputes = record_ledger(app)
    catch_up(app, view_db)
    p = customer_profile(view_db, "C1", resolve_cut(view_db, D(2026, 3, 31)), trend_months=3)
    assert (p.open_minor, p.overdue_minor, p.overdue_items) == (1070, 670, 2)
    e = p.exposure
    assert (e.exposure_minor, e.unapplied_cash_minor, e.open_credits_minor, e.net_exposure_minor) == (1070, 50, 20, 1000)
    b = p.payment
    assert (b.average_days_late, b.share_installments_late, b.share_invoices_late) == (
        Decimal("11.3889"), Decimal("0.6667"), Decimal("1.0000"))
    assert (b.written_off_installments, b.written_off_minor) == (1, 200)
    assert (p.largest_overdue.invoice_number, p.largest_overdue.installment, p.largest_overdue.days_past_due) == ("I2", 2, 21)
    assert (p.oldest_overdue.invoice_number, p.oldest_overdue.days_past_due) == ("I6", 30)
    assert [(d.invoice_number, d.amount_minor, d.open_minor) for d in p.open_disputes] == [("I2", 600, 600)]
    assert (p.dso.credit_sales_minor, p.dso.dso) == (3100, Decimal("31.0645"))
    assert [(t.period, t.open_minor, t.overdue_minor, t.average_days_late) for t in p.trend] == [
        ("2026-01", 1800, 0, None), ("2026-02", 1400, 500, Decimal("6.5385")), ("2026-03", 1070, 670, Decimal("24.0000"))]
    # the bounced payment: on 2026-02-25 I3 is open and overdue again
    feb = customer_profile(view_db, "C1", resolve_cut(view_db, D(2026, 2, 25)))
    assert (feb.overdue_minor, feb.oldest_overdue.invoice_number, feb.payment.settled_installments) == (500, "I3", 2)
    # stream positions cut the same way: before the dispute events, no dispute is open
    before = customer_profile(view_db, "C1", resolve_cut(view_db, D(2026, 3, 31), at_position=before_disputes))
    assert before.open_disputes_count == 0 and before.payment.average_days_late == b.average_days_late


def test_all_profiles_streams_every_customer_with_the_same_figures(app, view_db):
    record_ledger(app)
    catch_up(app, view_db)
    cut = resolve_cut(view_db, D(2026, 3, 31))
    profiles = {p.customer_id: p for p in all_profiles(view_db, cut)}
    assert sorted(profiles) == ["C1", "C2"]
    for cid, p in profiles.items():
        assert p == customer_profile(view_db, cid, cut, trend_months=0)
    assert (profiles["C2"].payment.average_days_late, profiles["C2"].open_minor) == (Decimal("-5.0000"), 0)
    # open and overdue reconcile with the ar_items open-items query on every date
    for day in (D(2026, 1, 15), D(2026, 2, 4), D(2026, 2, 21), D(2026, 3, 20), D(2026, 5, 1)):
        for p in all_profiles(view_db, resolve_cut(view_db, day)):
            items = open_items(view_db, day, customer_id=p.customer_id)
            assert p.open_minor == sum(r[6] for r in items)
            assert p.overdue_minor == sum(r[6] for r in items if r[5] < day.isoformat())


def test_a_late_recorded_payment_changes_now_but_not_then(app, clock, view_db):
    x = app.ledger.execute
    x(c.RegisterCustomer(customer_id="C1", name="Acme", currency="EUR"), actor="s")
    invoice(x, "I1", 1000, D(2026, 1, 1), D(2026, 1, 31))
    then = clock.advance(days=45)
    clock.advance(days=5)
    pay(x, "P1", 1000, D(2026, 2, 10), "I1")  # dated before `then`, recorded after it
    catch_up(app, view_db)
    now = customer_profile(view_db, "C1", resolve_cut(view_db, D(2026, 2, 14)))
    known_then = customer_profile(view_db, "C1", resolve_cut(view_db, D(2026, 2, 14), known_at=then))
    assert (now.overdue_minor, now.payment.average_days_late) == (0, Decimal("10.0000"))
    assert (known_then.overdue_minor, known_then.oldest_overdue.days_past_due, known_then.payment.average_days_late) == (
        1000, 14, None)
    # stamped with the last position it counted; that position alone gives the same answer
    cut_then = resolve_cut(view_db, D(2026, 2, 14), known_at=then)
    assert 0 < cut_then.position < resolve_cut(view_db, D(2026, 2, 14)).position
    assert resolve_cut(view_db, D(2026, 2, 14), known_at=then, customer_id="C1") == cut_then
    assert customer_profile(view_db, "C1", resolve_cut(view_db, D(2026, 2, 14), at_position=cut_then.position)) == known_then


def test_bad_cuts_and_unknown_customers_are_refused(app, view_db):
    record_ledger(app)
    head = catch_up(app, view_db)
    with pytest.raises(RuleViolation) as err:
        resolve_cut(view_db, D(2026, 3, 31), at_position=head + 1)
    assert err.value.field == "at_position"
    with pytest.raises(RuleViolation) as err:
        customer_profile(view_db, "NOPE", resolve_cut(view_db, D(2026, 3, 31)))
    assert err.value.field == "customer_id"
