"""Bulk import on a real store (SQLite file and PostgreSQL): all or nothing, same events
as commands, and the ledger keeps working on the imported data."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from eventsourcing.persistence import IntegrityError

from domain import commands as c
from domain.errors import AlreadyExists
from services.importer import run_import
from services.importer.plan import build_plan
from services.importer.rows import read_file
from services.importer.store_io import write_events
from services.persistence import decode_event

CUSTOMERS = """customer_id,name,currency,payment_terms_days,region,industry,salesperson,country,email
ACME,Acme GmbH,EUR,30,DACH,manufacturing,anna,DE,ap@acme.example
NIPPON,Nippon KK,JPY,45,APAC,retail,ken,JP,
"""
INVOICES = """customer_id,invoice_number,currency,amount,issue_date,due_date,installments
ACME,INV-1,EUR,55.94,2026-01-15,2026-02-14,
ACME,INV-2,EUR,900.00,2026-01-15,,2026-02-15:300.00|2026-03-15:600.00
NIPPON,JP-1,JPY,12000,2026-01-10,,
"""
CREDIT_NOTES = """customer_id,credit_note_number,currency,amount,issue_date,invoice_number,reason
ACME,CN-1,EUR,5.00,2026-01-20,INV-2,price
ACME,CN-2,EUR,7.50,2026-01-20,,goodwill
"""
PAYMENTS = """customer_id,payment_id,currency,amount,value_date,method,reference,allocations
ACME,PAY-1,EUR,100.00,2026-02-01,transfer,x,INV-1:55.94|INV-2:10.00
NIPPON,PAY-2,JPY,5000,2026-02-01,,,auto
ACME,PAY-3,EUR,20.00,2026-02-02,,,
"""


def write_files(directory, **contents):
    paths = {}
    for kind, text in contents.items():
        paths[kind] = directory / f"{kind}.csv"
        paths[kind].write_text(text)
    return paths


@pytest.fixture
def ledger_files(tmp_path):
    return write_files(tmp_path, customers=CUSTOMERS, invoices=INVOICES, credit_notes=CREDIT_NOTES, payments=PAYMENTS)


def test_import_records_the_ledger_and_commands_work_on_it(app, ledger_files):
    report = run_import(app.store, ledger_files, actor="migration", clock=app.ledger.clock)
    assert report.recorded and not report.errors
    assert report.rows == {"customers": 2, "invoices": 3, "credit_notes": 2, "payments": 3}
    # 2 registered + 3 invoices + 2 credit notes + 3 payments + 3 allocations, and 8 reference claims
    assert (report.events, report.reference_claims) == (21, 8)
    assert app.store.max_position() >= 21
    acme = app.ledger.account("ACME").state
    assert acme.invoices["INV-1"].amount_minor == 5594 and acme.invoices["INV-1"].open_minor == 0
    assert acme.invoices["INV-2"].open_minor == 90_000 - 500 - 1000
    assert [i.open_minor for i in acme.invoices["INV-2"].installments] == [28_500, 60_000]
    assert acme.credit_notes == {"CN-1": 0, "CN-2": 750}
    assert acme.payments["PAY-1"].unallocated_minor == 10_000 - 5594 - 1000 and acme.payments["PAY-3"].unallocated_minor == 2000
    nippon = app.ledger.account("NIPPON").state
    assert nippon.invoices["JP-1"].amount_minor == 12000 and nippon.invoices["JP-1"].open_minor == 7000
    # Stored events are the same msgspec JSON as commands write, with actor and correlation.
    stored = [decode_event(n.topic, n.state) for n in app.store.recorder.select_notifications(start=None, limit=100)]
    assert {e.actor for e in stored} == {"migration"} and len({e.correlation_id for e in stored}) == 1
    # The ledger finds imported documents by number and keeps refusing duplicates.
    result = app.ledger.execute(c.AllocatePayment(payment_id="PAY-3"), actor="bob")
    assert [e.type for e in result.events] == ["PaymentAllocated"]
    assert app.ledger.account("ACME").state.invoices["INV-2"].open_minor == 88_500 - 2000
    with pytest.raises(AlreadyExists):
        app.ledger.execute(c.IssueInvoice(customer_id="NIPPON", invoice_number="INV-1", currency="JPY", amount_minor=1, issue_date=date(2026, 1, 1)), actor="bob")
    with pytest.raises(AlreadyExists):
        app.ledger.execute(c.RegisterCustomer(customer_id="ACME", name="again", currency="EUR"), actor="bob")


BAD = {
    "customers": (CUSTOMERS + "BAD,Bad Co,EURO,30,,,,,\n", "customers.csv:4: column currency: rule "),
    "invoices": (INVOICES.replace("55.94", "55.945"), "invoices.csv:2: column amount: rule minor_unit_precision: "),
    "credit_notes": (CREDIT_NOTES.replace("5.00,2026-01-20,INV-2", "5000.00,2026-01-20,INV-2"), "credit_notes.csv:2: column amount: rule not_above_open_amount: "),
    "payments": (PAYMENTS.replace("INV-2:10.00", "INV-2:99.00"), "payments.csv:2: column allocations: rule not_above_unallocated: "),
}


@pytest.mark.parametrize("bad_kind", list(BAD))
def test_a_bad_row_in_any_file_is_reported_and_nothing_is_recorded(app, tmp_path, bad_kind):
    files = {"customers": CUSTOMERS, "invoices": INVOICES, "credit_notes": CREDIT_NOTES, "payments": PAYMENTS}
    text, expected = BAD[bad_kind]
    files[bad_kind] = text
    before = app.store.max_position()
    report = run_import(app.store, write_files(tmp_path, **files), actor="migration")
    assert not report.recorded and [str(e) for e in report.errors if str(e).startswith(expected)], report.errors
    assert app.store.max_position() == before


def test_every_bad_row_is_reported_across_files_including_references(app, tmp_path):
    paths = write_files(
        tmp_path,
        customers="customer_id,name,currency\nA,A Co,EUR\nA,A again,EUR\n",
        invoices="customer_id,invoice_number,currency,amount,issue_date\nA,I-1,EUR,1.00,2026-01-01\nB,I-2,EUR,1.00,2026-01-01\nA,I-1,EUR,2.00,2026-01-01\n",
        payments="customer_id,payment_id,currency,amount,value_date,allocations\nA,P-1,EUR,1.00,2026-01-02,I-9:1.00\nA,P-2,EUR,1.00,2026-01-02,I-1:1.00\n",
    )
    report = run_import(app.store, paths, actor="migration")
    assert [(e.file, e.line, e.column, e.rule) for e in report.errors] == [
        ("customers.csv", 3, "customer_id", "must_be_unique"),
        ("invoices.csv", 3, "customer_id", "must_exist"),
        ("invoices.csv", 4, "invoice_number", "must_be_unique"),
        ("payments.csv", 2, "allocations", "must_exist"),
    ]
    assert app.store.max_position() == 0


def test_running_the_same_import_again_is_refused_and_records_nothing(app, ledger_files):
    assert run_import(app.store, ledger_files, actor="migration").recorded
    before = app.store.max_position()
    again = run_import(app.store, ledger_files, actor="migration")
    assert not again.recorded and len(again.errors) == 10
    assert {e.rule for e in again.errors} == {"must_be_unique"}
    assert app.store.max_position() == before


def test_dry_run_checks_and_counts_but_records_nothing(app, ledger_files):
    report = run_import(app.store, ledger_files, actor="migration", dry_run=True)
    assert report.events == 21 and not report.recorded and app.store.max_position() == 0


def test_import_onto_existing_accounts_sees_cached_state_and_snapshots(make_app, tmp_path):
    app = make_app(snapshot_interval=4)
    app.ledger.execute(c.RegisterCustomer(customer_id="ACME", name="Acme", currency="EUR"), actor="alice")
    app.ledger.execute(c.ReceivePayment(customer_id="ACME", payment_id="P-0", currency="EUR", amount_minor=1000, value_date=date(2026, 3, 1)), actor="alice")
    app.ledger.account("ACME")  # now in this process's aggregate cache
    paths = write_files(tmp_path, invoices=INVOICES.replace("NIPPON,JP-1,JPY,12000,2026-01-10,,\n", ""))
    report = run_import(app.store, paths, actor="migration")
    assert report.recorded and report.snapshots == 1
    result = app.ledger.execute(c.AllocatePayment(payment_id="P-0"), actor="alice")  # oldest due first: the imported INV-1
    assert [e.originator_version for e in result.events] == [5]
    assert app.ledger.account("ACME").state.invoices["INV-1"].open_minor == 5594 - 1000
    fresh = make_app()
    assert fresh.store.snapshots.get(app.ledger.account("ACME").id, desc=True, limit=1)
    assert fresh.ledger.account("ACME").state.invoices["INV-2"].amount_minor == 90_000


def test_a_concurrent_writer_makes_the_bulk_write_record_nothing(app, tmp_path):
    """The store's (originator_id, version) key still guards the bulk path."""
    app.ledger.execute(c.RegisterCustomer(customer_id="ACME", name="Acme", currency="EUR"), actor="alice")
    paths = write_files(tmp_path, invoices="customer_id,invoice_number,currency,amount,issue_date\nACME,INV-1,EUR,1.00,2026-01-01\nACME,INV-2,EUR,1.00,2026-01-01\n")
    files = {kind: read_file(kind, path) for kind, path in paths.items()}
    plan = build_plan(app.store, files, actor="migration", recorded_at=app.ledger.clock(), correlation_id=uuid.uuid4())
    assert plan.ok
    app.ledger.execute(c.IssueInvoice(customer_id="ACME", invoice_number="INV-9", currency="EUR", amount_minor=5, issue_date=date(2026, 1, 1)), actor="bob")
    before = app.store.max_position()
    with pytest.raises(IntegrityError):
        write_events(app.store, plan.events)
    assert app.store.max_position() == before
    assert set(app.ledger.account("ACME").state.invoices) == {"INV-9"}
