"""The projection runner: exactly-once read models from the global ordered stream.

Each projection owns its tables and a row in ``projection_positions``. The runner reads
the stream after the lowest position, and for each projection writes the view rows of a
batch **and** its new position in one transaction, with a compare-and-set on the old
position. So:

* a crash or kill at any point rolls the batch back and the next run resumes from the
  last committed position: no event lost, none counted twice;
* two runners of the same projection cannot both apply a batch (the second one's
  compare-and-set fails and it rolls back).

Positions are notification ids of the store. On PostgreSQL they have permanent gaps
(NOTES.md), so the runner always reads "greater than the last position".

A projection sees :class:`Envelope` objects: the stream position, the decoded event, and
the stored bytes (the audit trail hashes those). It declares the event types it cares
about; others are skipped without being decoded, but still advance its position.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import structlog

from projections.db import Tx, ViewDatabase
from services.persistence import LedgerStore, class_of, decoder_for, topic_of

log = structlog.get_logger("arledger.projections")

POSITIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS projection_positions ("
    " name TEXT PRIMARY KEY, position BIGINT NOT NULL, version INTEGER NOT NULL, updated_at TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event of the stream as a projection receives it."""

    position: int
    event: Any
    topic: str
    state: bytes


class Projection(ABC):
    """Base class of read models. Subclasses set ``name`` and implement the hooks."""

    name: ClassVar[str] = ""
    #: Bump when the view's tables or meaning change: the runner then rebuilds it.
    version: ClassVar[int] = 1
    #: Event classes this projection reads; ``None`` means every event.
    event_types: ClassVar[tuple[type, ...] | None] = None
    #: ``CREATE INDEX IF NOT EXISTS`` statements of secondary indexes. The runner creates
    #: them after ``create`` on set-up, and after the replay on rebuild (bulk-building an
    #: index once is far cheaper than maintaining it row by row).
    indexes: ClassVar[tuple[str, ...]] = ()
    #: Optional lighter msgspec Structs to decode some event classes into (a subset of
    #: their fields, same names): decoding only what a view uses is much cheaper.
    decode_as: ClassVar[dict[type, type]] = {}

    def create(self, tx: Tx) -> None:
        """Create the view's tables if missing (``CREATE TABLE IF NOT EXISTS``)."""

    def drop(self, tx: Tx) -> None:
        """Drop the view's tables (used by rebuild)."""

    @abstractmethod
    def handle(self, tx: Tx, batch: Sequence[Envelope]) -> None:
        """Apply a batch of events in stream order, inside the runner's transaction.
        Every projection implements it; a class without it cannot be instantiated."""

    def wants(self, topic: str) -> bool:
        return self.event_types is None or issubclass(class_of(topic), self.event_types)


ProgressCallback = Callable[[int, int], None]  # (position reached, head position)


class ProjectionRunner:
    def __init__(self, store: LedgerStore, db: ViewDatabase, projections: Iterable[Projection], *, batch_size: int = 10_000) -> None:
        self.store = store
        self.db = db
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        self._targets: dict[tuple[str, str], type | None] = {}
        self._topic_filters: dict[tuple[str, ...], tuple[str, ...]] = {}

    # ---- set-up and status -------------------------------------------------------------

    def setup(self) -> None:
        """Create the positions table and every view; rebuild views whose version changed."""
        with self.db.transaction() as tx:
            tx.execute(POSITIONS_DDL)
        for projection in self.projections.values():
            row = self.db.query("SELECT version FROM projection_positions WHERE name = ?", (projection.name,))
            with self.db.transaction() as tx:
                if row and row[0][0] != projection.version:
                    log.warning("projection_version_changed", projection=projection.name, old=row[0][0], new=projection.version)
                    projection.drop(tx)
                    tx.execute("DELETE FROM projection_positions WHERE name = ?", (projection.name,))
                    row = []
                projection.create(tx)
                _create_indexes(tx, projection)
                if not row:
                    tx.execute(
                        "INSERT INTO projection_positions (name, position, version, updated_at) VALUES (?, 0, ?, ?) ON CONFLICT (name) DO NOTHING",
                        (projection.name, projection.version, _now()),
                    )

    def position(self, name: str) -> int:
        rows = self.db.query("SELECT position FROM projection_positions WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def status(self) -> list[dict[str, Any]]:
        head = self.store.max_position()
        out = []
        for name in self.projections:
            rows = self.db.query("SELECT position, updated_at FROM projection_positions WHERE name = ?", (name,))
            position, updated = (int(rows[0][0]), rows[0][1]) if rows else (0, None)
            out.append({"name": name, "position": position, "head": head, "lag": max(head - position, 0), "updated_at": updated})
        return out

    # ---- processing ------------------------------------------------------------------

    def _target(self, projection: Projection, topic: str) -> type | None:
        """The class to decode ``topic`` into for ``projection``, or ``None`` to skip it."""
        key = (projection.name, topic)
        if key not in self._targets:
            cls = class_of(topic) if projection.wants(topic) else None
            self._targets[key] = projection.decode_as.get(cls, cls) if cls is not None else None
        return self._targets[key]

    def _wants(self, projection: Projection, topic: str) -> bool:
        return self._target(projection, topic) is not None

    def _topics(self, selected: Sequence[Projection]) -> tuple[str, ...] | None:
        """Stored topics any of ``selected`` reads, or ``None`` for "every topic".

        Event classes come from the catalogue (``domain.catalog``), which lists every
        module defining events; rows of other topics are never even fetched."""
        if any(p.event_types is None for p in selected):
            return None
        key = tuple(sorted(p.name for p in selected))
        topics = self._topic_filters.get(key)
        if topics is None:
            from domain.catalog import all_event_types

            wanted = tuple(t for p in selected for t in p.event_types or ())
            topics = self._topic_filters[key] = tuple(sorted(topic_of(cls) for cls in all_event_types() if issubclass(cls, wanted)))
        return topics

    def _read(self, after: int, topics: tuple[str, ...] | None) -> tuple[list[tuple[int, str, bytes]], int]:
        """Rows ``(position, topic, state)`` after ``after`` with raw SQL (no per-row
        library objects), and the position the batch covers up to.

        The head is read first and rows are taken only up to it: on PostgreSQL the
        library inserts under a table lock, so every id at or below a committed head
        is itself committed (ids have gaps, never late arrivals). When fewer rows than
        the batch size match, the batch covers the stream up to that head."""
        head = self.store.max_position()
        if head <= after:
            return [], after
        if self.db.url != self.store.settings.resolved_database_url:  # views kept apart from the store: the recorder reads
            found = self.store.recorder.select_notifications(after, self.batch_size, stop=head, topics=topics or (),
                                                             inclusive_of_start=False)
            last = found[-1].id if len(found) >= self.batch_size else head
            return [(n.id, n.topic, n.state) for n in found], last
        table, column = self.store.recorder.events_table_name, "rowid" if self.db.dialect == "sqlite" else "notification_id"
        sql = f"SELECT {column}, topic, state FROM {table} WHERE {column} > ? AND {column} <= ?"
        params: list[Any] = [after, head]
        if topics is not None:
            sql += f" AND topic IN ({', '.join('?' * len(topics))})"
            params.extend(topics)
        sql += f" ORDER BY {column} LIMIT {int(self.batch_size)}"
        rows = self.db.query(sql, params)
        last = rows[-1][0] if len(rows) >= self.batch_size else head
        return [(int(r[0]), r[1], bytes(r[2])) for r in rows], last

    def run_once(self, names: Iterable[str] | None = None) -> int:
        """Process at most one batch per projection; returns how many events were applied."""
        selected = [self.projections[n] for n in (names or self.projections)]
        positions = {p.name: self.position(p.name) for p in selected}
        start = min(positions.values(), default=0)
        rows, last = self._read(start, self._topics(selected))
        if last <= start:
            return 0
        shared = len(selected) > 1  # decode once per event for every projection that reads it
        decoded: dict[tuple[int, Any], Any] = {}  # (position, decode method) -> event
        applied = 0
        for projection in selected:
            after = positions[projection.name]
            if last <= after:
                continue
            batch = []
            append = batch.append
            decoders: dict[str, Any] = {}  # topic -> bound decode method, or None to skip
            for position, topic, state in rows:
                if position <= after:
                    continue
                decode = decoders.get(topic, _UNSEEN)
                if decode is _UNSEEN:
                    target = self._target(projection, topic)
                    decode = decoders[topic] = None if target is None else decoder_for(target).decode
                if decode is None:
                    continue
                if shared:
                    key = (position, decode)
                    event = decoded.get(key)
                    if event is None:
                        event = decoded[key] = decode(state)
                else:
                    event = decode(state)
                append(Envelope(position, event, topic, state))
            self._commit(projection, after, last, batch)
            applied += len(batch)
        return applied

    def _commit(self, projection: Projection, after: int, last: int, batch: list[Envelope]) -> None:
        with self.db.transaction() as tx:
            if batch:
                projection.handle(tx, batch)
            tx.execute(
                "UPDATE projection_positions SET position = ?, updated_at = ? WHERE name = ? AND position = ?",
                (last, _now(), projection.name, after),
            )
            if tx.rowcount != 1:
                raise PositionMoved(f"{projection.name}: position moved from {after} under us; another runner is active")
        log.debug("projection_batch_committed", projection=projection.name, position=last, events=len(batch))

    def catch_up(self, names: Iterable[str] | None = None, progress: ProgressCallback | None = None) -> int:
        """Run until every selected projection has reached the head of the stream."""
        names = list(names or self.projections)
        total = 0
        while True:
            applied = self.run_once(names)
            head = self.store.max_position()
            reached = min(self.position(n) for n in names) if names else head
            if progress:
                progress(reached, head)
            total += applied
            if reached >= head:
                return total

    def rebuild(self, name: str, progress: ProgressCallback | None = None) -> int:
        """Drop a view and replay the whole stream into it."""
        projection = self.projections[name]
        with self.db.transaction() as tx:
            projection.drop(tx)
            projection.create(tx)
            tx.execute("UPDATE projection_positions SET position = 0, version = ?, updated_at = ? WHERE name = ?", (projection.version, _now(), name))
        applied = self.catch_up([name], progress)
        with self.db.transaction() as tx:
            _create_indexes(tx, projection)
        return applied

    def run_forever(self, stop: threading.Event, poll_interval: float = 0.2) -> None:
        """Follow the stream until ``stop`` is set (the ``projections run`` worker)."""
        log.info("projections_started", projections=list(self.projections))
        while not stop.is_set():
            try:
                applied = self.run_once()
            except PositionMoved as exc:
                log.warning("projection_position_moved", error=str(exc))
                applied = 0
            if applied == 0 and self._caught_up():
                stop.wait(poll_interval)
        log.info("projections_stopped")

    def _caught_up(self) -> bool:
        head = self.store.max_position()
        return all(self.position(n) >= head for n in self.projections)


_UNSEEN = object()


class PositionMoved(RuntimeError):
    """Another runner advanced this projection; this batch was rolled back."""


def _create_indexes(tx: Tx, projection: Projection) -> None:
    for ddl in projection.indexes:
        tx.execute(ddl)


def _now() -> str:
    return datetime.now(UTC).isoformat()
