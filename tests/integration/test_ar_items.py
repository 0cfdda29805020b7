"""The receivables rows (``ar_items``): reconciliation with the account aggregate,
as-of business dates and as-known-at recorded times, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from domain import commands as c
from projections.ar_items import ArItemsProjection, open_items
from projections.db import ViewDatabase
from projections.runner import ProjectionRunner


@pytest.fixture
def view_db(database_url):
    db = ViewDatabase(database_url)
    yield db
    db.close()


def run(app, db) -> ProjectionRunner:
    runner = ProjectionRunner(app.store, db, [ArItemsProjection()], batch_size=7)
    runner.setup()
    runner.catch_up()
    return runner


def record(app, clock) -> None:
    x = app.ledger.execute
    x(c.RegisterCustomer(customer_id="A", name="Acme", currency="EUR", region="north"), actor="s")
    x(c.RegisterCustomer(customer_id="B", name="Bolt", currency="EUR"), actor="s")
    x(c.IssueInvoice(customer_id="A", invoice_number="I1", currency="EUR", amount_minor=1000, issue_date=date(2026, 1, 1),
                     due_date=date(2026, 1, 31)), actor="s")
    x(c.IssueInvoice(customer_id="A", invoice_number="I2", currency="EUR", amount_minor=900, issue_date=date(2026, 1, 10),
                     installments=[c.InstallmentSpec(due_date=date(2026, 2, 10), amount_minor=300),
                                   c.InstallmentSpec(due_date=date(2026, 3, 10), amount_minor=600)]), actor="s")
    x(c.IssueInvoice(customer_id="B", invoice_number="I3", currency="EUR", amount_minor=500, issue_date=date(2026, 1, 5),
                     due_date=date(2026, 2, 5)), actor="s")
    x(c.IssueCreditNote(customer_id="A", credit_note_number="CN1", currency="EUR", amount_minor=100, issue_date=date(2026, 1, 15),
                        invoice_number="I1"), actor="s")
    x(c.IssueCreditNote(customer_id="B", credit_note_number="CN2", currency="EUR", amount_minor=50, issue_date=date(2026, 1, 15)), actor="s")
    x(c.ReceivePayment(customer_id="A", payment_id="P1", currency="EUR", amount_minor=1200, value_date=date(2026, 2, 1)), actor="s")
    x(c.AllocatePayment(payment_id="P1"), actor="s")  # oldest due first: I1 900, then I2/1 300
    x(c.ReceivePayment(customer_id="B", payment_id="P2", currency="EUR", amount_minor=200, value_date=date(2026, 2, 3)), actor="s")
    x(c.AllocatePayment(payment_id="P2", invoice_number="I3", amount_minor=150), actor="s")
    x(c.ReversePayment(payment_id="P2", reversed_on=date(2026, 2, 20), reason="bounced"), actor="s")
    x(c.RequestWriteOff(write_off_id="W1", invoice_number="I3", amount_minor=100, reason="dispute settled"), actor="s")
    x(c.ApproveWriteOff(write_off_id="W1", effective_date=date(2026, 3, 31)), actor="controller")
    x(c.DisputeInvoice(invoice_number="I2", disputed_on=date(2026, 2, 12), reason="damaged"), actor="s")
    x(c.UpdateCustomer(customer_id="A", region="south", name="Acme AG"), actor="s")
    x(c.SetPaymentTerms(customer_id="A", payment_terms_days=45), actor="s")


def test_open_amounts_reconcile_with_the_accounts(app, clock, view_db):
    record(app, clock)
    run(app, view_db)
    now = {(r[2], r[3]): r[6] for r in open_items(view_db, date(2030, 1, 1))}
    expected = {}
    for cid in ("A", "B"):
        for inv in app.ledger.account(cid).state.invoices.values():
            for inst in inv.installments:
                if inst.open_minor:
                    expected[(inv.number, inst.number)] = inst.open_minor
    assert now == expected == {("I2", 2): 600, ("I3", 1): 400}
    current = dict(((r[0], r[1]), r[2]) for r in view_db.query(
        "SELECT invoice_number, installment, open_minor FROM ar_installments WHERE open_minor > 0"))
    assert current == expected
    # invoiced - credited - allocated - written off (+ reversals) = open
    kinds = dict(view_db.query("SELECT kind, SUM(amount_minor) FROM ar_movements GROUP BY kind"))
    assert kinds["invoiced"] + kinds["credited"] + kinds["allocated"] + kinds["unallocated"] + kinds["written_off"] == 1000
    # unapplied cash: P1 fully applied; P2 bounced (150 back on I3, 50 unapplied cash removed)
    assert kinds["cash_received"] + kinds["cash_allocated"] + kinds["cash_reversed"] == 0
    assert kinds["open_credit"] == 50
    customer = view_db.query("SELECT name, region, payment_terms_days FROM ar_customers WHERE customer_id = 'A'")
    assert customer == [("Acme AG", "south", 45)]
    disputes = view_db.query("SELECT invoice_number, kind, effective_date FROM ar_disputes")
    assert disputes == [("I2", "disputed", "2026-02-12")]


def test_as_of_business_dates(app, clock, view_db):
    record(app, clock)
    run(app, view_db)
    def at(d):
        return {(r[2], r[3]): r[6] for r in open_items(view_db, d)}
    assert at(date(2025, 12, 31)) == {}
    assert at(date(2026, 1, 31)) == {("I1", 1): 900, ("I2", 1): 300, ("I2", 2): 600, ("I3", 1): 500}
    assert at(date(2026, 2, 3)) == {("I2", 2): 600, ("I3", 1): 350}
    assert at(date(2026, 2, 20)) == {("I2", 2): 600, ("I3", 1): 500}  # bounced: I3 open again
    assert at(date(2026, 3, 31)) == {("I2", 2): 600, ("I3", 1): 400}


def test_as_known_at_a_recorded_time(app, clock, view_db):
    x = app.ledger.execute
    x(c.RegisterCustomer(customer_id="A", name="Acme", currency="EUR"), actor="s")
    x(c.IssueInvoice(customer_id="A", invoice_number="I1", currency="EUR", amount_minor=1000, issue_date=date(2026, 1, 1)), actor="s")
    then = clock.advance(days=40)
    clock.advance(days=5)
    # a payment dated before `then` but recorded after it
    x(c.ReceivePayment(customer_id="A", payment_id="P1", currency="EUR", amount_minor=1000, value_date=date(2026, 1, 20)), actor="s")
    x(c.AllocatePayment(payment_id="P1"), actor="s")
    runner = run(app, view_db)
    assert open_items(view_db, date(2026, 2, 1)) == []
    known_then = open_items(view_db, date(2026, 2, 1), known_at=then)
    assert [(r[2], r[6]) for r in known_then] == [("I1", 1000)]
    head = runner.position("ar_items")
    assert [(r[2], r[6]) for r in open_items(view_db, date(2026, 2, 1), position=head - 2)] == [("I1", 1000)]
    assert open_items(view_db, date(2026, 2, 1) - timedelta(days=1), customer_id="A") == []
