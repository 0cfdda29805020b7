"""The audit chain's definition and what a trail row says about an event. Pure: no store."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import msgspec
import pytest

from domain import events as ev
from domain.registry import CommandRecorded, ReferenceClaimed
from projections.audit_export import ExportError, check_export, parse_time
from projections.audit_trail import COLUMNS, GENESIS, chain_step, describe, export_struct, recorded_text, trail_row, trail_struct, utc_text
from projections.audit_verify import Anchor
from services.persistence import encode_event, topic_of

BASE = dict(originator_id=uuid.UUID(int=7), event_id=uuid.UUID(int=8), recorded_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
            actor="alice", correlation_id=uuid.UUID(int=9), causation_id=uuid.UUID(int=10))


def test_chain_step_is_sha256_of_prev_digest_and_big_endian_position():
    digest = hashlib.sha256(b'{"x":1}').digest()
    expected = hashlib.sha256(bytes(32) + digest + bytes([0, 0, 0, 0, 0, 0, 1, 44])).hexdigest()
    assert chain_step(GENESIS, digest, 300).hex() == expected
    # a known answer, so that any change to the definition shows
    assert expected == "a302dab5b356c0d6b0048f9c935d973bd1ad22d938a11df2a34bd2f824d4f0a9"
    assert chain_step(GENESIS, digest, 301) != chain_step(GENESIS, digest, 300)


def test_trail_row_chains_the_stored_bytes_and_keeps_the_filter_columns():
    event = ev.PaymentReceived(**BASE, originator_version=3, customer_id="C1", payment_id="P-9", currency="EUR",
                               amount_minor=500, value_date=date(2026, 2, 28))
    state = encode_event(event)
    row, extra, recorded = trail_row(42, topic_of(type(event)), state, GENESIS)
    chain = chain_step(GENESIS, hashlib.sha256(state).digest(), 42)
    assert dict(zip(COLUMNS, row, strict=True)) == {
        "position": 42, "chain_hash": chain, "public": 1, "customer_id": "C1", "actor": "alice", "invoice_number": None}
    assert extra == [] and recorded == "2026-03-01T12:00:00.000000+00:00"


def test_trail_row_of_an_event_with_lines_keeps_one_invoice_and_lists_the_others():
    lines = tuple(ev.AllocationLine(invoice_number=n, installment=1, amount_minor=5) for n in ("INV-9", "INV-2", "INV-5"))
    reversal = ev.PaymentReversed(**BASE, originator_version=4, customer_id="C1", payment_id="P1", currency="EUR", amount_minor=15,
                                  reversed_on=date(2026, 4, 1), reason="bounced", unallocated=lines)
    row, extra, _ = trail_row(7, topic_of(type(reversal)), encode_event(reversal), GENESIS)
    assert (row[COLUMNS.index("invoice_number")], extra) == ("INV-2", ["INV-5", "INV-9"])
    credit = ev.CreditNoteIssued(**BASE, originator_version=5, customer_id="C1", credit_note_number="CN-1", currency="EUR",
                                 amount_minor=5, issue_date=date(2026, 4, 2), invoice_number="INV-9", applied=lines[:2])
    row, extra, _ = trail_row(8, topic_of(type(credit)), encode_event(credit), GENESIS)
    assert (row[COLUMNS.index("invoice_number")], extra) == ("INV-9", ["INV-2"])
    claim = ReferenceClaimed(**BASE, originator_version=1, kind="invoice", reference="INV-3", customer_id="C1")
    row, extra, _ = trail_row(9, topic_of(ReferenceClaimed), encode_event(claim), GENESIS)
    assert (row[2], row[COLUMNS.index("invoice_number")], extra) == (0, "INV-3", [])


def test_light_structs_read_what_the_full_event_says():
    """The trail and its export decode only some fields, as JSON text: the same values."""
    lines = (ev.AllocationLine(invoice_number="INV-1", installment=1, amount_minor=5),)
    events = [
        ev.CreditNoteIssued(**BASE, originator_version=5, customer_id="C1", credit_note_number="CN-1", currency="EUR", amount_minor=5,
                            issue_date=date(2026, 4, 2), invoice_number="INV-1", applied=lines),
        ev.PaymentReversed(**BASE, originator_version=4, customer_id="C1", payment_id="P1", currency="EUR", amount_minor=5,
                           reversed_on=date(2026, 4, 1), reason="bounced", unallocated=lines),
        ReferenceClaimed(**BASE, originator_version=1, kind="payment", reference="P1", customer_id="C1"),
        CommandRecorded(**BASE, originator_version=1, idempotency_key="k", fingerprint="f", result={}),
    ]
    for event in events:
        cls = type(event)
        light = msgspec.json.decode(encode_event(event), type=export_struct(cls))
        assert describe(light, cls) == describe(event)
        assert (light.event_id, light.originator_id, light.actor) == (str(event.event_id), str(event.originator_id), event.actor)
        assert recorded_text(light.recorded_at) == utc_text(event.recorded_at)
        assert isinstance(msgspec.json.decode(encode_event(event), type=trail_struct(cls)), trail_struct(cls))


def test_describe_links_every_invoice_an_event_touches():
    line = ev.AllocationLine(invoice_number="INV-1", installment=1, amount_minor=5)
    other = ev.AllocationLine(invoice_number="INV-2", installment=2, amount_minor=5)
    reversal = ev.PaymentReversed(**BASE, originator_version=4, customer_id="C1", payment_id="P1", currency="EUR", amount_minor=10,
                                  reversed_on=date(2026, 4, 1), reason="bounced", unallocated=(line, other))
    assert describe(reversal) == (None, "payment:P1", "2026-04-01", {"INV-1", "INV-2"})
    approved = ev.WriteOffApproved(**BASE, originator_version=5, customer_id="C1", write_off_id="WO-1", invoice_number="INV-1",
                                   currency="EUR", amount_minor=5, effective_date=date(2026, 6, 30), requested_by="bob", applied=(line,))
    assert describe(approved) == ("INV-1", "write_off:WO-1", "2026-06-30", {"INV-1"})
    claim = ReferenceClaimed(**BASE, originator_version=1, kind="invoice", reference="INV-3", customer_id="C1")
    assert describe(claim) == ("INV-3", "invoice:INV-3", None, {"INV-3"})
    record = CommandRecorded(**BASE, originator_version=1, idempotency_key="k", fingerprint="f", result={})
    assert describe(record) == (None, None, None, set())


def test_times_are_fixed_width_utc_text():
    plus_two = timezone(timedelta(hours=2))
    assert utc_text(datetime(2026, 1, 1, 14, 0, tzinfo=plus_two)) == "2026-01-01T12:00:00.000000+00:00"
    assert parse_time("2026-01-01") == "2026-01-01T00:00:00.000000+00:00"
    assert parse_time("2026-01-01T10:00:00Z") == parse_time("2026-01-01T12:00:00+02:00") == parse_time("2026-01-01T10:00")
    with pytest.raises(ExportError):
        parse_time("yesterday")


def test_recorded_times_read_from_the_json_match_the_parsed_ones():
    for moment in (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 9, 30, 5, 120, tzinfo=UTC),
                   datetime(2026, 1, 1, 9, 30, 5, 120, tzinfo=timezone(timedelta(hours=-5)))):
        text = msgspec.json.encode(moment).decode().strip('"')
        assert recorded_text(text) == utc_text(moment)


def test_anchor_round_trip_and_rejects_garbage():
    anchor = Anchor.parse("AB" * 32 + "@17")
    assert anchor == Anchor("ab" * 32, 17) and str(anchor) == "ab" * 32 + "@17"
    for bad in ("abc@1", "ab" * 32, "ab" * 32 + "@x"):
        with pytest.raises(ValueError):
            Anchor.parse(bad)


def test_check_export_flags_a_truncated_file():
    header = '{"arledger_audit_export":1,"position":0,"chain_head":null,"filters":{},"chain":"","columns":[]}\n'
    assert check_export([header, '{"arledger_audit_export_end":{"rows":0}}\n']) == []
    assert check_export([header]) == ["the trailer is missing or its row count differs: the file is truncated or edited"]


def test_handle_writes_the_same_rows_from_full_or_light_events(tmp_path):
    """A runner that ignores ``decode_as`` (full events) gets exactly the rows the light path writes."""
    from projections.audit_trail import AuditTrail, trail_struct
    from projections.db import ViewDatabase
    from projections.runner import Envelope

    lines = (ev.AllocationLine(invoice_number="INV-2", installment=1, amount_minor=5),)
    events = [
        ev.CreditNoteIssued(**BASE, originator_version=1, customer_id="C1", credit_note_number="CN-1", currency="EUR", amount_minor=5,
                            issue_date=date(2026, 4, 2), invoice_number="INV-1", applied=lines),
        ReferenceClaimed(**BASE, originator_version=1, kind="invoice", reference="INV-3", customer_id="C1"),
        CommandRecorded(**BASE, originator_version=1, idempotency_key="k", fingerprint="f", result={"customer_id": "X"}),
    ]
    tables = []
    for light in (False, True):
        db = ViewDatabase(f"sqlite:///{tmp_path / f'views-{light}.sqlite'}")
        trail = AuditTrail()
        batch = []
        for position, event in enumerate(events, start=1):
            state = encode_event(event)
            decoded = msgspec.json.decode(state, type=trail_struct(type(event))) if light else event
            batch.append(Envelope(position, decoded, topic_of(type(event)), state))
        with db.transaction() as tx:
            trail.create(tx)
            trail.handle(tx, batch)
        tables.append([db.query(f"SELECT * FROM {t} ORDER BY 1") for t in ("audit_trail", "audit_trail_invoices", "audit_trail_spans")])
        db.close()
    assert tables[0] == tables[1]
    trail_rows, links, spans = tables[0]
    assert [r[3:] for r in trail_rows] == [("C1", "alice", "INV-1"), ("C1", "alice", "INV-3"), (None, "alice", None)]
    assert links == [(1, "INV-2")] and spans == [(1, 3, 3, "2026-03-01T12:00:00.000000+00:00", "2026-03-01T12:00:00.000000+00:00")]
