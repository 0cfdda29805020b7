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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import structlog

from projections.db import Tx, ViewDatabase
from services.persistence import LedgerStore, class_of, decode_event

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


class Projection:
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

    def create(self, tx: Tx) -> None:
        """Create the view's tables if missing (``CREATE TABLE IF NOT EXISTS``)."""

    def drop(self, tx: Tx) -> None:
        """Drop the view's tables (used by rebuild)."""

    def handle(self, tx: Tx, batch: Sequence[Envelope]) -> None:
        """Apply a batch of events in stream order, inside the runner's transaction."""
        raise NotImplementedError

    def wants(self, topic: str) -> bool:
        return self.event_types is None or issubclass(class_of(topic), self.event_types)


ProgressCallback = Callable[[int, int], None]  # (position reached, head position)


class ProjectionRunner:
    def __init__(self, store: LedgerStore, db: ViewDatabase, projections: Iterable[Projection], *, batch_size: int = 2000) -> None:
        self.store = store
        self.db = db
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        self._wanted: dict[tuple[str, str], bool] = {}

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

    def _wants(self, projection: Projection, topic: str) -> bool:
        key = (projection.name, topic)
        wanted = self._wanted.get(key)
        if wanted is None:
            wanted = self._wanted[key] = projection.wants(topic)
        return wanted

    def run_once(self, names: Iterable[str] | None = None) -> int:
        """Process at most one batch per projection; returns how many events were applied."""
        selected = [self.projections[n] for n in (names or self.projections)]
        positions = {p.name: self.position(p.name) for p in selected}
        start = min(positions.values(), default=0)
        notifications = self.store.recorder.select_notifications(start=start, limit=self.batch_size, inclusive_of_start=False)
        if not notifications:
            return 0
        decoded: dict[int, Any] = {}
        applied = 0
        for projection in selected:
            after = positions[projection.name]
            batch = []
            for n in notifications:
                if n.id <= after or not self._wants(projection, n.topic):
                    continue
                event = decoded.get(n.id)
                if event is None:
                    event = decoded[n.id] = decode_event(n.topic, n.state)
                batch.append(Envelope(n.id, event, n.topic, n.state))
            last = notifications[-1].id
            if last <= after:
                continue
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


class PositionMoved(RuntimeError):
    """Another runner advanced this projection; this batch was rolled back."""


def _create_indexes(tx: Tx, projection: Projection) -> None:
    for ddl in projection.indexes:
        tx.execute(ddl)


def _now() -> str:
    return datetime.now(UTC).isoformat()
