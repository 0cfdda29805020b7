"""The ledger service on a real store: SQLite file and PostgreSQL, the same cases."""

from __future__ import annotations

import threading
from datetime import date

import msgspec
import pytest

from domain import commands as c
from domain.errors import AlreadyExists, NotFound, RuleViolation
from services.ledger import IdempotencyKeyReused
from services.persistence import decode_event


def setup_customer(app, customer_id="C1", currency="EUR"):
    app.ledger.execute(c.RegisterCustomer(customer_id=customer_id, name=f"Customer {customer_id}", currency=currency), actor="alice")


def invoice(customer_id="C1", number="INV-1", amount=10_000, **kw):
    return c.IssueInvoice(customer_id=customer_id, invoice_number=number, currency="EUR", amount_minor=amount, issue_date=date(2026, 1, 1), **kw)


def stored_count(app) -> int:
    return app.store.max_position()


def test_commands_are_stored_msgspec_encoded_and_replayed_after_restart(make_app):
    app = make_app()
    setup_customer(app)
    app.ledger.execute(invoice(), actor="alice")
    app.ledger.execute(c.ReceivePayment(customer_id="C1", payment_id="P1", currency="EUR", amount_minor=4_000, value_date=date(2026, 1, 20)), actor="bob")
    app.ledger.execute(c.AllocatePayment(payment_id="P1"), actor="bob")
    notifications = app.store.recorder.select_notifications(start=None, limit=100)
    # Stored state is the event's msgspec JSON (tagged with its type), not the library's transcoder format.
    first = msgspec.json.decode(notifications[0].state)
    assert first["type"] == "CustomerRegistered" and first["customer_id"] == "C1"
    assert all(decode_event(n.topic, n.state).originator_version == n.originator_version for n in notifications)
    restarted = make_app()  # a second process on the same database
    account = restarted.ledger.account("C1")
    assert account.state.invoices["INV-1"].open_minor == 6_000
    assert account.state.payments["P1"].unallocated_minor == 0


def test_bad_commands_record_nothing(app):
    setup_customer(app)
    before = stored_count(app)
    with pytest.raises(NotFound) as err:
        app.ledger.execute(invoice(customer_id="NOBODY"), actor="alice")
    assert err.value.field == "customer_id"
    with pytest.raises(RuleViolation) as err:
        app.ledger.execute(invoice(due_date=date(2025, 12, 1)), actor="alice")
    assert (err.value.field, err.value.rule) == ("due_date", "not_before_issue_date")
    assert stored_count(app) == before


def test_invoice_numbers_are_unique_across_customers(app):
    setup_customer(app, "C1")
    setup_customer(app, "C2")
    app.ledger.execute(invoice("C1", "INV-1"), actor="alice")
    before = stored_count(app)
    with pytest.raises(AlreadyExists) as err:
        app.ledger.execute(invoice("C2", "INV-1"), actor="alice")
    assert err.value.field == "invoice_number"
    assert stored_count(app) == before
    assert "INV-1" not in app.ledger.account("C2").state.invoices


def test_duplicate_customer_is_refused(app):
    setup_customer(app)
    with pytest.raises(AlreadyExists) as err:
        setup_customer(app)
    assert err.value.field == "customer_id"


def test_idempotency_key_records_once_and_refuses_another_body(app):
    setup_customer(app)
    first = app.ledger.execute(invoice(), actor="alice", idempotency_key="key-1")
    after_first = stored_count(app)
    again = app.ledger.execute(invoice(), actor="alice", idempotency_key="key-1")
    assert again.replayed and again.events == first.events
    assert stored_count(app) == after_first
    with pytest.raises(IdempotencyKeyReused) as err:
        app.ledger.execute(invoice(number="INV-2"), actor="alice", idempotency_key="key-1")
    assert err.value.field == "Idempotency-Key"
    assert stored_count(app) == after_first


def test_commands_find_the_customer_through_references(app):
    setup_customer(app)
    app.ledger.execute(invoice(), actor="alice")
    app.ledger.execute(c.DisputeInvoice(invoice_number="INV-1", disputed_on=date(2026, 1, 2), reason="wrong quantity"), actor="carol")
    assert app.ledger.account("C1").state.invoices["INV-1"].disputed
    with pytest.raises(NotFound) as err:
        app.ledger.execute(c.DisputeInvoice(invoice_number="INV-404", disputed_on=date(2026, 1, 2), reason="x"), actor="carol")
    assert err.value.field == "invoice_number"


def test_write_off_four_eyes_through_the_service(app):
    setup_customer(app)
    app.ledger.execute(invoice(), actor="alice")
    app.ledger.execute(c.RequestWriteOff(write_off_id="W1", invoice_number="INV-1", amount_minor=2_500, reason="insolvency"), actor="alice")
    with pytest.raises(RuleViolation) as err:
        app.ledger.execute(c.ApproveWriteOff(write_off_id="W1", effective_date=date(2026, 3, 1)), actor="alice")
    assert err.value.rule == "four_eyes"
    app.ledger.execute(c.ApproveWriteOff(write_off_id="W1", effective_date=date(2026, 3, 1)), actor="bob")
    assert app.ledger.account("C1").state.invoices["INV-1"].open_minor == 7_500


def test_concurrent_writers_on_one_account_lose_nothing(make_app):
    """Two processes race to allocate the same payment: every allocation that was
    accepted is stored once, and the payment is never over-allocated."""
    a, b = make_app(), make_app()
    setup_customer(a)
    for n in range(10):
        a.ledger.execute(invoice(number=f"INV-{n}", amount=1_000), actor="alice")
    a.ledger.execute(c.ReceivePayment(customer_id="C1", payment_id="P1", currency="EUR", amount_minor=10_000, value_date=date(2026, 1, 5)), actor="alice")
    errors: list[Exception] = []

    def allocate(app, numbers):
        for n in numbers:
            try:
                app.ledger.execute(c.AllocatePayment(payment_id="P1", invoice_number=f"INV-{n}", amount_minor=1_000), actor="bob")
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=allocate, args=(a, range(0, 10, 2))), threading.Thread(target=allocate, args=(b, range(1, 10, 2)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    account = make_app().ledger.account("C1")
    assert account.state.payments["P1"].unallocated_minor == 0
    assert all(inv.open_minor == 0 for inv in account.state.invoices.values())


def test_long_accounts_load_from_snapshots(make_app):
    app = make_app(snapshot_interval=5)
    setup_customer(app)
    for n in range(12):
        app.ledger.execute(invoice(number=f"INV-{n}", amount=100 + n), actor="alice")
    snapshots = list(app.store.snapshots.get(app.ledger.account("C1").id))
    assert [s.originator_version for s in snapshots] == [5, 10]
    fresh = make_app(snapshot_interval=5)
    account = fresh.ledger.account("C1")
    assert account.version == 13 and len(account.state.invoices) == 12
