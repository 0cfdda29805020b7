"""``rebuild_all``: every view rebuilt from zero equals the live runner's, stops at the head
it started from, and a failure or a SIGKILL at any point (while the workers build, or
while the parent swaps the views in) leaves either the old views or the new ones, never
a mix. SQLite builds in worker processes (projections/rebuild.py); PostgreSQL rebuilds in
place, and the equality tests run on both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from domain import commands as c
from projections.ar_items import ArItemsProjection
from projections.db import ViewDatabase
from projections.rebuild import RebuildFailed
from projections.registry import all_projections
from projections.runner import ProjectionRunner
from services.bootstrap import bootstrap
from services.settings import Settings
from tests.conftest import FakeClock
from tests.integration.test_ar_items import view_db  # noqa: F401 - the shared fixture
from tests.integration.test_reports_exactly_once import ledger

_OWN = {"stored_events", "stored_snapshots", "projection_positions"}


@pytest.fixture
def file_store(tmp_path):
    """(url, app, view database) on one SQLite file: the parallel rebuild's own ground."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    app = bootstrap(Settings.from_env({}, database_url=url), clock=FakeClock(), configure_logs=False)
    db = ViewDatabase(url)
    try:
        yield url, app, db
    finally:
        db.close()
        app.close()


def views(db: ViewDatabase) -> dict[str, list[tuple]]:
    """Every view table's rows (order-free) and every projection's position."""
    if db.dialect == "sqlite":
        names = [r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    else:
        names = [r[0] for r in db.query("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
    out = {t: sorted(db.query(f"SELECT * FROM {t}"), key=repr) for t in names if t not in _OWN}
    out["positions"] = sorted(db.query("SELECT name, position, version FROM projection_positions"))
    return out


def test_rebuild_all_equals_the_live_runner_and_records_the_head(app, view_db):
    ledger(app, customers=4, invoices=30)
    live = ProjectionRunner(app.store, view_db, all_projections(), batch_size=7)
    live.setup()
    live.catch_up()
    expected = views(view_db)
    report = ProjectionRunner(app.store, view_db, all_projections()).rebuild_all()
    head = app.store.max_position()
    assert report.head == head
    assert report.applied["audit_trail"] == head  # the trail reads every event
    assert views(view_db) == expected
    assert {name for name, position, _ in expected["positions"] if position == head} == {p.name for p in all_projections()}
    if view_db.dialect == "sqlite":
        assert report.workers >= 1 and set(report.peak_rss_mb) >= {"parent"} and report.total_peak_rss_mb > 0
        directory = Path(view_db.url.removeprefix("sqlite:///")).parent
        assert not [p for p in directory.iterdir() if p.name.startswith(".arledger-rebuild-")]  # scratch removed


def test_rebuild_stops_at_the_head_it_started_from(app, view_db):
    ledger(app, customers=3, invoices=12)
    runner = ProjectionRunner(app.store, view_db, all_projections(), batch_size=5)
    runner.setup()
    head = app.store.max_position()
    recorded = []

    def progress(reached: int, head_now: int) -> None:
        if not recorded:  # an event recorded while the rebuild runs belongs to the next run
            app.ledger.execute(c.RegisterCustomer(customer_id="LATE", name="Late", currency="EUR"), actor="s")
            recorded.append(app.store.max_position())

    report = runner.rebuild_all(progress=progress)
    assert report.head == head < recorded[0]
    assert {runner.position(p) for p in runner.projections} == {head}
    assert not view_db.query("SELECT 1 FROM ar_customers WHERE customer_id = 'LATE'")
    runner.catch_up()
    assert view_db.query("SELECT 1 FROM ar_customers WHERE customer_id = 'LATE'")


class FailingArItems(ArItemsProjection):
    """Fails in the worker (``where='build'``) or while the parent swaps it in."""

    rebuild_weight = 0.5  # last of its group: in the swap, the other views are copied before it fails

    def __init__(self, where: str) -> None:
        self.where = where

    def handle(self, tx, batch):
        if self.where == "build":
            raise RuntimeError("simulated failure while building")
        super().handle(tx, batch)

    def create(self, tx):
        if self.where == "swap" and ".arledger-rebuild-" not in tx.db.url:  # the live database, not a scratch file
            raise RuntimeError("simulated failure in the middle of the swap")
        super().create(tx)


@pytest.mark.parametrize("where", ["build", "swap"])
def test_a_failed_rebuild_leaves_the_old_views(tmp_path, file_store, where):
    _, app, db = file_store
    ledger(app, customers=3, invoices=12)
    live = ProjectionRunner(app.store, db, all_projections())
    live.setup()
    live.catch_up()
    app.ledger.execute(c.RegisterCustomer(customer_id="NEW", name="New", currency="EUR"), actor="s")
    before = views(db)
    projections = [p if p.name != "ar_items" else FailingArItems(where) for p in all_projections()]
    with pytest.raises((RebuildFailed, RuntimeError)):
        ProjectionRunner(app.store, db, projections).rebuild_all(workers=1)
    assert views(db) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".arledger-rebuild-")]


# A rebuild slowed down in one phase, in its own process, so that the test can SIGKILL it there.
_SLOW_REBUILD = r"""
import sys, time
from projections import rebuild
from projections.ar_items import ArItemsProjection
from projections.db import Tx, ViewDatabase
from projections.registry import all_projections
from projections.runner import ProjectionRunner
from services.bootstrap import bootstrap
from services.settings import Settings

url, phase = sys.argv[1], sys.argv[2]  # argv[3] marks this process and its workers for the test
if phase == "build":
    handle = ArItemsProjection.handle
    def slow_handle(self, tx, batch):
        time.sleep(0.05)
        handle(self, tx, batch)
    ArItemsProjection.handle = slow_handle
else:
    swap, execute = rebuild._swap, Tx.execute
    def slow_execute(self, sql, params=()):
        result = execute(self, sql, params)
        if sql.startswith("INSERT INTO main."):
            time.sleep(0.4)
        return result
    def slow_swap(*args, **kwargs):
        Tx.execute = slow_execute  # in this (parent) process only: the workers are done
        print("swapping", flush=True)
        return swap(*args, **kwargs)
    rebuild._swap = slow_swap
app = bootstrap(Settings.from_env({}, database_url=url, log_level="WARNING"), configure_logs=False)
runner = ProjectionRunner(app.store, ViewDatabase(url), all_projections(), batch_size=20)
started = []
def progress(reached, head):
    if not started:
        started.append(1)
        print("building", flush=True)
runner.rebuild_all(progress=progress, workers=2)
print("done", flush=True)
"""


def _marked(marker: str) -> list[int]:
    """Pids of live processes whose command line carries ``marker`` (the rebuild and its
    forked workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().split(") ")[-1][:1]
            except OSError:
                continue
            if marker.encode() in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("phase", ["build", "swap"])
def test_sigkill_during_the_rebuild_leaves_the_old_views_or_the_new(tmp_path, file_store, phase):
    url, app, db = file_store
    ledger(app, customers=5, invoices=150)
    live = ProjectionRunner(app.store, db, all_projections())
    live.setup()
    live.catch_up()
    for n in range(5):  # the rebuild has more to do than the views hold
        app.ledger.execute(c.RegisterCustomer(customer_id=f"N{n}", name="N", currency="EUR"), actor="s")
    old = views(db)
    marker = f"rebuild-test-{os.getpid()}-{phase}-{time.monotonic_ns()}"
    child = subprocess.Popen([sys.executable, "-c", _SLOW_REBUILD, url, phase, marker], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "ARLEDGER_LOG_LEVEL": "WARNING"})
    wanted = "building" if phase == "build" else "swapping"
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == wanted:
            break
    time.sleep(0.2 if phase == "swap" else 0.3)  # inside the slowed-down phase
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 20  # orphaned workers notice their parent is gone and stop
    while _marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _marked(marker)
    assert db.query("PRAGMA integrity_check") == [("ok",)]
    assert views(db) == old  # the kill landed before the COMMIT: nothing of the new views shows
    # the next rebuild removes the killed one's scratch files and completes
    report = ProjectionRunner(app.store, db, all_projections()).rebuild_all()
    assert report.head == app.store.max_position()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".arledger-rebuild-")]
    reference = ViewDatabase(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    try:  # the live runner from zero, into a database of its own
        fresh = ProjectionRunner(app.store, reference, all_projections(), batch_size=9)
        fresh.setup()
        fresh.catch_up()
        assert views(reference) == views(db)
    finally:
        reference.close()


def test_groups_are_balanced_by_rebuild_weight():
    from projections.rebuild import plan_groups

    class P:
        def __init__(self, name, weight):
            self.name, self.rebuild_weight = name, weight

    heavy, medium, light, tiny = P("heavy", 3.0), P("medium", 2.0), P("light", 1.0), P("tiny", 0.1)
    groups = plan_groups([tiny, light, medium, heavy], 2)
    assert [[p.name for p in g] for g in groups] == [["heavy", "tiny"], ["medium", "light"]]
    assert [[p.name for p in g] for g in plan_groups([tiny, light], 8)] == [["light"], ["tiny"]]
    assert [[p.name for p in g] for g in plan_groups([tiny, light], 1)] == [["light", "tiny"]]


def test_scratch_directories_of_dead_rebuilds_are_removed(tmp_path):
    from projections.rebuild import remove_stale_scratch

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = tmp_path / f".arledger-rebuild-{int(dead.stdout)}-x"
    alive = tmp_path / f".arledger-rebuild-{os.getpid()}-y"
    for directory in (stale, alive):
        directory.mkdir()
        (directory / "group-0.sqlite").write_bytes(b"scratch")
    remove_stale_scratch(tmp_path)
    assert not stale.exists() and alive.exists()


def test_rebuilding_an_empty_store(file_store):
    _, app, db = file_store
    runner = ProjectionRunner(app.store, db, all_projections())
    runner.setup()
    report = runner.rebuild_all()
    assert report.head == 0 and set(report.applied.values()) == {0}
    assert {runner.position(p) for p in runner.projections} == {0}
    assert db.query("SELECT COUNT(*) FROM ar_movements") == [(0,)]


def test_rebuild_without_set_up_creates_the_positions(file_store):
    _, app, db = file_store
    ledger(app, customers=2, invoices=4)
    runner = ProjectionRunner(app.store, db, all_projections())
    report = runner.rebuild_all()  # no setup() before: a fresh view database
    assert {runner.position(p) for p in runner.projections} == {report.head} == {app.store.max_position()}
