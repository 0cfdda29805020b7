"""Audit exports: a range of the trail as JSON lines or CSV, reproducible byte for byte.

An export is computed *at a stream position* N: it holds only trail rows at or before N,
and states N in its first line. Asking again later with ``--at-position N`` gives the same
bytes whatever was recorded since (the trail is append-only and the header carries no
clock reading); only tampering with the store or the trail can change them.

Layout (both formats):

* first line: the header, one JSON object ``{"arledger_audit_export": 1, "position": N,
  "chain_head": {"position", "chain_hash"}, "filters": {...}, "chain": "<definition>",
  "columns": [...]}``; ``chain_head`` is the chain hash of the last stream position at or
  before N, the value an auditor anchors. In CSV this line is prefixed with ``# ``
  and followed by the CSV header row;
* one row per event (``EXPORT_COLUMNS``), in stream order, with ``event`` = the canonical
  stored JSON text of the event and the ``prev_chain_hash`` it was chained to. The chain
  hashes come from the trail; every other column is read from the stored event at that
  position (the trail keeps only what its filters need);
* last line: the trailer ``{"arledger_audit_export_end": {"rows": n}}`` (``# `` prefixed
  in CSV), so a truncated file is detected.

Each row verifies on its own (:func:`check_export`): ``sha256(event) == event_sha256`` and
``sha256(prev_chain_hash || event_sha256 || position) == chain_hash``; in an unfiltered
export with internal events, consecutive rows must also link and the last one must equal
the header's ``chain_head``.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, BinaryIO

import msgspec

from projections.audit_store import StoredRows
from projections.audit_trail import CHAIN_DEFINITION, GENESIS, chain_step, describe, export_struct, recorded_text, trail_head, utc_text
from services.persistence import class_of

EXPORT_COLUMNS = (
    "position", "event_id", "type", "public", "originator_id", "originator_version", "customer_id", "invoice_number",
    "document_ref", "actor", "recorded_at", "business_date", "correlation_id", "causation_id", "event_sha256",
    "prev_chain_hash", "chain_hash", "event",
)

_SELECT = (
    "SELECT t.position, t.public, t.chain_hash,"
    " (SELECT p.chain_hash FROM audit_trail p WHERE p.position < t.position ORDER BY p.position DESC LIMIT 1)"
    " FROM audit_trail t"
)


class ExportFilters(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Which rows to export; times are UTC text, ``from_time`` <= recorded_at < ``to_time``."""

    from_time: str | None = None
    to_time: str | None = None
    customer_id: str | None = None
    invoice_number: str | None = None
    actor: str | None = None
    include_internal: bool = False


class ExportError(ValueError):
    """The export cannot be computed as asked (e.g. a position the trail has not reached)."""


def parse_time(text: str) -> str:
    """An ISO date or date-time (naive means UTC) as the trail's fixed-width UTC text."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(f"not an ISO date or date-time: {text!r}") from None
    if len(text) == 10:  # a bare date: midnight UTC
        moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
    return utc_text(moment)


def _where(filters: ExportFilters, position: int) -> tuple[str, list[Any]]:
    clauses, params = ["t.position <= ?"], [position]
    for sql, value in (
        ("t.customer_id = ?", filters.customer_id), ("t.actor = ?", filters.actor),
        ("t.position IN (SELECT i.position FROM audit_trail i WHERE i.invoice_number = ?"
         " UNION ALL SELECT x.position FROM audit_trail_invoices x WHERE x.invoice_number = ?)", filters.invoice_number),
    ):
        if value is not None:
            clauses.append(sql)
            params.extend([value] * sql.count("?"))
    if not filters.include_internal:
        clauses.append("t.public = 1")
    return " AND ".join(clauses), params


def rows(db: Any, stored: StoredRows, filters: ExportFilters, position: int, page: int = 2_000, after: int = 0) -> Iterator[dict[str, Any]]:
    """Export rows in stream order after position ``after``: the trail's chain hashes, and
    every other column read from the stored event itself (its canonical text included).

    A time filter reads only the spans of the time index whose recorded times meet the
    range, and keeps the events recorded in it by their own ``recorded_at`` (an event
    whose stored bytes no longer decode is kept: its row shows the damage)."""
    where, params = _where(filters, position)
    timed = filters.from_time is not None or filters.to_time is not None
    for low, high in time_ranges(db, filters, position) if timed else [(0, position)]:
        after = max(after, low - 1)
        while after < high:
            batch = db.query(f"{_SELECT} WHERE {where} AND t.position > ? AND t.position <= ? ORDER BY t.position LIMIT ?",
                             (*params, after, high, page))
            if not batch:
                break
            found = stored.at(r[0] for r in batch)
            for p, public, chain, prev in batch:
                row = export_row(p, bool(public), bytes(prev) if prev is not None else GENESIS, bytes(chain), found.get(p))
                if not timed or _in_time(row["recorded_at"], filters):
                    yield row
            after = batch[-1][0]


def _in_time(at: str | None, filters: ExportFilters) -> bool:
    if at is None:
        return True
    return (filters.from_time is None or at >= filters.from_time) and (filters.to_time is None or at < filters.to_time)


def time_ranges(db: Any, filters: ExportFilters, position: int) -> list[tuple[int, int]]:
    """Position ranges (inclusive, up to ``position``) of the time-index spans that may
    hold events recorded in the filter's range; consecutive spans are merged."""
    spans = db.query("SELECT first_position, last_position, earliest, latest FROM audit_trail_spans WHERE first_position <= ?"
                     " ORDER BY first_position", (position,))
    out: list[tuple[int, int]] = []
    joined = False
    for first, last, earliest, latest in spans:
        meets = (filters.from_time is None or latest >= filters.from_time) and (filters.to_time is None or earliest < filters.to_time)
        if meets:
            if joined:
                out[-1] = (out[-1][0], min(last, position))
            else:
                out.append((first, min(last, position)))
        joined = meets
    return out


@cache
def _reader(topic: str) -> tuple[type, Any]:
    cls = class_of(topic)
    return cls, msgspec.json.Decoder(export_struct(cls)).decode


def export_row(position: int, public: bool, prev_chain: bytes, chain: bytes, stored: tuple[str, bytes] | None) -> dict[str, Any]:
    """One export row (``EXPORT_COLUMNS``) of the event stored at ``position``. A stored row
    that is missing or no longer decodes still gives a row (its columns null), which
    ``check_export`` and ``arledger audit verify`` then report."""
    row: dict[str, Any] = dict.fromkeys(EXPORT_COLUMNS)
    row.update(position=position, public=public, prev_chain_hash=prev_chain.hex(), chain_hash=chain.hex())
    if stored is None:
        return row
    topic, state = stored
    row["event_sha256"] = hashlib.sha256(state).hexdigest()
    row["event"] = state.decode("utf-8", "replace")
    try:
        cls, decode = _reader(topic)
        event = decode(state)
    except Exception:  # noqa: BLE001 - an edited topic or state: the hashes show it
        return row
    invoice, ref, day, _ = describe(event, cls)
    row.update(
        event_id=event.event_id, type=cls.__name__, originator_id=event.originator_id, originator_version=event.originator_version,
        customer_id=event.customer_id, invoice_number=invoice, document_ref=ref, actor=event.actor,
        recorded_at=recorded_text(event.recorded_at), business_date=day, correlation_id=event.correlation_id,
        causation_id=event.causation_id,
    )
    return row


def header(db: Any, filters: ExportFilters, position: int) -> dict[str, Any]:
    head = trail_head(db, position)
    return {
        "arledger_audit_export": 1, "position": position,
        "chain_head": {"position": head[0], "chain_hash": head[1]} if head else None,
        "filters": msgspec.to_builtins(filters), "chain": CHAIN_DEFINITION, "columns": list(EXPORT_COLUMNS),
    }


class _Recorded(msgspec.Struct, gc=False):
    recorded_at: str


_decode_recorded = msgspec.json.Decoder(_Recorded).decode


def position_known_at(db: Any, stored: StoredRows, known_at: str, trail_position: int, chunk: int = 500) -> int:
    """The stream position of the last event recorded at or before ``known_at`` (UTC text):
    ``--known-at T`` exports exactly what ``--at-position`` that position does.

    That event is in the last span of the time index whose earliest time is at or
    before ``known_at`` (every later span starts after it): its events are read from
    the store, newest first, until one was recorded by then."""
    spans = db.query("SELECT first_position, last_position FROM audit_trail_spans WHERE earliest <= ? AND first_position <= ?"
                     " ORDER BY first_position DESC", (known_at, trail_position))
    for first, last in spans:
        positions = [r[0] for r in db.query("SELECT position FROM audit_trail WHERE position >= ? AND position <= ? ORDER BY position DESC",
                                            (first, min(last, trail_position)))]
        for i in range(0, len(positions), chunk):
            found = stored.at(positions[i : i + chunk])
            for p in positions[i : i + chunk]:
                try:
                    at = recorded_text(_decode_recorded(found[p][1]).recorded_at) if p in found else None
                except (msgspec.DecodeError, ValueError):
                    at = None
                if at is not None and at <= known_at:
                    return int(p)
    return 0


def write_export(db: Any, stored: StoredRows, out: BinaryIO, *, fmt: str, filters: ExportFilters, trail_position: int,
                 at_position: int | None = None) -> dict[str, Any]:
    """Write the export to ``out``; returns its header plus the row count."""
    position = trail_position if at_position is None else at_position
    if position > trail_position:
        raise ExportError(f"the audit trail is at position {trail_position}; it cannot state position {position} yet (run `arledger projections run --once`)")
    if position < 0:
        raise ExportError("--at-position must be >= 0")
    head = header(db, filters, position)
    encode = msgspec.json.encode
    count = 0
    if fmt == "jsonl":
        out.write(encode(head) + b"\n")
        for row in rows(db, stored, filters, position):
            out.write(encode(row) + b"\n")
            count += 1
        out.write(encode({"arledger_audit_export_end": {"rows": count}}) + b"\n")
    elif fmt == "csv":
        out.write(b"# " + encode(head) + b"\n")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        for row in rows(db, stored, filters, position):
            writer.writerow(_csv_value(row[c]) for c in EXPORT_COLUMNS)
            count += 1
            if buffer.tell() > 1 << 20:
                out.write(buffer.getvalue().encode())
                buffer.seek(0)
                buffer.truncate()
        out.write(buffer.getvalue().encode())
        out.write(b"# " + encode({"arledger_audit_export_end": {"rows": count}}) + b"\n")
    else:
        raise ExportError(f"unknown format {fmt!r}: choose jsonl or csv")
    return {**head, "rows": count}


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


# ---- independent checking of an export file ------------------------------------------


def read_export(lines: Iterable[str]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """(header, rows, trailer) of an export in either format."""
    it = iter(lines)
    first = next(it, "")
    if first.startswith("# "):
        head = msgspec.json.decode(first[2:])
        body = list(it)
        trailer = msgspec.json.decode(body.pop()[2:]) if body and body[-1].startswith("# ") else None
        records = [
            {k: (int(v) if k in ("position", "originator_version") else v) for k, v in r.items()}
            for r in csv.DictReader(io.StringIO("".join(body)))
        ]
        return head, records, trailer
    head = msgspec.json.decode(first)
    records, trailer = [], None
    for line in it:
        value = msgspec.json.decode(line)
        if "arledger_audit_export_end" in value:
            trailer = value
        else:
            records.append(value)
    return head, records, trailer


def check_export(lines: Iterable[str]) -> list[str]:
    """Problems found in an export file on its own, without access to the ledger."""
    head, records, trailer = read_export(lines)
    problems = []
    if trailer is None or trailer["arledger_audit_export_end"]["rows"] != len(records):
        problems.append("the trailer is missing or its row count differs: the file is truncated or edited")
    linked = head["filters"] == {"include_internal": True}
    prev_chain = GENESIS.hex()
    for r in records:
        digest = hashlib.sha256((r["event"] or "").encode()).hexdigest()
        if digest != r["event_sha256"]:
            problems.append(f"position {r['position']}: the event text does not hash to event_sha256")
        if chain_step(bytes.fromhex(r["prev_chain_hash"]), bytes.fromhex(r["event_sha256"]), r["position"]).hex() != r["chain_hash"]:
            problems.append(f"position {r['position']}: chain_hash is not sha256(prev_chain_hash || event_sha256 || position)")
        problems.extend(f"position {r['position']}: {name} differs from the event text" for name in _columns_against_event(r))
        if linked and r["prev_chain_hash"] != prev_chain:
            problems.append(f"position {r['position']}: does not link to the row before it (a row is missing or moved)")
        prev_chain = r["chain_hash"]
    if linked and head["chain_head"] and prev_chain != head["chain_head"]["chain_hash"]:
        problems.append("the last row's chain_hash differs from the header's chain_head")
    return problems


_SAME_AS_EVENT = ("event_id", "type", "originator_id", "originator_version", "actor", "correlation_id", "causation_id", "customer_id")


def _columns_against_event(row: dict[str, Any]) -> list[str]:
    """Identity columns of a row that do not say what its event text says."""
    try:
        event = msgspec.json.decode(row["event"] or "")
    except msgspec.DecodeError:
        return ["event"]
    differ = [name for name in _SAME_AS_EVENT if name in event and str(event[name]) != str(row[name])]
    if "recorded_at" in event and parse_time(event["recorded_at"]) != row["recorded_at"]:
        differ.append("recorded_at")
    return differ
