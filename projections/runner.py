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

import os
import shutil
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import structlog

from projections.db import Tx, ViewDatabase, sqlite_path
from projections.rebuild import GroupJob, RebuildReport, peak_rss_mb, plan_groups, rebuild_sqlite, scratch_directory
from services.persistence import LedgerStore, class_of, decoder_for, topic_of

log = structlog.get_logger("arledger.projections")

POSITIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS projection_positions ("
    " name TEXT PRIMARY KEY, position BIGINT NOT NULL, version INTEGER NOT NULL, updated_at TEXT NOT NULL)"
)


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """One event of the stream as a projection receives it (a msgspec Struct: built once
    per event on a rebuild, it costs a sixth of a frozen dataclass)."""

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
    #: Relative cost of rebuilding this view from the whole stream: the parallel rebuild
    #: (projections/rebuild.py) balances its worker processes with it.
    rebuild_weight: ClassVar[float] = 1.0

    def create(self, tx: Tx) -> None:
        """Create the view's tables if missing (``CREATE TABLE IF NOT EXISTS``)."""

    def drop(self, tx: Tx) -> None:
        """Drop the view's tables (used by rebuild)."""

    @abstractmethod
    def handle(self, tx: Tx, batch: Sequence[Envelope]) -> None:
        """Apply a batch of events in stream order, inside the runner's transaction.
        Every projection implements it; a class without it cannot be instantiated."""

    def begin_rebuild(self, tx: Tx) -> None:
        """A rebuild from zero into a fresh scratch database starts (projections/rebuild.py):
        every ``handle`` call on ``tx.db`` until :meth:`finish_rebuild` belongs to one
        transaction that nobody reads before it is swapped in whole, so a projection may
        keep running totals in memory instead of upserting them batch by batch."""

    def finish_rebuild(self, tx: Tx) -> None:
        """Write what was kept in memory since :meth:`begin_rebuild` (after the last batch)."""

    def wants(self, topic: str) -> bool:
        return self.event_types is None or issubclass(class_of(topic), self.event_types)


ProgressCallback = Callable[[int, int], None]  # (position reached, head position)

#: Page cache of each rebuild worker's scratch database (MB): the b-trees being appended
#: to stay in memory; bigger buys little and counts against the rebuild's peak memory.
REBUILD_CACHE_MB = 16


def default_workers() -> int:
    """Rebuild worker processes: one per core (each builds a share of the views)."""
    return max(1, os.cpu_count() or 1)


class ProjectionRunner:
    def __init__(self, store: LedgerStore, db: ViewDatabase, projections: Iterable[Projection], *, batch_size: int = 10_000) -> None:
        self.store = store
        self.db = db
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        self._targets: dict[tuple[str, str], type | None] = {}
        self._topic_filters: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._decoders: dict[str, Decoders] = {}
        self._until: int | None = None  # a rebuild in place stops at the head it started from

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
            self._targets[key] = decode_target(projection, topic)
        return self._targets[key]

    def _wants(self, projection: Projection, topic: str) -> bool:
        return self._target(projection, topic) is not None

    def decoders(self, projection: Projection) -> Decoders:
        """topic -> bound decode method for ``projection`` (``None``: skip the topic),
        filled lazily as topics show up."""
        found = self._decoders.get(projection.name)
        if found is None:
            found = self._decoders[projection.name] = Decoders(lambda topic: self._target(projection, topic))
        return found

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
        the batch size match, the batch covers the stream up to that head. A rebuild
        in place caps the head at the one it started from (``_until``)."""
        head = self.store.max_position()
        if self._until is not None:
            head = min(head, self._until)
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
        decoded: dict[tuple[int, Any], Any] | None = {} if len(selected) > 1 else None  # decode once for all
        applied = 0
        for projection in selected:
            after = positions[projection.name]
            if last <= after:
                continue
            batch = envelopes(rows, after, self.decoders(projection), decoded)
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
            if self._until is not None:
                head = min(head, self._until)
            reached = min(self.position(n) for n in names) if names else head
            if progress:
                progress(reached, head)
            total += applied
            if reached >= head:
                return total

    def rebuild(self, name: str, progress: ProgressCallback | None = None) -> int:
        """Drop a view and replay the whole stream into it; returns the events applied."""
        return self.rebuild_all([name], progress).applied[name]

    def rebuild_all(self, names: Iterable[str] | None = None, progress: ProgressCallback | None = None, *,
                    workers: int | None = None) -> RebuildReport:
        """Rebuild the named views (default: all) from position zero up to the head read
        at the start, and record exactly that head.

        When the store and the views are SQLite files, the views are built in parallel
        worker processes and swapped in with one transaction (projections/rebuild.py):
        a crash leaves either the old views or the new ones. Otherwise (PostgreSQL) each
        view is dropped and replayed in place, batch by batch, like a live worker."""
        names = list(names or self.projections)
        started = time.perf_counter()
        store_path, view_path = self._sqlite_store_path(), sqlite_path(self.db.url)
        if store_path is None or view_path is None:
            return self._rebuild_in_place(names, progress, started)
        selected = [self.projections[n] for n in names]
        with self.db.transaction() as tx:  # the swap records the positions here
            tx.execute(POSITIONS_DDL)
        head = self.store.max_position()
        directory = scratch_directory(view_path)
        try:
            groups = plan_groups(selected, workers or default_workers())
            jobs = [
                GroupJob(projections=tuple(group), topics=self._topics(group), store_path=store_path,
                         events_table=self.store.recorder.events_table_name, head=head,
                         scratch_path=str(directory / f"group-{i}.sqlite"), batch_size=self.batch_size,
                         parent_pid=os.getpid(), cache_mb=REBUILD_CACHE_MB)
                for i, group in enumerate(groups)
            ]
            report = rebuild_sqlite(self.db, jobs, versions={p.name: p.version for p in selected}, progress=progress,
                                    started=started)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        log.info("projections_rebuilt", projections=names, head=head, seconds=round(report.seconds, 3), workers=report.workers)
        return report

    def _sqlite_store_path(self) -> str | None:
        """The store's SQLite file, when the rebuild workers can read it themselves."""
        pool = getattr(getattr(self.store.recorder, "datastore", None), "pool", None)
        name = getattr(pool, "db_name", None)
        if self.store.is_postgres or not name or getattr(pool, "is_sqlite_memory_mode", True) or not os.path.exists(name):
            return None
        return str(Path(name).resolve())

    def _rebuild_in_place(self, names: list[str], progress: ProgressCallback | None, started: float) -> RebuildReport:
        cpu = time.process_time()
        head = self.store.max_position()
        applied = {}
        for name in names:
            projection = self.projections[name]
            with self.db.transaction() as tx:
                projection.drop(tx)
                projection.create(tx)
                tx.execute("UPDATE projection_positions SET position = 0, version = ?, updated_at = ? WHERE name = ?",
                           (projection.version, _now(), name))
            self._until = head
            try:
                applied[name] = self.catch_up([name], progress)
            finally:
                self._until = None
            with self.db.transaction() as tx:
                _create_indexes(tx, projection)
        seconds = time.perf_counter() - started
        return RebuildReport(head=head, applied=applied, seconds=seconds,
                             build_seconds=seconds, swap_seconds=0.0, workers=0,
                             peak_rss_mb={"parent": peak_rss_mb()}, cpu_seconds=time.process_time() - cpu,
                             process_cpu_seconds={"parent": time.process_time() - cpu})

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


def decode_target(projection: Projection, topic: str) -> type | None:
    """The class ``projection`` reads events of ``topic`` as (its ``decode_as`` view or
    the event class), or ``None`` when it does not read them."""
    if not projection.wants(topic):
        return None
    cls = class_of(topic)
    return projection.decode_as.get(cls, cls)


class Decoders(dict[str, Any]):
    """topic -> bound ``decode`` of the class a projection reads it as, or ``None``."""

    def __init__(self, target_of: Callable[[str], type | None]) -> None:
        super().__init__()
        self._target_of = target_of

    def __missing__(self, topic: str) -> Any:
        target = self._target_of(topic)
        decode = self[topic] = None if target is None else decoder_for(target).decode
        return decode


def envelopes(rows: Iterable[tuple[int, str, bytes]], after: int, decoders: Decoders,
              decoded: dict[tuple[int, Any], Any] | None = None, shared: frozenset[str] | None = None) -> list[Envelope]:
    """The envelopes of ``rows`` after position ``after`` that a projection reads.
    ``decoded`` is shared by the projections of one batch so that an event several of
    them read as the same class is decoded once (only events of the ``shared`` topics,
    when given: the others are read by one projection)."""
    batch: list[Envelope] = []
    append = batch.append
    for position, topic, state in rows:
        if position <= after:
            continue
        decode = decoders[topic]
        if decode is None:
            continue
        if decoded is not None and (shared is None or topic in shared):
            key = (position, decode)
            event = decoded.get(key)
            if event is None:
                event = decoded[key] = decode(state)
        else:
            event = decode(state)
        append(Envelope(position, event, topic, state))
    return batch


class PositionMoved(RuntimeError):
    """Another runner advanced this projection; this batch was rolled back."""


def _create_indexes(tx: Tx, projection: Projection) -> None:
    for ddl in projection.indexes:
        tx.execute(ddl)


def now_text() -> str:
    return datetime.now(UTC).isoformat()


_now = now_text
