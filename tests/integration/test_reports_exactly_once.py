"""Exactly-once on restart for the receivables views: a batch that fails (or a worker
killed with SIGKILL) part-way leaves nothing behind, and after a restart every view
table and the aging report equal a clean rebuild."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta

import pytest

from domain import commands as c
from projections.aging import aging_report
from projections.ar_items import ArItemsProjection
from projections.db import ViewDatabase
from projections.runner import ProjectionRunner
from services.bootstrap import bootstrap
from services.settings import Settings
from tests.conftest import FakeClock
from tests.integration.test_ar_items import view_db  # noqa: F401 - the shared fixture

TABLES = {
    "ar_customers": "customer_id", "ar_customer_versions": "customer_id, position", "ar_installments": "invoice_number, installment",
    "ar_movements": "position, seq", "ar_disputes": "position", "ar_aging_grid": "currency, kind, due_date, effective_date",
    "ar_aging_months": "currency, kind, due_date, effective_month",
}


class CrashingArItems(ArItemsProjection):
    """Writes its rows for the batch, then dies before the runner commits."""

    def __init__(self, crash_on_batch: int) -> None:
        self.batches = 0
        self.crash_on_batch = crash_on_batch

    def handle(self, tx, batch):
        self.batches += 1
        super().handle(tx, batch)
        if self.batches == self.crash_on_batch:
            raise RuntimeError("simulated crash after writing part of the views")


def ledger(app, customers: int = 3, invoices: int = 12) -> None:
    x = app.ledger.execute
    for n in range(customers):
        x(c.RegisterCustomer(customer_id=f"C{n}", name=f"C{n}", currency="EUR", region=f"r{n % 2}"), actor="s")
    start = date(2026, 1, 1)
    for n in range(invoices):
        cid = f"C{n % customers}"
        x(c.IssueInvoice(customer_id=cid, invoice_number=f"I{n}", currency="EUR", amount_minor=1000 + 10 * n,
                         issue_date=start + timedelta(days=n * 3)), actor="s")
        if n % 2:
            x(c.ReceivePayment(customer_id=cid, payment_id=f"P{n}", currency="EUR", amount_minor=700,
                               value_date=start + timedelta(days=n * 3 + 20)), actor="s")
            x(c.AllocatePayment(payment_id=f"P{n}"), actor="s")
        if n % 5 == 0:
            x(c.IssueCreditNote(customer_id=cid, credit_note_number=f"CN{n}", currency="EUR", amount_minor=100,
                                issue_date=start + timedelta(days=n * 3 + 1), invoice_number=f"I{n}"), actor="s")
    x(c.ReversePayment(payment_id="P1", reversed_on=date(2026, 3, 1), reason="bounced"), actor="s")
    x(c.UpdateCustomer(customer_id="C0", region="r9"), actor="s")


def dump(db: ViewDatabase) -> dict[str, list[tuple]]:
    views = {t: db.query(f"SELECT * FROM {t} ORDER BY {order}") for t, order in TABLES.items()}
    views["aging"] = [aging_report(db, date(2026, 3, 15), by=by) for by in ("customer", "region")]  # type: ignore[assignment]
    return views


def test_a_crash_mid_batch_resumes_exactly_once(app, view_db):
    ledger(app)
    crashing = ProjectionRunner(app.store, view_db, [CrashingArItems(crash_on_batch=3)], batch_size=5)
    crashing.setup()
    with pytest.raises(RuntimeError):
        crashing.catch_up()
    assert 0 < crashing.position("ar_items") < app.store.max_position()  # two batches committed, the third rolled back
    restarted = ProjectionRunner(app.store, view_db, [ArItemsProjection()], batch_size=5)
    restarted.catch_up()
    resumed = dump(view_db)
    restarted.rebuild("ar_items")
    assert dump(view_db) == resumed
    assert resumed["aging"][0][0]["position"] == app.store.max_position()


def test_sigkilled_worker_restarts_exactly_once(tmp_path):
    """On SQLite (the embedded default); the in-process crash test above runs on both backends."""
    database_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    app = bootstrap(Settings.from_env({}, database_url=database_url), clock=FakeClock(), configure_logs=False)
    ledger(app, customers=5, invoices=400)
    head = app.store.max_position()
    env = {**os.environ, "ARLEDGER_DATABASE_URL": database_url, "ARLEDGER_LOG_LEVEL": "WARNING"}
    db = ViewDatabase(database_url)
    try:
        ProjectionRunner(app.store, db, [ArItemsProjection()]).setup()
        killed_at = []
        for _ in range(3):  # a few tries to land the kill in the middle of the stream
            db.query("SELECT 1")
            worker = subprocess.Popen([sys.executable, "-m", "services.cli", "projections", "run", "--batch-size", "7"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            position = 0
            while time.monotonic() < deadline:
                rows = db.query("SELECT position FROM projection_positions WHERE name = 'ar_items'")
                position = rows[0][0] if rows else 0
                if position > (killed_at[-1] if killed_at else 0):
                    break
                time.sleep(0.002)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            killed_at.append(db.query("SELECT position FROM projection_positions WHERE name = 'ar_items'")[0][0])
            if killed_at[-1] < head:
                break
        assert 0 < killed_at[-1] < head, f"the worker was never killed mid-stream: {killed_at} of {head}"
        subprocess.run([sys.executable, "-m", "services.cli", "projections", "run", "--once"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        resumed = dump(db)
        runner = ProjectionRunner(app.store, db, [ArItemsProjection()])
        runner.rebuild("ar_items")
        assert dump(db) == resumed
        assert runner.position("ar_items") == head
    finally:
        db.close()
        app.close()
