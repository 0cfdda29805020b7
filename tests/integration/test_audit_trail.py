"""The audit trail on SQLite and PostgreSQL: the chain, verification against real
tampering of the store's table with SQL, and reproducible exports."""

from __future__ import annotations

import hashlib
import io
import sqlite3
from datetime import date
from urllib.parse import parse_qs, unquote, urlparse

import msgspec
import psycopg
import pytest

from domain import commands as c
from projections.audit_export import ExportError, ExportFilters, check_export, parse_time, write_export
from projections.audit_store import StoredRows
from projections.audit_trail import AuditTrail
from projections.audit_verify import Anchor, verify
from projections.runner import ProjectionRunner
from tests.integration.test_projection_runner import view_db  # noqa: F401 - the shared view database fixture


class StoreTable:
    """Raw SQL on the library's events table, as an attacker with database access would."""

    def __init__(self, database_url: str) -> None:
        parsed = urlparse(database_url)
        if parsed.scheme == "sqlite":
            self.conn = sqlite3.connect(unquote(parsed.path), isolation_level=None)
            self.table, self.key, self.mark = "stored_events", "rowid", "?"
        else:
            self.conn = psycopg.connect(database_url.split("?")[0], autocommit=True)
            schema = parse_qs(parsed.query)["schema"][0]
            self.table, self.key, self.mark = f'"{schema}".arledger_events', "notification_id", "%s"

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        cur = self.conn.execute(statement.format(table=self.table, key=self.key).replace("?", self.mark), params)
        return list(cur.fetchall()) if cur.description else []

    def rows(self) -> list[tuple[int, bytes]]:
        return [(p, bytes(s)) for p, s in self.sql("SELECT {key}, state FROM {table} ORDER BY {key}")]

    def state(self, position: int) -> bytes:
        return bytes(self.sql("SELECT state FROM {table} WHERE {key} = ?", (position,))[0][0])

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def raw(database_url):
    table = StoreTable(database_url)
    yield table
    table.close()


def record_ledger(app, clock):
    """Two customers, invoices, a credit note, a payment allocated, by three actors."""
    for cid in ("ACME", "BOLT"):
        app.ledger.execute(c.RegisterCustomer(customer_id=cid, name=cid, currency="EUR"), actor="sales")
    for n in range(6):
        clock.advance(hours=1)
        app.ledger.execute(c.IssueInvoice(customer_id="ACME" if n % 2 else "BOLT", invoice_number=f"INV-{n}", currency="EUR",
                                          amount_minor=1000 + n, issue_date=date(2026, 1, 1 + n)), actor="sales")
    clock.advance(days=1)
    app.ledger.execute(c.IssueCreditNote(customer_id="ACME", credit_note_number="CN-1", currency="EUR", amount_minor=100,
                                         issue_date=date(2026, 1, 20), invoice_number="INV-1"), actor="credit")
    app.ledger.execute(c.ReceivePayment(customer_id="BOLT", payment_id="PAY-1", currency="EUR", amount_minor=500,
                                        value_date=date(2026, 2, 1)), actor="cashier", idempotency_key="k1")
    app.ledger.execute(c.AllocatePayment(payment_id="PAY-1", invoice_number="INV-0", installment=1, amount_minor=500), actor="cashier")


def runner_for(app, view_db):
    runner = ProjectionRunner(app.store, view_db, [AuditTrail()], batch_size=7)
    runner.setup()
    runner.catch_up()
    return runner


def check(app, view_db, runner, anchor=None):
    return verify(StoredRows(app.store.recorder), view_db, runner.position("audit_trail"), anchor)


@pytest.fixture
def ledger(app, clock, view_db):
    record_ledger(app, clock)
    return runner_for(app, view_db)


def test_chain_covers_every_stored_event_as_defined(app, view_db, raw, ledger):
    stored = raw.rows()
    trail = view_db.query("SELECT position, chain_hash FROM audit_trail ORDER BY position")
    assert [p for p, _ in stored] == [r[0] for r in trail]  # internal events included
    prev = bytes(32)
    for (position, state), (_, chain) in zip(stored, trail, strict=True):
        prev = hashlib.sha256(prev + hashlib.sha256(state).digest() + position.to_bytes(8, "big")).digest()
        assert prev == bytes(chain)
    report = check(app, view_db, ledger)
    assert report.intact and report.problems == [] and report.first_bad_position is None
    assert report.verified_events == len(stored) and report.head == Anchor(prev.hex(), stored[-1][0])


def test_rows_carry_actor_times_ids_and_business_dates(app, view_db, raw, ledger):
    """The trail keeps the filter columns; the export reads the rest from the stored event."""
    trail = view_db.query("SELECT public, customer_id, invoice_number, actor FROM audit_trail ORDER BY position")
    assert (1, "BOLT", "INV-0", "sales") in trail and (0, "ACME", "INV-1", "sales") in trail  # an invoice and its claim
    assert (1, "ACME", "INV-1", "credit") in trail
    rows = [tuple(r[k] for k in ("type", "public", "customer_id", "invoice_number", "document_ref", "actor", "business_date"))
            for r in jsonl_rows(export(app, view_db, ledger, include_internal=True))]
    assert ("InvoiceIssued", True, "BOLT", "INV-0", None, "sales", "2026-01-01") in rows
    assert ("CreditNoteIssued", True, "ACME", "INV-1", "credit_note:CN-1", "credit", "2026-01-20") in rows
    assert ("PaymentAllocated", True, "BOLT", "INV-0", "payment:PAY-1", "cashier", "2026-02-01") in rows
    assert ("ReferenceClaimed", False, "ACME", "INV-1", "invoice:INV-1", "sales", None) in rows
    assert any(r[0] == "CommandRecorded" and r[1] is False for r in rows)
    stored = dict(raw.rows())
    for r in jsonl_rows(export(app, view_db, ledger, include_internal=True)):
        event = msgspec.json.decode(stored[r["position"]])
        assert (r["event_id"], r["originator_id"], r["originator_version"], r["correlation_id"]) == (
            event["event_id"], event["originator_id"], event["originator_version"], event["correlation_id"])
        assert r["event_sha256"] == hashlib.sha256(stored[r["position"]]).hexdigest() and r["event"] == stored[r["position"]].decode()


def test_altered_bytes_are_named_at_their_position(app, view_db, raw, ledger):
    position = next(p for p, s in raw.rows() if b'"amount_minor":1003' in s)
    raw.sql("UPDATE {table} SET state = ? WHERE {key} = ?", (raw.state(position).replace(b":1003", b":9"), position))
    report = check(app, view_db, ledger)
    assert not report.intact and report.first_bad_position == position
    assert [p.kind for p in report.problems] == ["altered"]


def test_deleted_row_is_named_and_breaks_the_aggregate_versions(app, view_db, raw, ledger):
    position = next(p for p, s in raw.rows() if b'"invoice_number":"INV-2"' in s and b"InvoiceIssued" in s)
    raw.sql("DELETE FROM {table} WHERE {key} = ?", (position,))
    report = check(app, view_db, ledger)
    assert report.first_bad_position == position and report.problems[0].kind == "removed"
    assert "version_gap" in {p.kind for p in report.problems}


def test_swapped_rows_are_reported_as_reordered(app, view_db, raw, ledger):
    (p1, s1), (p2, s2) = raw.rows()[3], raw.rows()[8]
    raw.sql("UPDATE {table} SET state = ? WHERE {key} = ?", (s2, p1))
    raw.sql("UPDATE {table} SET state = ? WHERE {key} = ?", (s1, p2))
    report = check(app, view_db, ledger)
    assert report.first_bad_position == p1
    assert [(p.position, p.kind) for p in report.problems] == [(p1, "reordered"), (p2, "reordered")]
    assert f"position {p2}" in report.problems[0].detail


def test_edited_columns_of_the_store_and_of_the_trail_are_detected(app, view_db, raw, ledger):
    position = raw.rows()[5][0]
    raw.sql("UPDATE {table} SET originator_version = originator_version + 5 WHERE {key} = ?", (position,))
    view_db.query("UPDATE audit_trail SET actor = 'mallory' WHERE position = ? RETURNING position", (raw.rows()[7][0],))
    report = check(app, view_db, ledger)
    assert report.first_bad_position == position and report.problems[0].kind == "metadata_altered"
    edited = next(p for p in report.problems if p.kind == "trail_altered")
    assert edited.position == raw.rows()[7][0] and "actor='mallory'" in edited.detail


def test_a_consistent_rewrite_of_store_and_trail_is_caught_by_the_anchor(app, view_db, raw, ledger):
    anchor = check(app, view_db, ledger).head
    position = next(p for p, s in raw.rows() if b'"amount_minor":1004' in s)
    raw.sql("UPDATE {table} SET state = ? WHERE {key} = ?", (raw.state(position).replace(b":1004", b":4"), position))
    ledger.rebuild("audit_trail")  # the attacker re-chains the trail over the altered store
    assert check(app, view_db, ledger).intact  # undetectable from inside the database...
    report = check(app, view_db, ledger, anchor)
    assert not report.intact and report.problems[0].kind == "anchor_mismatch" and report.first_bad_position == anchor.position


def test_an_edited_hash_in_the_trail_is_named_as_such(app, view_db, raw, ledger):
    position = raw.rows()[6][0]
    view_db.query("UPDATE audit_trail SET chain_hash = ? WHERE position = ? RETURNING position", (bytes(32), position))
    report = check(app, view_db, ledger)
    assert [(p.position, p.kind) for p in report.problems] == [(position, "trail_altered")]
    last = raw.rows()[-1][0]  # the head: nothing after it to tell an edited hash from edited bytes
    view_db.query("UPDATE audit_trail SET chain_hash = ? WHERE position = ? RETURNING position", (bytes(32), last))
    assert check(app, view_db, ledger).problems[-1].position == last


def test_events_after_the_trail_are_reported_unverified_not_bad(app, view_db, clock, ledger):
    app.ledger.execute(c.RegisterCustomer(customer_id="LATE", name="Late", currency="EUR"), actor="sales")
    report = check(app, view_db, ledger)
    assert report.intact and report.unverified_events == 1 and report.store_head > report.trail_position


# ---- exports -----------------------------------------------------------------------------


def export(app, view_db, runner, fmt="jsonl", at=None, **filters) -> bytes:
    out = io.BytesIO()
    write_export(view_db, StoredRows(app.store.recorder), out, fmt=fmt, filters=ExportFilters(**filters),
                 trail_position=runner.position("audit_trail"), at_position=at)
    return out.getvalue()


def jsonl_rows(data: bytes) -> list[dict]:
    return [msgspec.json.decode(line) for line in data.splitlines()[1:-1]]


def test_export_filters_by_customer_invoice_actor_and_time(app, view_db, raw, ledger):
    everything = jsonl_rows(export(app, view_db, ledger))
    assert {r["public"] for r in everything} == {True}
    assert {r["customer_id"] for r in jsonl_rows(export(app, view_db, ledger, customer_id="ACME"))} == {"ACME"}
    inv1 = jsonl_rows(export(app, view_db, ledger, invoice_number="INV-1"))
    assert [r["type"] for r in inv1] == ["InvoiceIssued", "CreditNoteIssued"]
    assert {r["actor"] for r in jsonl_rows(export(app, view_db, ledger, actor="cashier"))} == {"cashier"}
    times = sorted(r["recorded_at"] for r in everything)
    window = jsonl_rows(export(app, view_db, ledger, from_time=parse_time(times[3]), to_time=parse_time(times[6])))
    assert [r["recorded_at"] for r in window] == [t for t in times if times[3] <= t < times[6]] and window
    internal = jsonl_rows(export(app, view_db, ledger, include_internal=True))
    assert [r["position"] for r in internal] == [p for p, _ in raw.rows()]


def test_export_reproduces_byte_for_byte_at_its_position(app, view_db, clock, ledger):
    for fmt in ("jsonl", "csv"):
        first = export(app, view_db, ledger, fmt=fmt, customer_id="BOLT")
        position = msgspec.json.decode(first.splitlines()[0].removeprefix(b"# "))["position"]
        assert position == app.store.max_position()
        clock.advance(days=2)
        app.ledger.execute(c.IssueInvoice(customer_id="BOLT", invoice_number=f"LATE-{fmt}", currency="EUR", amount_minor=7,
                                          issue_date=date(2026, 3, 1)), actor="sales")
        ledger.catch_up()
        assert export(app, view_db, ledger, fmt=fmt, customer_id="BOLT") != first
        assert export(app, view_db, ledger, fmt=fmt, customer_id="BOLT", at=position) == first


def test_known_at_a_time_is_the_position_of_the_last_event_recorded_by_then(app, view_db, clock, ledger):
    from projections.audit_export import position_known_at

    stored = StoredRows(app.store.recorder)
    stated = [(r["position"], r["recorded_at"]) for r in jsonl_rows(export(app, view_db, ledger, include_internal=True))]
    position, moment = stated[len(stated) // 2]
    later = [p for p, t in stated if t > moment]
    known = position_known_at(view_db, stored, moment, ledger.position("audit_trail"))
    assert known >= position and all(p > known for p in later)
    assert export(app, view_db, ledger, at=known) != export(app, view_db, ledger)
    assert position_known_at(view_db, stored, parse_time("2000-01-01"), ledger.position("audit_trail")) == 0


def test_time_filters_are_exact_over_many_spans_and_times_out_of_order(app, view_db, clock, monkeypatch):
    from projections import audit_trail
    from projections.audit_export import position_known_at

    monkeypatch.setattr(audit_trail, "SPAN_EVENTS", 3)  # many small spans
    record_ledger(app, clock)
    clock.advance(days=-3)  # a writer whose clock was behind: recorded before events already stored
    for n in range(3):
        clock.advance(minutes=7)
        app.ledger.execute(c.IssueInvoice(customer_id="BOLT", invoice_number=f"EARLY-{n}", currency="EUR", amount_minor=5,
                                          issue_date=date(2026, 1, 9)), actor="sales")
    runner = runner_for(app, view_db)
    assert len(view_db.query("SELECT * FROM audit_trail_spans")) > 3
    every = [(r["position"], r["recorded_at"]) for r in jsonl_rows(export(app, view_db, runner, include_internal=True))]
    times = sorted({t for _, t in every})
    for low, high in [(times[0], times[-1]), (times[1], times[4]), (times[3], times[-2]), (times[-1], parse_time("2030-01-01"))]:
        window = jsonl_rows(export(app, view_db, runner, include_internal=True, from_time=low, to_time=high))
        assert [r["position"] for r in window] == [p for p, t in every if low <= t < high]
    stored = StoredRows(app.store.recorder)
    for moment in times:
        assert position_known_at(view_db, stored, moment, runner.position("audit_trail")) == max(p for p, t in every if t <= moment)
    assert check(app, view_db, runner).intact
    first = view_db.query("SELECT MIN(first_position) FROM audit_trail_spans")[0][0]
    view_db.query("UPDATE audit_trail_spans SET earliest = latest WHERE first_position = ? RETURNING first_position", (first,))
    report = check(app, view_db, runner)
    assert report.problems[0].kind == "trail_altered" and "time index" in report.problems[0].detail


def test_csv_and_jsonl_hold_the_same_rows_and_check_on_their_own(app, view_db, raw, ledger):
    as_jsonl = export(app, view_db, ledger, include_internal=True)
    as_csv = export(app, view_db, ledger, fmt="csv", include_internal=True)
    assert check_export(as_jsonl.decode().splitlines(keepends=True)) == []
    assert check_export(as_csv.decode().splitlines(keepends=True)) == []
    from projections.audit_export import read_export

    head, csv_rows, trailer = read_export(as_csv.decode().splitlines(keepends=True))
    assert [r["event"] for r in csv_rows] == [r["event"] for r in jsonl_rows(as_jsonl)]
    assert trailer == {"arledger_audit_export_end": {"rows": len(csv_rows)}} and head["position"] == ledger.position("audit_trail")
    lines = as_jsonl.decode().splitlines(keepends=True)
    assert check_export(lines[:2] + lines[3:])  # a row taken out of a full export
    assert check_export([lines[0], lines[1].replace('"actor":"sales"', '"actor":"nobody"', 2), *lines[2:]])


def test_export_cannot_claim_a_position_the_trail_has_not_reached(app, view_db, ledger):
    with pytest.raises(ExportError):
        export(app, view_db, ledger, at=ledger.position("audit_trail") + 1)


def test_the_invoice_index_cannot_hide_or_add_events(app, view_db, ledger):
    credit = next(r["position"] for r in jsonl_rows(export(app, view_db, ledger)) if r["type"] == "CreditNoteIssued")
    view_db.query("UPDATE audit_trail SET invoice_number = NULL WHERE position = ? RETURNING position", (credit,))
    view_db.query("INSERT INTO audit_trail_invoices (position, invoice_number) VALUES (1, 'INV-5') RETURNING position")
    assert [r["type"] for r in jsonl_rows(export(app, view_db, ledger, invoice_number="INV-1"))] == ["InvoiceIssued"]
    report = check(app, view_db, ledger)
    assert [(p.position, p.kind) for p in report.problems] == [(1, "trail_altered"), (credit, "trail_altered")]
    assert "'INV-5'" in report.problems[0].detail and "INV-1" in report.problems[1].detail


def test_events_touching_several_invoices_are_found_by_each(app, view_db, ledger):
    app.ledger.execute(c.ReceivePayment(customer_id="ACME", payment_id="PAY-3", currency="EUR", amount_minor=300,
                                        value_date=date(2026, 2, 2)), actor="cashier")
    for number in ("INV-1", "INV-3", "INV-5"):
        app.ledger.execute(c.AllocatePayment(payment_id="PAY-3", invoice_number=number, installment=1, amount_minor=100), actor="cashier")
    app.ledger.execute(c.ReversePayment(payment_id="PAY-3", reversed_on=date(2026, 2, 3), reason="bounced"), actor="cashier")
    ledger.catch_up()
    for number in ("INV-1", "INV-3", "INV-5"):
        assert [r["type"] for r in jsonl_rows(export(app, view_db, ledger, invoice_number=number))][-2:] == ["PaymentAllocated", "PaymentReversed"]
    reversal = view_db.query("SELECT MAX(position) FROM audit_trail")[0][0]
    assert view_db.query("SELECT position, invoice_number FROM audit_trail_invoices") == [(reversal, "INV-3"), (reversal, "INV-5")]
    view_db.query("DELETE FROM audit_trail_invoices WHERE invoice_number = 'INV-5' RETURNING position")
    report = check(app, view_db, ledger)
    assert [(p.position, p.kind) for p in report.problems] == [(reversal, "trail_altered")] and "INV-5" in report.problems[0].detail


def test_paged_reads_return_every_row_once(app, view_db, raw, ledger):
    from projections.audit_verify import _link_rows, _trail_rows

    app.ledger.execute(c.ReceivePayment(customer_id="ACME", payment_id="PAY-2", currency="EUR", amount_minor=300,
                                        value_date=date(2026, 2, 2)), actor="cashier")
    for number in ("INV-1", "INV-3", "INV-5"):
        app.ledger.execute(c.AllocatePayment(payment_id="PAY-2", invoice_number=number, installment=1, amount_minor=100), actor="cashier")
    app.ledger.execute(c.ReversePayment(payment_id="PAY-2", reversed_on=date(2026, 2, 3), reason="bounced"), actor="cashier")
    ledger.catch_up()
    head = ledger.position("audit_trail")
    links = view_db.query("SELECT position, invoice_number FROM audit_trail_invoices ORDER BY position, invoice_number")
    assert list(_link_rows(view_db, head, batch=1)) == links and len(links) > len({p for p, _ in links})
    assert [r[0] for r in _trail_rows(view_db, head, batch=2)] == [p for p, _ in raw.rows()]
    assert [(r[0], r[4]) for r in StoredRows(app.store.recorder).scan(0, head, batch=3)] == raw.rows()


def test_rows_moved_to_each_others_positions_are_reported_as_reordered(app, view_db, raw, ledger):
    p1, p2 = raw.rows()[2][0], raw.rows()[9][0]
    for source, target in ((p1, -1), (p2, p1), (-1, p2)):  # whole rows change places, columns and all
        raw.sql("UPDATE {table} SET {key} = ? WHERE {key} = ?", (target, source))
    report = check(app, view_db, ledger)
    assert report.first_bad_position == p1
    assert {(p.position, p.kind) for p in report.problems} >= {(p1, "reordered"), (p2, "reordered")}


def test_every_single_tampering_at_every_position_is_named_exactly(app, view_db, raw, ledger):
    """Alter, delete or swap each stored row in turn (then put it back): verify names it."""
    rows = raw.sql("SELECT {key}, originator_id, originator_version, topic, state FROM {table} ORDER BY {key}")
    key_last = "rowid" if raw.key == "rowid" else "notification_id"
    for i, (position, originator, version, topic, state) in enumerate(rows):
        raw.sql("UPDATE {table} SET state = ? WHERE {key} = ?", (bytes(state) + b" ", position))
        assert check(app, view_db, ledger).first_bad_position == position
        raw.sql("UPDATE {table} SET state = ? WHERE {key} = ?", (state, position))
        raw.sql("DELETE FROM {table} WHERE {key} = ?", (position,))
        assert check(app, view_db, ledger).first_bad_position == position
        raw.sql(f"INSERT INTO {{table}} ({key_last}, originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?, ?)",
                (position, originator, version, topic, state))
        if i + 1 < len(rows):
            other = rows[i + 1]
            raw.sql("UPDATE {table} SET state = ? WHERE {key} = ?", (other[4], position))
            raw.sql("UPDATE {table} SET state = ? WHERE {key} = ?", (state, other[0]))
            report = check(app, view_db, ledger)
            assert (report.first_bad_position, report.problems[0].kind) == (position, "reordered")
            raw.sql("UPDATE {table} SET state = ? WHERE {key} = ?", (state, position))
            raw.sql("UPDATE {table} SET state = ? WHERE {key} = ?", (other[4], other[0]))
    assert check(app, view_db, ledger).intact
