"""The import's streamed write stays all or nothing: a bad row found after batches were
already sent, a writer process that dies, or an import process that is killed, all
leave the store without a single imported event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError

from bench.ledger_data import LedgerSize, write_ledger_csv
from domain import commands as c
from services.importer import ImportProgress, ImportWriteFailed, run_import
from services.importer.plan import build_plan
from services.importer.rows import read_file
from services.importer.store_io import PIPE_BATCH, open_stream

#: ~9,100 events: several batches reach the writer before the last row is checked.
SIZE = LedgerSize(customers=60, invoices=50)


def writer_pids(parent: int) -> list[int]:
    """Live writer processes (``sqlite_writer.py``) whose parent is ``parent``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z" and b"sqlite_writer.py" in cmdline:
            pids.append(int(entry.name))
    return pids


def ledger(tmp_path: Path) -> dict[str, Path]:
    return write_ledger_csv(tmp_path / "csv", SIZE)


def test_a_bad_row_found_after_batches_were_streamed_records_nothing(app, tmp_path):
    paths = ledger(tmp_path)
    with paths["payments"].open() as f:
        first_payment = f.readlines()[1]
    with paths["payments"].open("a") as f:
        f.write(first_payment)  # the last row repeats a payment id: refused while planning
    report = run_import(app.store, paths, actor="migration")
    assert not report.recorded and len(report.errors) == 1
    assert report.errors[0].rule == "must_be_unique" and report.errors[0].line == SIZE.customers * SIZE.invoices // 2 + 2
    assert app.store.max_position() == 0
    assert writer_pids(os.getpid()) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_writer_process_records_only_on_commit(app, tmp_path):
    files = {kind: read_file(kind, path) for kind, path in ledger(tmp_path).items()}
    plan = build_plan(app.store, files, actor="migration", recorded_at=app.ledger.clock(), correlation_id=uuid.uuid4())
    assert plan.ok and len(plan.events) > 2 * PIPE_BATCH
    stream = open_stream(app.store)
    stream(plan.events)
    assert stream.sent >= 2 * PIPE_BATCH
    stream.abort()
    assert stream.writer.process.returncode == 0 and app.store.max_position() == 0
    open_stream(app.store).commit(plan.events)
    assert app.store.max_position() == len(plan.events)


class KillWriter(ImportProgress):
    """Kills this process's writer once 3,000 of its 4,560 rows are checked (batches were sent)."""

    def __init__(self) -> None:
        self.checked = 0
        self.killed: list[int] = []

    def rows_checked(self, n: int) -> None:
        self.checked += n
        if self.checked >= 3000 and not self.killed:
            self.killed = writer_pids(os.getpid())
            for pid in self.killed:
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_writer_process_that_dies_records_nothing(app, tmp_path):
    progress = KillWriter()
    with pytest.raises(ImportWriteFailed, match="nothing was recorded"):
        run_import(app.store, ledger(tmp_path), actor="migration", progress=progress)
    assert len(progress.killed) == 1
    assert app.store.max_position() == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_killing_the_import_process_records_nothing_and_ends_its_writer(app, database_url, tmp_path):
    paths = write_ledger_csv(tmp_path / "csv", LedgerSize(customers=400, invoices=50))
    args = ["import", *(arg for kind, path in paths.items() for arg in (f"--{kind}", str(path)))]
    env = {**os.environ, "ARLEDGER_DATABASE_URL": database_url, "ARLEDGER_ACTOR": "migration"}
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        writer = _wait_for_busy_writer(proc)
        proc.kill()  # SIGKILL mid-import: the writer sees its input end without a commit
        proc.wait(timeout=30)
        _wait_until_gone(writer)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert app.store.max_position() == 0


def _wait_for_busy_writer(proc: subprocess.Popen[bytes]) -> int:
    """The import's writer pid, once it has spent CPU time inserting batches."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the import ended before it could be killed"
        for pid in writer_pids(proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[11]) + int(fields[12]) >= 20:  # utime + stime, clock ticks: it is inserting
                return pid
        time.sleep(0.01)
    raise AssertionError("no busy writer process appeared")


def _wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state == "Z":  # exited; its parent (killed) is no longer there to reap it
            return
        time.sleep(0.01)
    raise AssertionError(f"writer process {pid} is still running")


def test_a_concurrent_writer_makes_the_streamed_write_record_nothing(app, tmp_path):
    """The streamed write (writer process, COPY) meets the store's (originator_id, version) key too."""
    files = {kind: read_file(kind, path) for kind, path in ledger(tmp_path).items()}
    plan = build_plan(app.store, files, actor="migration", recorded_at=app.ledger.clock(), correlation_id=uuid.uuid4())
    assert plan.ok
    app.ledger.execute(c.RegisterCustomer(customer_id="C000042", name="Came first", currency="EUR"), actor="bob")
    before = app.store.max_position()
    stream = open_stream(app.store)
    with pytest.raises(IntegrityError):
        stream.commit(plan.events)
    if not app.store.is_postgres:
        assert stream.writer.process.returncode == 1
    assert app.store.max_position() == before
