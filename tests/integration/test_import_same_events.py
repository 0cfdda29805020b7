"""The import's own fast paths (row parsing, direct aggregate calls, bulk row encoding)
must store exactly what the same commands through LedgerService store: the same
events, in the same order per aggregate, with the same bytes apart from the ids and
times that belong to the request (correlation and causation ids)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date

import msgspec

from domain import commands as c
from domain.account import CommandContext, CustomerAccount
from services.bootstrap import bootstrap
from services.importer import run_import
from services.importer.store_io import write_events
from services.ledger import decide
from services.persistence import LedgerStore, decode_event
from services.settings import Settings
from tests.integration.test_import import CREDIT_NOTES, CUSTOMERS

# Wider than test_import's: every optional invoice column, and an auto allocation spread over two invoices.
INVOICES = """customer_id,invoice_number,currency,amount,issue_date,due_date,installments,description,sales_order_id
ACME,INV-1,EUR,55.94,2026-01-15,2026-02-14,,first,SO-1
ACME,INV-2,EUR,900.00,2026-01-15,,2026-02-15:300.00|2026-03-15:600.00,,
NIPPON,JP-1,JPY,12000,2026-01-10,,,,
NIPPON,JP-2,JPY,3000,2026-01-11,,,,
"""
PAYMENTS = """customer_id,payment_id,currency,amount,value_date,method,reference,allocations
ACME,PAY-1,EUR,100.00,2026-02-01,transfer,x,INV-1:55.94|INV-2:10.00
NIPPON,PAY-2,JPY,14000,2026-02-01,,,auto
ACME,PAY-3,EUR,20.00,2026-02-02,,,
"""

D = date.fromisoformat
COMMANDS: list[c.Command] = [
    c.RegisterCustomer(customer_id="ACME", name="Acme GmbH", currency="EUR", payment_terms_days=30, region="DACH", industry="manufacturing",
                       salesperson="anna", country="DE", email="ap@acme.example"),
    c.RegisterCustomer(customer_id="NIPPON", name="Nippon KK", currency="JPY", payment_terms_days=45, region="APAC", industry="retail", salesperson="ken", country="JP"),
    c.IssueInvoice(customer_id="ACME", invoice_number="INV-1", currency="EUR", amount_minor=5594, issue_date=D("2026-01-15"), due_date=D("2026-02-14"),
                   description="first", sales_order_id="SO-1"),
    c.IssueInvoice(customer_id="ACME", invoice_number="INV-2", currency="EUR", amount_minor=90000, issue_date=D("2026-01-15"),
                   installments=[c.InstallmentSpec(due_date=D("2026-02-15"), amount_minor=30000), c.InstallmentSpec(due_date=D("2026-03-15"), amount_minor=60000)]),
    c.IssueInvoice(customer_id="NIPPON", invoice_number="JP-1", currency="JPY", amount_minor=12000, issue_date=D("2026-01-10")),
    c.IssueInvoice(customer_id="NIPPON", invoice_number="JP-2", currency="JPY", amount_minor=3000, issue_date=D("2026-01-11")),
    c.IssueCreditNote(customer_id="ACME", credit_note_number="CN-1", currency="EUR", amount_minor=500, issue_date=D("2026-01-20"), invoice_number="INV-2", reason="price"),
    c.IssueCreditNote(customer_id="ACME", credit_note_number="CN-2", currency="EUR", amount_minor=750, issue_date=D("2026-01-20"), reason="goodwill"),
    c.ReceivePayment(customer_id="ACME", payment_id="PAY-1", currency="EUR", amount_minor=10000, value_date=D("2026-02-01"), method="transfer", reference="x"),
    c.AllocatePayment(payment_id="PAY-1", invoice_number="INV-1", amount_minor=5594),
    c.AllocatePayment(payment_id="PAY-1", invoice_number="INV-2", amount_minor=1000),
    c.ReceivePayment(customer_id="NIPPON", payment_id="PAY-2", currency="JPY", amount_minor=14000, value_date=D("2026-02-01")),
    c.AllocatePayment(payment_id="PAY-2"),
    c.ReceivePayment(customer_id="ACME", payment_id="PAY-3", currency="EUR", amount_minor=2000, value_date=D("2026-02-02")),
]
REQUEST_FIELDS = {"correlation_id", "causation_id"}


def stored_streams(store) -> dict[str, list[dict]]:
    """Every stored event, per aggregate in version order, without request ids; the
    stored bytes are checked to be the canonical encoding of the decoded event."""
    streams: dict[str, list[dict]] = defaultdict(list)
    for n in store.recorder.select_notifications(start=None, limit=10_000):
        event = decode_event(n.topic, n.state)
        assert msgspec.json.encode(event) == n.state
        fields = {k: v for k, v in msgspec.to_builtins(event).items() if k not in REQUEST_FIELDS}
        streams[str(n.originator_id)].append(fields)
    return dict(streams)


def test_import_stores_the_same_events_as_the_same_commands(app, clock, tmp_path):
    paths = {}
    for kind, text in (("customers", CUSTOMERS), ("invoices", INVOICES), ("credit_notes", CREDIT_NOTES), ("payments", PAYMENTS)):
        paths[kind] = tmp_path / f"{kind}.csv"
        paths[kind].write_text(text)
    report = run_import(app.store, paths, actor="migration", clock=clock)
    assert report.recorded and not report.errors

    reference = bootstrap(Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'commands.sqlite'}"), clock=clock, configure_logs=False)
    try:
        for command in COMMANDS:
            reference.ledger.execute(command, actor="migration")
        expected = stored_streams(reference.store)
    finally:
        reference.close()
    assert stored_streams(app.store) == expected
    assert sum(len(s) for s in expected.values()) == report.events


def test_bulk_write_honours_a_compressing_mapper(database_url, clock):
    """The one-comprehension row encoding is for the plain msgspec mapper; a store with
    compression (or a cipher) still gets rows from its own mapper, and reads them back."""
    settings = Settings.from_env({}, database_url=database_url)
    store = LedgerStore(settings, env={"COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"})
    try:
        assert store.mapper.compressor is not None
        ctx = CommandContext(actor="t", recorded_at=clock(), correlation_id=uuid.uuid4(), causation_id=uuid.uuid4())
        account = CustomerAccount.register(ctx, **msgspec.structs.asdict(COMMANDS[0]))
        decide(account, ctx, COMMANDS[2])
        events = account.collect_events()
        write_events(store, events)
        stored = [store.mapper.to_domain_event(n) for n in store.recorder.select_notifications(start=None, limit=100)]
        assert stored == events and len(events) == 2
    finally:
        store.close()
