"""The audit trail: one row per stored event, linked into a SHA-256 hash chain.

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
(``Envelope.state``). Digests are kept and exported as lowercase hex.

Because each link covers the previous one, a trail row can only be changed, removed or
moved by rewriting every row after it; ``arledger audit verify`` recomputes the chain
from the store's raw rows, and an auditor who records the head (``HASH@POSITION``,
``arledger audit anchor``) can later prove that nothing up to it was rewritten.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import msgspec

from domain.registry import ReferenceClaimed
from projections.db import Tx
from projections.runner import Envelope, Projection

GENESIS = bytes(32)
CHAIN_DEFINITION = "sha256(prev_chain_hash || sha256(event bytes) || position as uint64 big-endian); genesis = 32 zero bytes"

COLUMNS = (
    "position", "event_id", "type", "topic", "public", "originator_id", "originator_version", "customer_id",
    "invoice_number", "document_ref", "actor", "recorded_at", "business_date", "correlation_id", "causation_id",
    "event_sha256", "chain_hash",
)

_INSERT = f"INSERT INTO audit_trail ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
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


def _first(event: Any, names: tuple[str, ...]) -> tuple[str, Any] | None:
    for name in names:
        value = getattr(event, name)
        if value is not None:
            return name, value
    return None


def describe(event: Any) -> tuple[str | None, str | None, str | None, set[str]]:
    """(invoice_number, document_ref, business_date, invoices linked) of one event."""
    shape = shape_of(type(event))
    invoice = getattr(event, "invoice_number", None)
    if isinstance(event, ReferenceClaimed):  # a document number claimed ledger-wide
        ref: str | None = f"{event.kind}:{event.reference}"
        if event.kind == "invoice":
            invoice = event.reference
    else:
        found = _first(event, shape.ref_fields)
        ref = f"{found[0].removesuffix('_id').removesuffix('_number')}:{found[1]}" if found else None
    day = _first(event, shape.date_fields)
    linked = {invoice} if invoice else set()
    for name in shape.line_fields:
        linked.update(line.invoice_number for line in getattr(event, name) or ())
    return invoice, ref, (day[1].isoformat() if day and isinstance(day[1], date) else None), linked


class AuditTrail(Projection):
    name = "audit_trail"
    version = 1
    event_types = None  # every stored event: the chain must cover all of them

    def create(self, tx: Tx) -> None:
        # SQLite: INTEGER PRIMARY KEY is the rowid itself (no second index to maintain).
        key = "INTEGER PRIMARY KEY" if tx.db.dialect == "sqlite" else "BIGINT PRIMARY KEY"
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS audit_trail (position {key}, event_id TEXT NOT NULL, type TEXT NOT NULL,"
            " topic TEXT NOT NULL, public INTEGER NOT NULL, originator_id TEXT NOT NULL, originator_version BIGINT NOT NULL,"
            " customer_id TEXT, invoice_number TEXT, document_ref TEXT, actor TEXT NOT NULL, recorded_at TEXT NOT NULL,"
            " business_date TEXT, correlation_id TEXT NOT NULL, causation_id TEXT NOT NULL, event_sha256 TEXT NOT NULL,"
            " chain_hash TEXT NOT NULL)"
        )
        for column in ("recorded_at", "customer_id", "actor"):
            tx.execute(f"CREATE INDEX IF NOT EXISTS audit_trail_{column} ON audit_trail ({column})")
        # Every invoice an event touches (its own and those of its lines): the ``--invoice``
        # export filter reads it by invoice, ``verify`` walks it by position.
        tx.execute(
            "CREATE TABLE IF NOT EXISTS audit_trail_invoices (position BIGINT NOT NULL, invoice_number TEXT NOT NULL,"
            " PRIMARY KEY (position, invoice_number))"
        )
        tx.execute("CREATE INDEX IF NOT EXISTS audit_trail_invoices_number ON audit_trail_invoices (invoice_number, position)")

    def drop(self, tx: Tx) -> None:
        tx.execute("DROP TABLE IF EXISTS audit_trail_invoices")
        tx.execute("DROP TABLE IF EXISTS audit_trail")

    def handle(self, tx: Tx, batch: Sequence[Envelope]) -> None:
        last = tx.execute("SELECT chain_hash FROM audit_trail ORDER BY position DESC LIMIT 1").fetchone()
        prev = bytes.fromhex(last[0]) if last else GENESIS
        rows: list[tuple[Any, ...]] = []
        links: list[tuple[int, str]] = []
        for env in batch:
            row, linked, prev = trail_row(env.position, env.topic, env.state, env.event, prev)
            rows.append(row)
            links.extend((env.position, number) for number in linked)
        tx.executemany(_INSERT, rows)
        tx.executemany(_INSERT_INVOICE, links)


class _Ids(msgspec.Struct):
    """The identity fields exactly as the canonical JSON spells them (no UUID round trip)."""

    event_id: str
    originator_id: str
    correlation_id: str
    causation_id: str
    recorded_at: str


_decode_ids = msgspec.json.Decoder(_Ids).decode


def _recorded_text(text: str) -> str:
    """msgspec writes UTC as ``...Z`` with a fraction only when non-zero: widen it to
    :func:`utc_text`'s fixed width without parsing (other offsets take the slow path)."""
    if text[-1:] == "Z" and len(text) in (20, 27):
        return (text[:-1] if len(text) == 27 else text[:-1] + ".000000") + "+00:00"
    return utc_text(datetime.fromisoformat(text))


def trail_row(position: int, topic: str, state: bytes, event: Any, prev: bytes) -> tuple[tuple[Any, ...], set[str], bytes]:
    """The trail row (``COLUMNS`` order) of one stored event chained after ``prev``, the
    invoices it touches, and its raw chain hash. ``verify`` recomputes rows with it too."""
    digest = hashlib.sha256(state).digest()
    chain = hashlib.sha256(prev + digest + position.to_bytes(8, "big")).digest()
    ids = _decode_ids(state)
    invoice, ref, day, linked = describe(event)
    shape = shape_of(type(event))
    row = (
        position, ids.event_id, shape.type, topic, shape.public, ids.originator_id, event.originator_version,
        getattr(event, "customer_id", None), invoice, ref, event.actor, _recorded_text(ids.recorded_at), day,
        ids.correlation_id, ids.causation_id, digest.hex(), chain.hex(),
    )
    return row, linked, chain


def trail_head(db: Any, at_position: int | None = None) -> tuple[int, str] | None:
    """(position, chain_hash) of the last trail row, or of the last one at or before
    ``at_position``; ``None`` when the trail is empty there."""
    if at_position is None:
        rows = db.query("SELECT position, chain_hash FROM audit_trail ORDER BY position DESC LIMIT 1")
    else:
        rows = db.query("SELECT position, chain_hash FROM audit_trail WHERE position <= ? ORDER BY position DESC LIMIT 1", (at_position,))
    return (int(rows[0][0]), rows[0][1]) if rows else None
