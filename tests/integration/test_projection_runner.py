"""The runner's exactly-once guarantee, on SQLite and PostgreSQL, with a small test view."""

from __future__ import annotations

from datetime import date

import pytest

from domain import commands as c
from domain import events as ev
from projections.db import ViewDatabase
from projections.runner import PositionMoved, Projection, ProjectionRunner


class InvoiceTotals(Projection):
    """Sum of invoiced amounts per customer: any double count or loss shows."""

    name = "test_invoice_totals"
    event_types = (ev.InvoiceIssued,)

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after

    def create(self, tx):
        tx.execute("CREATE TABLE IF NOT EXISTS test_totals (customer_id TEXT PRIMARY KEY, total BIGINT NOT NULL, n INTEGER NOT NULL)")

    def drop(self, tx):
        tx.execute("DROP TABLE IF EXISTS test_totals")

    def handle(self, tx, batch):
        for i, env in enumerate(batch):
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("simulated crash in the middle of a batch")
            tx.execute(
                "INSERT INTO test_totals (customer_id, total, n) VALUES (?, ?, 1) ON CONFLICT (customer_id) DO UPDATE SET total = test_totals.total + excluded.total, n = test_totals.n + 1",
                (env.event.customer_id, env.event.amount_minor),
            )


def record_ledger(app, invoices=30):
    for cid in ("A", "B"):
        app.ledger.execute(c.RegisterCustomer(customer_id=cid, name=cid, currency="EUR"), actor="t")
    for n in range(invoices):
        cid = "A" if n % 3 else "B"
        app.ledger.execute(c.IssueInvoice(customer_id=cid, invoice_number=f"I{n}", currency="EUR", amount_minor=100 + n, issue_date=date(2026, 1, 1)), actor="t")


def totals(db):
    return sorted(db.query("SELECT customer_id, total, n FROM test_totals"))


@pytest.fixture
def view_db(database_url):
    db = ViewDatabase(database_url)
    yield db
    db.close()


def test_crash_mid_batch_resumes_exactly_once(app, view_db):
    record_ledger(app)
    crashing = ProjectionRunner(app.store, view_db, [InvoiceTotals(fail_after=3)], batch_size=10)
    crashing.setup()
    with pytest.raises(RuntimeError):
        crashing.catch_up()
    assert crashing.position("test_invoice_totals") == 0  # the failed batch left nothing behind
    assert totals(view_db) == []
    healthy = ProjectionRunner(app.store, view_db, [InvoiceTotals()], batch_size=10)
    healthy.catch_up()
    resumed = totals(view_db)
    healthy.rebuild("test_invoice_totals")
    assert totals(view_db) == resumed
    expected_a = sum(100 + n for n in range(30) if n % 3)
    assert dict((r[0], r[1]) for r in resumed)["A"] == expected_a
    assert sum(r[2] for r in resumed) == 30


def test_partial_progress_then_restart_matches_rebuild(app, view_db):
    record_ledger(app, invoices=25)
    first = ProjectionRunner(app.store, view_db, [InvoiceTotals()], batch_size=7)
    first.setup()
    first.run_once()
    first.run_once()
    assert 0 < first.position("test_invoice_totals") < app.store.max_position()
    record_ledger_more(app)
    second = ProjectionRunner(app.store, view_db, [InvoiceTotals()], batch_size=7)
    second.catch_up()
    assert second.status()[0]["lag"] == 0
    resumed = totals(view_db)
    second.rebuild("test_invoice_totals")
    assert totals(view_db) == resumed


def record_ledger_more(app):
    app.ledger.execute(c.IssueInvoice(customer_id="A", invoice_number="LATE", currency="EUR", amount_minor=5, issue_date=date(2026, 2, 1)), actor="t")


def test_a_second_runner_cannot_apply_the_same_batch(app, view_db, database_url):
    record_ledger(app, invoices=5)
    runner = ProjectionRunner(app.store, view_db, [InvoiceTotals()], batch_size=100)
    runner.setup()
    other_db = ViewDatabase(database_url)
    try:
        other = ProjectionRunner(app.store, other_db, [InvoiceTotals()], batch_size=100)
        runner.run_once()
        with pytest.raises(PositionMoved):
            other._commit(other.projections["test_invoice_totals"], 0, app.store.max_position(), [])
    finally:
        other_db.close()
    assert sum(r[2] for r in totals(view_db)) == 5
