"""The audit trail: every stored event linked into a SHA-256 hash chain.

Every event of the stream is in the trail, internal ones (reference claims, idempotency
records) included, so that removing *any* stored event breaks the chain; exports hide
internal events unless asked for them.

The chain (version 1), exactly::

    event_sha256(p) = SHA-256(canonical bytes of the event at position p)
    chain_hash(p)   = SHA-256(chain_hash(previous position) || event_sha256(p) || p)
    chain_hash before the first event = 32 zero bytes (GENESIS)

where ``||`` concatenates the raw 32-byte digests, ``p`` is the stream position (the
store's notification id) as an unsigned 64-bit big-endian integer, and the canonical
bytes are the stored msgspec JSON of the event exactly as the store holds it
(``Envelope.state``). Digests are exported as lowercase hex.

Because each link covers the previous one, a trail row can only be changed, removed or
moved by rewriting every row after it; ``arledger audit verify`` recomputes the chain
from the store's raw rows, and an auditor who records the head (``HASH@POSITION``,
``arledger audit anchor``) can later prove that nothing up to it was rewritten.

What a trail row keeps (table version 2) is only what the chain and the export filters
need: the position, the raw 32-byte chain hash, and the filter columns (public, customer,
actor, the invoice it touches; rare further invoices of credit-note, write-off and
reversal lines in ``audit_trail_invoices``). Recorded times are kept per *span* of
consecutive positions (``audit_trail_spans``: first and last position, earliest and
latest recorded time): events are recorded in nearly stream order, so a time range maps
to a few spans, whose events the export then filters exactly by their own
``recorded_at``. Everything else an export shows (ids, type, aggregate, document
reference, business date, the event digest) is in the stored event itself, which the
export reads by position anyway: writing it into the view on every event cost most of
the rebuild, for columns only an export reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import msgspec

from domain.catalog import all_event_types
from domain.registry import ReferenceClaimed
from projections.db import Tx
from projections.runner import Envelope, Projection
from services.persistence import class_of

GENESIS = bytes(32)
CHAIN_DEFINITION = "sha256(prev_chain_hash || sha256(event bytes) || position as uint64 big-endian); genesis = 32 zero bytes"

#: One row per stored event. ``invoice_number`` is the invoice the event touches (its own,
#: else the first of its lines'); ``audit_trail_invoices`` holds any further ones.
COLUMNS = ("position", "chain_hash", "public", "customer_id", "actor", "invoice_number")
#: A span grows by whole batches up to this many events (a live runner's small batches
#: are gathered; a rebuild's batches of 10,000 make one span each).
SPAN_EVENTS = 4_096

_ROW = f"({', '.join('?' * len(COLUMNS))})"
_INSERT = f"INSERT INTO audit_trail ({', '.join(COLUMNS)}) VALUES {_ROW}"
#: Rows per INSERT statement: one statement step per 100 rows instead of per row.
_PER_STATEMENT = 100
_INSERT_MANY = f"INSERT INTO audit_trail ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW] * _PER_STATEMENT)}"
_INSERT_INVOICE = "INSERT INTO audit_trail_invoices (position, invoice_number) VALUES (?, ?)"

_BASE_FIELDS = {"originator_id", "originator_version", "event_id", "recorded_at", "actor", "correlation_id", "causation_id", "customer_id", "invoice_number"}


def chain_step(prev: bytes, event_digest: bytes, position: int) -> bytes:
    """One link of the chain: the raw 32-byte digest after the event at ``position``."""
    return hashlib.sha256(prev + event_digest + position.to_bytes(8, "big")).digest()


def event_digest(state: bytes) -> bytes:
    return hashlib.sha256(state).digest()


def utc_text(moment: datetime) -> str:
    """Recorded times as fixed-width UTC text, so that text order is time order."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def recorded_text(text: str) -> str:
    """The stored JSON's ``recorded_at`` as :func:`utc_text`'s fixed width, without parsing:
    msgspec writes UTC as ``...Z`` with a fraction only when non-zero (other offsets take
    the slow path)."""
    if text[-1:] == "Z" and len(text) in (20, 27):
        return (text[:-1] if len(text) == 27 else text[:-1] + ".000000") + "+00:00"
    return utc_text(datetime.fromisoformat(text))


class _Shape(msgspec.Struct, frozen=True):
    """What the trail extracts from one event class (worked out once per class)."""

    type: str
    public: int
    date_fields: tuple[str, ...]
    ref_fields: tuple[str, ...]
    line_fields: tuple[str, ...]


def _is_date(t: Any) -> bool:
    if isinstance(t, msgspec.inspect.DateType):
        return True
    return isinstance(t, msgspec.inspect.UnionType) and any(isinstance(x, msgspec.inspect.DateType) for x in t.types)


def _lines_with_invoice(t: Any) -> bool:
    if isinstance(t, msgspec.inspect.UnionType):
        return any(_lines_with_invoice(x) for x in t.types)
    item = getattr(t, "item_type", None)
    return isinstance(item, msgspec.inspect.StructType) and "invoice_number" in item.cls.__struct_fields__


@cache
def shape_of(cls: type) -> _Shape:
    """Business date = the first date field of the event (issue_date, value_date,
    disputed_on, effective_date...); document ref = the first ``*_id``/``*_number`` field
    other than the common ones; invoice links = ``invoice_number`` plus every line of a
    tuple of lines that name an invoice (credit-note, write-off and reversal lines)."""
    fields = msgspec.inspect.type_info(cls).fields  # type: ignore[union-attr]
    return _Shape(
        type=cls.__name__,
        public=int(bool(getattr(cls, "public", True))),
        date_fields=tuple(f.name for f in fields if _is_date(f.type)),
        ref_fields=tuple(f.name for f in fields if f.name not in _BASE_FIELDS and f.name.endswith(("_id", "_number"))),
        line_fields=tuple(f.name for f in fields if _lines_with_invoice(f.type)),
    )


# ---- light decoding --------------------------------------------------------------------------
#
# Decoding a whole event (UUIDs, datetimes, amounts, schedules) costs several times what
# the trail does with it. The trail and its export decode into generated Structs holding
# only the fields they read, typed ``Any``: ids and dates stay the JSON text they are
# stored as (the same text ``str(uuid)`` and ``date.isoformat()`` give).


def _subset(cls: type, names: set[str], suffix: str, *, always: tuple[str, ...] = ()) -> type:
    """A Struct decoding only ``names`` of ``cls`` (defaults kept); ``always`` fields
    default to ``None`` when the class has none, so every subset answers them."""
    fields: list[Any] = []
    present = set()
    for f in msgspec.structs.fields(cls):
        if f.name not in names:
            continue
        present.add(f.name)
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, Any, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, Any, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, Any))
    fields.extend((name, Any, None) for name in always if name not in present)
    return msgspec.defstruct(f"{cls.__name__}{suffix}", fields, kw_only=True, frozen=True, gc=False)


def _claim_fields(cls: type) -> set[str]:
    return {"kind", "reference"} if issubclass(cls, ReferenceClaimed) else set()


@cache
def trail_struct(cls: type) -> type:
    """What ``handle`` reads of an event of class ``cls``."""
    names = {"actor", "recorded_at", "customer_id", "invoice_number", *shape_of(cls).line_fields, *_claim_fields(cls)}
    return _subset(cls, names, "Trail", always=("customer_id", "invoice_number"))


@cache
def export_struct(cls: type) -> type:
    """What an export row reads of an event of class ``cls``."""
    shape = shape_of(cls)
    names = {*_BASE_FIELDS, *shape.date_fields, *shape.ref_fields, *shape.line_fields, *_claim_fields(cls)}
    return _subset(cls, names, "Export", always=("customer_id", "invoice_number"))


class _Kind(msgspec.Struct, frozen=True):
    """Per stored topic: how the trail reads its events."""

    cls: type
    light: type
    decode: Any
    public: int
    plain: bool  # no lines and not a claim: the invoice is ``invoice_number`` alone
    claim: bool  # a reference claim: the invoice is the reference claimed, if of an invoice


@cache
def kind_of(topic: str) -> _Kind:
    cls = class_of(topic)
    light = trail_struct(cls)
    claim = issubclass(cls, ReferenceClaimed) and not shape_of(cls).line_fields
    plain = not shape_of(cls).line_fields and not claim
    return _Kind(cls, light, msgspec.json.Decoder(light).decode, shape_of(cls).public, plain, claim)


def _line_invoice(line: Any) -> Any:
    return line.get("invoice_number") if isinstance(line, dict) else getattr(line, "invoice_number", None)


def invoices_of(event: Any, cls: type) -> tuple[str | None, set[str]]:
    """(the event's own invoice, every invoice it touches): ``invoice_number`` (a claimed
    invoice number for a reference claim) plus those of its credit-note, write-off or
    reversal lines. Works on full events and on the light Structs."""
    invoice = getattr(event, "invoice_number", None)
    if issubclass(cls, ReferenceClaimed) and event.kind == "invoice":
        invoice = event.reference
    linked = {invoice} if invoice else set()
    for name in shape_of(cls).line_fields:
        linked.update(n for n in map(_line_invoice, getattr(event, name) or ()) if n is not None)
    return invoice, linked


def split_links(invoice: str | None, linked: set[str]) -> tuple[str | None, list[str]]:
    """The row's ``invoice_number`` (own invoice, else the first line's) and the others."""
    first = invoice if invoice else (min(linked) if linked else None)
    return first, sorted(linked - {first})


def _first(event: Any, names: tuple[str, ...]) -> tuple[str, Any] | None:
    for name in names:
        value = getattr(event, name)
        if value is not None:
            return name, value
    return None


def describe(event: Any, cls: type | None = None) -> tuple[str | None, str | None, str | None, set[str]]:
    """(invoice_number, document_ref, business_date, invoices linked) of one event, a full
    one or an :func:`export_struct` of class ``cls``."""
    cls = cls or type(event)
    shape = shape_of(cls)
    invoice, linked = invoices_of(event, cls)
    if issubclass(cls, ReferenceClaimed):  # a document number claimed ledger-wide
        ref: str | None = f"{event.kind}:{event.reference}"
    else:
        found = _first(event, shape.ref_fields)
        ref = f"{found[0].removesuffix('_id').removesuffix('_number')}:{found[1]}" if found else None
    day = _first(event, shape.date_fields)
    business = day[1] if day and isinstance(day[1], str) else day[1].isoformat() if day and isinstance(day[1], date) else None
    return invoice, ref, business, linked


def row_fields(kind: _Kind, event: Any) -> tuple[int, Any, Any, str | None, list[str], str]:
    """(public, customer_id, actor, invoice_number, further invoices, recorded_at) of a
    light event: what the trail row says besides its position and hash, the invoices
    in ``audit_trail_invoices`` and the time its span covers."""
    if kind.plain:
        invoice, extra = event.invoice_number, []
    elif kind.claim:
        invoice, extra = event.reference if event.kind == "invoice" else event.invoice_number, []
    else:
        invoice, extra = split_links(*invoices_of(event, kind.cls))
    return kind.public, event.customer_id, event.actor, invoice, extra, recorded_text(event.recorded_at)


class AuditTrail(Projection):
    name = "audit_trail"
    version = 2  # 2: slim rows (hash and filter columns), the rest read from the store
    event_types = None  # every stored event: the chain must cover all of them
    decode_as = {cls: trail_struct(cls) for cls in all_event_types()}
    indexes = (
        "CREATE INDEX IF NOT EXISTS audit_trail_customer ON audit_trail (customer_id) WHERE customer_id IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS audit_trail_invoice ON audit_trail (invoice_number) WHERE invoice_number IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS audit_trail_invoices_number ON audit_trail_invoices (invoice_number, position)",
    )

    def create(self, tx: Tx) -> None:
        # SQLite: INTEGER PRIMARY KEY is the rowid itself (no second index to maintain).
        key, blob = ("INTEGER PRIMARY KEY", "BLOB") if tx.db.dialect == "sqlite" else ("BIGINT PRIMARY KEY", "BYTEA")
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS audit_trail (position {key}, chain_hash {blob} NOT NULL, public INTEGER NOT NULL,"
            " customer_id TEXT, actor TEXT NOT NULL, invoice_number TEXT)"
        )
        # Recorded times per span of consecutive trail rows (the ``--from-time``,
        # ``--to-time`` and ``--known-at`` filters start from it).
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS audit_trail_spans (first_position {key}, last_position BIGINT NOT NULL,"
            " events BIGINT NOT NULL, earliest TEXT NOT NULL, latest TEXT NOT NULL)"
        )
        # Further invoices of events touching several (lines of credit notes, write-offs,
        # reversals): the ``--invoice`` export filter reads it by invoice, ``verify`` walks
        # it by position.
        tx.execute(
            "CREATE TABLE IF NOT EXISTS audit_trail_invoices (position BIGINT NOT NULL, invoice_number TEXT NOT NULL,"
            " PRIMARY KEY (position, invoice_number))"
        )

    def drop(self, tx: Tx) -> None:
        tx.execute("DROP TABLE IF EXISTS audit_trail_spans")
        tx.execute("DROP TABLE IF EXISTS audit_trail_invoices")
        tx.execute("DROP TABLE IF EXISTS audit_trail")

    def handle(self, tx: Tx, batch: Sequence[Envelope]) -> None:
        """Chain the batch onto the last row and write one row per event.

        This is the whole cost of the trail in a rebuild, so it is written for speed:
        light events (``decode_as``), one flat parameter list inserted 100 rows per
        statement, hashes bound as ``bytearray`` (which sqlite3 binds without looking
        for an adapter, unlike ``bytes``), recorded times gathered as a set of the JSON
        texts and converted once each (the events of one command share theirs)."""
        last = tx.execute("SELECT chain_hash FROM audit_trail ORDER BY position DESC LIMIT 1").fetchone()
        prev = bytes(last[0]) if last else GENESIS
        sha256 = hashlib.sha256
        kinds: dict[str, _Kind] = {}
        times: set[str] = set()
        seen = times.add
        flat: list[Any] = []
        links: list[tuple[int, str]] = []
        for env in batch:
            position, topic, event = env.position, env.topic, env.event
            kind = kinds.get(topic)
            if kind is None:
                kind = kinds[topic] = kind_of(topic)
            prev = sha256(prev + sha256(env.state).digest() + position.to_bytes(8, "big")).digest()
            if type(event) is not kind.light:  # a runner that did not honour decode_as
                event = kind.decode(env.state)
            seen(event.recorded_at)
            if kind.plain:
                invoice = event.invoice_number
            elif kind.claim:
                invoice = event.reference if event.kind == "invoice" else event.invoice_number
            else:
                invoice, extra = split_links(*invoices_of(event, kind.cls))
                links.extend((position, number) for number in extra)
            flat += (position, bytearray(prev), kind.public, event.customer_id, event.actor, invoice)
        width = len(COLUMNS)
        step = width * _PER_STATEMENT
        whole = len(flat) - len(flat) % step
        tx.executemany(_INSERT_MANY, [flat[i : i + step] for i in range(0, whole, step)])
        tx.executemany(_INSERT, [flat[i : i + width] for i in range(whole, len(flat), width)])
        tx.executemany(_INSERT_INVOICE, links)
        if batch:
            recorded = [recorded_text(t) for t in times]
            extend_spans(tx, batch[0].position, batch[-1].position, len(batch), min(recorded), max(recorded))


def extend_spans(tx: Tx, first: int, last: int, events: int, earliest: str, latest: str) -> None:
    """Cover positions ``first``..``last`` (recorded between ``earliest`` and ``latest``):
    widen the last span while it holds fewer than ``SPAN_EVENTS`` events, else open one."""
    span = tx.execute("SELECT first_position, events, earliest, latest FROM audit_trail_spans ORDER BY first_position DESC LIMIT 1").fetchone()
    if span is not None and span[1] + events <= SPAN_EVENTS:
        tx.execute(
            "UPDATE audit_trail_spans SET last_position = ?, events = ?, earliest = ?, latest = ? WHERE first_position = ?",
            (last, span[1] + events, min(span[2], earliest), max(span[3], latest), span[0]),
        )
    else:
        tx.execute("INSERT INTO audit_trail_spans (first_position, last_position, events, earliest, latest) VALUES (?, ?, ?, ?, ?)",
                   (first, last, events, earliest, latest))


def trail_row(position: int, topic: str, state: bytes, prev: bytes) -> tuple[tuple[Any, ...], list[str], str]:
    """The trail row (``COLUMNS`` order) of one stored event chained after ``prev``, its
    further invoices, and its recorded time: exactly what ``handle`` writes."""
    kind = kind_of(topic)
    chain = chain_step(prev, event_digest(state), position)
    public, customer, actor, invoice, extra, at = row_fields(kind, kind.decode(state))
    return (position, chain, public, customer, actor, invoice), extra, at


def trail_head(db: Any, at_position: int | None = None) -> tuple[int, str] | None:
    """(position, chain_hash as hex) of the last trail row, or of the last one at or
    before ``at_position``; ``None`` when the trail is empty there."""
    if at_position is None:
        rows = db.query("SELECT position, chain_hash FROM audit_trail ORDER BY position DESC LIMIT 1")
    else:
        rows = db.query("SELECT position, chain_hash FROM audit_trail WHERE position <= ? ORDER BY position DESC LIMIT 1", (at_position,))
    return (int(rows[0][0]), bytes(rows[0][1]).hex()) if rows else None
