"""Bulk import of an existing ledger from CSV files (``arledger import``).

All or nothing: every row of every file is parsed and checked (against the store and
against the accounts built in memory by the aggregate's own rules); if any row of any
file is bad, every bad row is reported and **nothing** is recorded, not even the good
files, because later files depend on earlier ones (payments allocate to invoices).
Otherwise all events are written in one transaction (see
:mod:`services.importer.store_io`), then accounts that crossed the snapshot interval
get a snapshot, as :class:`~services.ledger.LedgerService` does after a command.

The write runs while the rows are still being checked, batch by batch, and commits only
once the last row has passed (:func:`services.importer.store_io.open_stream`): on an
SQLite file the transaction is held by a writer process
(:mod:`services.importer.sqlite_writer`), on PostgreSQL it is one ``COPY`` the server
ingests. Checking and writing then run on two cores, and a bad row, a dead writer or a
killed import still records nothing.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from eventsourcing.persistence import IntegrityError, PersistenceError

from domain.account import AccountSnapshot
from domain.errors import LedgerError
from services.importer.plan import ORDER, ImportPlan, build_plan, snapshot_accounts
from services.importer.rows import ParsedFile, RowError, read_chunks
from services.importer.store_io import forget_cached, open_stream, write_events
from services.ledger import ConcurrencyConflict, utc_now
from services.persistence import LedgerStore

__all__ = ["ORDER", "ImportProgress", "ImportReport", "ImportWriteFailed", "RowError", "run_import"]


#: Rows parsed at a time: the first events reach the writer a few milliseconds in,
#: instead of after the whole first file is parsed.
READ_CHUNK_ROWS = 10_000


class ImportWriteFailed(LedgerError):
    """The store refused or lost the write (locked too long, writer process died)."""


class ImportProgress:
    """Progress callbacks; the CLI draws them as rich progress bars. No-ops here."""

    def rows_total(self, total: int) -> None:
        """First an estimate (the files' lines), then once every row is read the rows to check."""

    def rows_checked(self, n: int) -> None: ...

    def events_total(self, total: int) -> None: ...

    def events_written(self, n: int) -> None: ...


@dataclass
class ImportReport:
    rows: dict[str, int]
    errors: list[RowError]
    events: int = 0
    reference_claims: int = 0
    snapshots: int = 0
    recorded: bool = False
    dry_run: bool = False
    seconds: float = 0.0
    write_seconds: float = 0.0  # from the last row checked to the commit
    write_cpu_seconds: float = 0.0  # this process's CPU time in that span
    writer_cpu_seconds: float = 0.0  # the writer process's CPU time (SQLite file stores)
    correlation_id: str = ""
    files: dict[str, str] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return round(self.events / self.seconds) if self.seconds else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "recorded": self.recorded, "dry_run": self.dry_run, "files": self.files, "rows": self.rows, "bad_rows": len(self.errors),
            "events": self.events, "reference_claims": self.reference_claims, "snapshots": self.snapshots,
            "seconds": round(self.seconds, 3), "events_per_second": self.events_per_second, "correlation_id": self.correlation_id,
            "errors": [str(e) for e in self.errors],
        }


def run_import(
    store: LedgerStore, paths: dict[str, Path], *, actor: str, clock: Callable[[], datetime] = utc_now,
    dry_run: bool = False, progress: ImportProgress | None = None,
) -> ImportReport:
    """Import the given files (keys: customers, invoices, credit_notes, payments)."""
    shown = progress is not None
    progress = progress or ImportProgress()
    started = time.perf_counter()
    correlation_id = uuid.uuid4()
    unknown = set(paths) - set(ORDER)
    if unknown:
        raise ValueError(f"unknown import file kinds {sorted(unknown)}")
    # The write runs batch by batch while rows are still being checked (on SQLite in a
    # child process, on PostgreSQL in the server); it commits only once every row has passed.
    stream = None if dry_run else open_stream(store)
    try:
        with _gc_paused():
            # Files are parsed piece by piece as the planner gets to them, so the writer
            # inserts the first rows' events while the rest is still being parsed.
            sources = {kind: read_chunks(kind, Path(paths[kind]), READ_CHUNK_ROWS) for kind in ORDER if kind in paths}
            files: list[ParsedFile] | None = []  # kept (and freed below) as the plan's events are
            if shown:  # an estimate, corrected once every row is read
                progress.rows_total(sum(_data_lines(Path(p)) for p in paths.values()))
            plan = build_plan(store, sources, actor=actor, recorded_at=clock(), correlation_id=correlation_id, progress=progress.rows_checked,
                              sink=stream, on_read=files.append)
            progress.rows_total(sum(len(f.rows) for f in files))
            report = ImportReport(rows=plan.rows, errors=plan.errors, dry_run=dry_run, correlation_id=str(correlation_id),
                                  files={kind: str(p) for kind, p in paths.items()})
            if plan.ok:
                report.events, report.reference_claims = len(plan.events), plan.reference_claims
            if plan.ok and not dry_run:
                write_started, write_cpu_started = time.perf_counter(), time.process_time()
                snapshots = _due_snapshots(store, plan)
                account_ids = [account.id for account in plan.accounts.values()]
                progress.events_total(report.events)
                try:
                    with _write_errors():
                        if stream is None:
                            write_events(store, plan.events, on_batch=progress.events_written)
                        else:
                            stream.request_commit(plan.events)
                            files = plan = None  # freed while the writer process commits
                            stream.wait()
                            progress.events_written(report.events)
                finally:
                    forget_cached(store, account_ids)
                if snapshots:
                    store.snapshots.put(snapshots)
                report.snapshots, report.recorded = len(snapshots), True
                report.write_seconds = time.perf_counter() - write_started
                report.write_cpu_seconds = time.process_time() - write_cpu_started
            elif stream is not None:
                stream.abort()
            # Free the rows and events while the collector is still off: switched back on,
            # it would first walk every one of them (~0.35 s for 350,000 events) only to
            # find what reference counting frees anyway.
            files = plan = None
    except BaseException:
        if stream is not None:
            stream.kill()
        raise
    if stream is not None:
        report.writer_cpu_seconds = stream.cpu_seconds
    report.seconds = time.perf_counter() - started
    return report


def _data_lines(path: Path) -> int:
    """Lines after the header, counted in bytes without parsing (a few ms for 100,000
    rows): the progress bar's total while the files are parsed piece by piece."""
    with path.open("rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return max(lines - 1, 0)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """An import allocates hundreds of thousands of long-lived objects and no cycles;
    the cyclic collector would re-walk them all, over and over, for nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _write_errors() -> Iterator[None]:
    try:
        yield
    except IntegrityError:
        raise ConcurrencyConflict("another writer recorded some of the same accounts or references during the import; nothing was imported, run it again") from None
    except PersistenceError as exc:
        raise ImportWriteFailed(f"the import could not be written, nothing was recorded: {exc}") from exc


def _due_snapshots(store: LedgerStore, plan: ImportPlan) -> list[AccountSnapshot]:
    """Snapshots of the accounts that crossed a multiple of the snapshot interval, so
    that loading a migrated account does not replay its whole history; built before the
    commit (from the plan alone), stored after it."""
    interval = store.settings.snapshot_interval
    if store.snapshots is None or interval <= 0:
        return []
    return snapshot_accounts(plan, interval)
