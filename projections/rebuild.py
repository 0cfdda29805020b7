"""Rebuild from zero on SQLite: views built in parallel worker processes, swapped in at once.

WHY. A running worker must replay batch by batch into the live database (rows and position
in one transaction each, :meth:`ProjectionRunner.catch_up`). A rebuild from zero need not:
nobody reads the half-built views, so it can build them anywhere and hand them over whole.
That removes the per-batch commits on the shared WAL, and lets both cores work:

1. The head ``H`` of the stream is read once. The rebuild covers exactly positions
   ``1..H`` and records ``H`` (events recorded meanwhile are the next ``run``'s business).
2. The projections are split into groups, at most one per worker process, balanced by
   their ``rebuild_weight``. Each worker reads the store read-only with one raw SQL scan,
   feeds batches to its projections' own ``create``/``handle``/``indexes`` - the same code
   as the live runner, so a rebuilt view is the view the runner builds - and writes into a
   scratch SQLite file of its own (no journal, no fsync: it is disposable), secondary
   indexes built there after the replay.
3. The parent swaps them in with ONE transaction on the view database: drop the old
   tables, create the new ones with their indexes, ``INSERT INTO main.t SELECT * FROM
   scratch.t`` (SQLite's transfer optimisation appends the stored records, indexes
   included, without decoding a row in Python) and set every position to ``H``. A crash or
   kill before the COMMIT leaves the old views and positions, after it the new ones; never
   a mix.
4. Scratch files are deleted; those of a killed rebuild are removed by the next one.

Peak memory is reported per process (parent and workers), so a caller can state the sum.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import re
import shutil
import sqlite3
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog

from projections.db import ViewDatabase

log = structlog.get_logger("arledger.projections")

#: Prefix of scratch tables once built: unique, so that unqualified names in a
#: projection's ``drop``/``create`` never resolve to the attached scratch database.
SCRATCH_PREFIX = "arledger_rebuild__"
_SCRATCH_DIR = re.compile(r"^\.arledger-rebuild-(\d+)-")


@dataclass(frozen=True)
class GroupJob:
    """What one worker builds: its projections, read from positions 1..head."""

    projections: tuple[Any, ...]  # Projection instances (imported lazily: no cycle with runner)
    topics: tuple[str, ...] | None  # stored topics any of them reads (None: every topic)
    store_path: str
    events_table: str
    head: int
    scratch_path: str
    batch_size: int
    parent_pid: int
    cache_mb: int


@dataclass
class GroupResult:
    applied: dict[str, int]
    tables: dict[str, list[str]]  # projection name -> scratch tables it owns (final names)
    peak_rss_mb: float
    cpu_seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds: replay, indexes


@dataclass(frozen=True)
class RebuildReport:
    head: int
    applied: dict[str, int]
    seconds: float  # wall-clock, from reading the head to the swap committed
    build_seconds: float
    swap_seconds: float
    workers: int
    #: peak resident memory of every process the rebuild used: "parent" and one entry per worker
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # CPU of all of them (user + system)
    #: CPU seconds per process, same keys as ``peak_rss_mb`` (the parent's: reading the
    #: head, waiting, and the swap)
    process_cpu_seconds: dict[str, float] = field(default_factory=dict)
    #: wall seconds of the swap's steps: "drop" (old tables out, new ones created),
    #: "copy" (scratch rows in) and "commit" (with its checkpoint into the database file)
    swap_phases: dict[str, float] = field(default_factory=dict)

    @property
    def total_peak_rss_mb(self) -> float:
        return sum(self.peak_rss_mb.values())


def plan_groups(projections: Sequence[Any], workers: int) -> list[list[Any]]:
    """Longest-processing-time-first: the heaviest projection goes to the least loaded
    group. Projections of one group share one scan of the store."""
    groups: list[list[Any]] = [[] for _ in range(max(1, min(workers, len(projections))))]
    loads = [0.0] * len(groups)
    for projection in sorted(projections, key=lambda p: -p.rebuild_weight):
        i = loads.index(min(loads))
        groups[i].append(projection)
        loads[i] += projection.rebuild_weight
    return [g for g in groups if g]


def remove_stale_scratch(directory: Path) -> None:
    """Delete the scratch directories of rebuilds whose process is gone (killed)."""
    for entry in directory.iterdir() if directory.is_dir() else ():
        match = _SCRATCH_DIR.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    return True


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def build_group(job: GroupJob, reached: Any = None) -> GroupResult:
    """Replay positions 1..head into a fresh scratch file (runs in a worker process)."""
    from projections.runner import Decoders, decode_target, envelopes

    cpu = _cpu_seconds()
    source = sqlite3.connect(f"file:{quote(job.store_path)}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    scratch = ViewDatabase(f"sqlite:///{job.scratch_path}", scratch=True, cache_mb=job.cache_mb)
    applied = {p.name: 0 for p in job.projections}
    tables: dict[str, list[str]] = {}
    try:
        with scratch.transaction() as tx:
            for projection in job.projections:
                before = _tables(tx)
                projection.create(tx)
                tables[projection.name] = sorted(_tables(tx) - before)
                projection.begin_rebuild(tx)
            decoders = {p.name: Decoders(lambda topic, p=p: decode_target(p, topic)) for p in job.projections}
            sql = f"SELECT rowid, topic, state FROM {job.events_table} WHERE rowid <= ?"
            params: list[Any] = [job.head]
            if job.topics is not None:
                sql += f" AND topic IN ({', '.join('?' * len(job.topics))})"
                params.extend(job.topics)
            cursor = source.execute(sql + " ORDER BY rowid", params)
            shared = _shared_topics(job.projections)
            replay_started = time.perf_counter()
            while rows := cursor.fetchmany(job.batch_size):
                decoded: dict[tuple[int, Any], Any] | None = {} if shared else None
                for projection in job.projections:
                    batch = envelopes(rows, 0, decoders[projection.name], decoded, shared)
                    if batch:
                        projection.handle(tx, batch)
                        applied[projection.name] += len(batch)
                if reached is not None:
                    reached.value = rows[-1][0]
                if os.getppid() != job.parent_pid:  # the rebuild was killed: stop, nobody will swap this in
                    os._exit(3)
            for projection in job.projections:
                projection.finish_rebuild(tx)
            indexes_started = time.perf_counter()
            for projection in job.projections:
                for ddl in projection.indexes:
                    tx.execute(ddl)
            for owned in tables.values():
                for table in owned:
                    tx.execute(f'ALTER TABLE "{table}" RENAME TO "{SCRATCH_PREFIX}{table}"')
            phases = {"replay": indexes_started - replay_started, "indexes": time.perf_counter() - indexes_started}
    finally:
        source.close()
        scratch.close()
    return GroupResult(applied, tables, peak_rss_mb(), _cpu_seconds() - cpu, phases)


def _shared_topics(projections: Sequence[Any]) -> frozenset[str]:
    """Topics that two of ``projections`` read as the same class: such events are decoded
    once for both (for the others a shared cache would only cost a lookup)."""
    if len(projections) < 2:
        return frozenset()
    from domain.catalog import all_event_types
    from projections.runner import decode_target
    from services.persistence import topic_of

    shared = set()
    for cls in all_event_types():
        targets = [t for t in (decode_target(p, topic_of(cls)) for p in projections) if t is not None]
        if len(targets) != len(set(targets)):
            shared.add(topic_of(cls))
    return frozenset(shared)


def _tables(tx: Any) -> set[str]:
    return {r[0] for r in tx.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall()}


def _worker(job: GroupJob, reached: Any, conn: Connection) -> None:
    # A short-lived process whose millions of row tuples are all garbage-free: the cyclic
    # collector would only re-scan them (what the parent had at the fork is frozen too).
    gc.freeze()
    gc.disable()
    try:
        conn.send(("ok", build_group(job, reached)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", "".join(traceback.format_exception(exc))))
    finally:
        conn.close()


class RebuildFailed(RuntimeError):
    """A worker failed or died: nothing was swapped in, the old views are untouched."""


def rebuild_sqlite(db: ViewDatabase, jobs: Sequence[GroupJob], *, versions: dict[str, int],
                   progress: Callable[[int, int], None] | None = None, started: float | None = None) -> RebuildReport:
    """Build every group in its own process, then swap them all into ``db`` at once."""
    started = started if started is not None else time.perf_counter()
    cpu = _cpu_seconds()
    head = jobs[0].head
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    _release_memory(db)
    running = []
    try:
        for job in jobs:
            reached = context.RawValue("q", 0)
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_worker, args=(job, reached, sender), daemon=True,
                                      name=f"rebuild:{'+'.join(p.name for p in job.projections)}")
            process.start()
            sender.close()
            running.append((job, process, receiver, reached))
        results = _collect(running, head, progress)
        build_seconds = time.perf_counter() - started
        swap_started = time.perf_counter()
        swap_phases = _swap(db, jobs, results, head, versions)
        swap_seconds = time.perf_counter() - swap_started
        if progress:
            progress(head, head)
    finally:
        for _, process, receiver, _ in running:
            if process.is_alive():
                process.terminate()
            process.join()
            receiver.close()
    applied = {name: n for r in results for name, n in r.applied.items()}
    for job, result in zip(jobs, results, strict=True):
        log.info("projections_rebuild_group", projections=[p.name for p in job.projections], cpu_seconds=round(result.cpu_seconds, 2),
                 **{f"{phase}_seconds": round(seconds, 2) for phase, seconds in result.phases.items()})
    labels = [f"worker {i + 1} ({'+'.join(p.name for p in job.projections)})" for i, job in enumerate(jobs)]
    peaks = {"parent": peak_rss_mb(), **{label: r.peak_rss_mb for label, r in zip(labels, results, strict=True)}}
    cpus = {"parent": _cpu_seconds() - cpu, **{label: r.cpu_seconds for label, r in zip(labels, results, strict=True)}}
    return RebuildReport(head=head, applied=applied, seconds=time.perf_counter() - started, build_seconds=build_seconds,
                         swap_seconds=swap_seconds, swap_phases=swap_phases, workers=len(jobs), peak_rss_mb=peaks,
                         cpu_seconds=sum(cpus.values()), process_cpu_seconds=cpus)


def _release_memory(db: ViewDatabase) -> None:
    """Hand the view connection's page cache back to the OS before forking the workers.
    Forked children count the pages they inherit in their resident memory: after a set-up
    that dropped a changed view (64 MB of cache filled), each worker started ~64 MB
    heavier and the summed peak of a rebuild rose from ~340 to ~430 MB."""
    db.conn.execute("PRAGMA shrink_memory")
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed heap pages otherwise
    except (OSError, AttributeError):  # pragma: no cover - not glibc: the pages stay, as before
        pass


def _collect(running: list[Any], head: int, progress: Callable[[int, int], None] | None) -> list[GroupResult]:
    results: dict[int, GroupResult] = {}
    pending = {receiver: i for i, (_, _, receiver, _) in enumerate(running)}
    while pending:
        for receiver in wait(list(pending), timeout=0.2):
            i = pending.pop(receiver)
            job, process = running[i][0], running[i][1]
            try:
                status, payload = receiver.recv()
            except EOFError:
                process.join()
                raise RebuildFailed(f"rebuild worker for {[p.name for p in job.projections]} died (exit code {process.exitcode})") from None
            if status != "ok":
                raise RebuildFailed(f"rebuild worker for {[p.name for p in job.projections]} failed:\n{payload}")
            results[i] = payload
        if progress:
            progress(min(head if i in results else int(r.value) for i, (_, _, _, r) in enumerate(running)), head)
    return [results[i] for i in range(len(running))]


def _swap(db: ViewDatabase, jobs: Sequence[GroupJob], results: Sequence[GroupResult], head: int,
          versions: dict[str, int]) -> dict[str, float]:
    """Old views out, new views in, positions at ``head``: one transaction. Returns the
    seconds of its steps."""
    from projections.runner import now_text

    phases = {"drop": 0.0, "copy": 0.0, "commit": 0.0}

    aliases = [f"rebuild_{i}" for i in range(len(jobs))]
    for alias, job in zip(aliases, jobs, strict=True):
        db.conn.execute("ATTACH DATABASE ? AS " + alias, (job.scratch_path,))
    # The view connection runs with secure_delete=FAST (ViewDatabase): the DROPs below
    # free the old views' pages without writing them again.
    try:
        # Deferred BEGIN, first statement a write to main: the write lock on main is taken
        # at once (waiting for other writers as usual), and the attached scratch files,
        # only read, never turn the commit into a multi-file one.
        with db.transaction(immediate=False) as tx:
            for job in jobs:
                for projection in job.projections:
                    tx.execute(
                        "INSERT INTO projection_positions (name, position, version, updated_at) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (name) DO UPDATE SET position = excluded.position, version = excluded.version,"
                        " updated_at = excluded.updated_at",
                        (projection.name, head, versions[projection.name], now_text()),
                    )
            for alias, job, result in zip(aliases, jobs, results, strict=True):
                for projection in job.projections:
                    started = time.perf_counter()
                    projection.drop(tx)
                    projection.create(tx)
                    for ddl in projection.indexes:  # empty now: the copy fills them in key order
                        tx.execute(ddl)
                    copying = time.perf_counter()
                    for table in result.tables[projection.name]:
                        tx.execute(f'INSERT INTO main."{table}" SELECT * FROM {alias}."{SCRATCH_PREFIX}{table}"')
                    phases["drop"] += copying - started
                    phases["copy"] += time.perf_counter() - copying
            committing = time.perf_counter()
    finally:
        for alias in aliases:
            db.conn.execute("DETACH DATABASE " + alias)
    # The commit's checkpoint copied the new views into the database file; give back the
    # WAL's disk space (as large as the views) when no reader holds it.
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    phases["commit"] = time.perf_counter() - committing
    return phases


def scratch_directory(database_path: str) -> Path:
    """A fresh directory for scratch files next to the database (same disk, never a
    RAM-backed /tmp), after removing those of killed rebuilds."""
    parent = Path(database_path).resolve().parent
    remove_stale_scratch(parent)
    return Path(tempfile.mkdtemp(prefix=f".arledger-rebuild-{os.getpid()}-", dir=parent))
