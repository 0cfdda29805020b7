"""Group commit on a real store (SQLite file and PostgreSQL): commands that queue while a
batch is being saved are written in one transaction, each decided on the accounts as
the earlier ones left them, each answered on its own."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from datetime import date

import msgspec
import pytest
from eventsourcing.persistence import OperationalError

import services.ledger as ledger_module
from domain import commands as c
from domain.errors import AlreadyExists, NotFound, RuleViolation
from services.ledger import IdempotencyKeyReused


def invoice(customer_id: str, number: str, amount: int = 1_000) -> c.IssueInvoice:
    return c.IssueInvoice(customer_id=customer_id, invoice_number=number, currency="EUR", amount_minor=amount, issue_date=date(2026, 1, 1))


class Gate:
    """Wraps the real ``write_groups``: records each transaction's group count and holds
    the first transaction until released, so the commands sent meanwhile queue up."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self._real = ledger_module.write_groups
        self.before_write = lambda: None
        monkeypatch.setattr(ledger_module, "write_groups", self)

    @staticmethod
    def queued(ledger, count: int, timeout: float = 30.0) -> bool:
        """Wait until ``count`` commands are queued behind the held commit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(ledger._queue) >= count:
                return True
            time.sleep(0.01)
        return False

    def __call__(self, store, groups):
        self.sizes.append(len(groups))
        if len(self.sizes) == 1:
            self.entered.set()
            assert self.release.wait(30)
        self.before_write()
        return self._real(store, groups)


def register(app, *customers: str) -> None:
    for customer in customers:
        app.ledger.execute(c.RegisterCustomer(customer_id=customer, name=customer, currency="EUR"), actor="alice")


def versions_are_contiguous(app, customer_id: str) -> bool:
    events = list(app.store.events.get(app.ledger.account(customer_id).id))
    return [e.originator_version for e in events] == list(range(1, len(events) + 1))


def test_commands_queued_during_a_save_share_one_transaction_and_get_their_own_answers(make_app, monkeypatch):
    app = make_app()
    register(app, "C1", "C2")
    gate = Gate(monkeypatch)
    first = app.ledger.submit(invoice("C1", "INV-0"), actor="alice")
    assert gate.entered.wait(30)
    head = app.store.max_position()
    futures = {
        "ok": app.ledger.submit(invoice("C1", "INV-1"), actor="alice", idempotency_key="k1"),
        "same key again": app.ledger.submit(invoice("C1", "INV-1"), actor="alice", idempotency_key="k1"),
        "same key, other body": app.ledger.submit(invoice("C1", "INV-9"), actor="alice", idempotency_key="k1"),
        "unknown customer": app.ledger.submit(invoice("NOBODY", "INV-2"), actor="alice"),
        "rule broken": app.ledger.submit(msgspec.structs.replace(invoice("C1", "INV-5"), due_date=date(2025, 12, 1)), actor="alice"),
        "other account": app.ledger.submit(invoice("C2", "INV-3"), actor="alice"),
        "duplicate number": app.ledger.submit(invoice("C2", "INV-1"), actor="alice"),
        "after the refusal": app.ledger.submit(invoice("C1", "INV-4"), actor="alice"),
    }
    assert app.store.max_position() == head  # nothing is written while the first save is held
    gate.release.set()
    assert first.result(30).customer_id == "C1"
    ok = futures["ok"].result(30)
    again = futures["same key again"].result(30)
    assert again.replayed and again.events == ok.events
    with pytest.raises(IdempotencyKeyReused):
        futures["same key, other body"].result(30)
    with pytest.raises(NotFound):
        futures["unknown customer"].result(30)
    with pytest.raises(RuleViolation) as err:
        futures["rule broken"].result(30)
    assert (err.value.field, err.value.rule) == ("due_date", "not_before_issue_date")
    with pytest.raises(AlreadyExists) as err:
        futures["duplicate number"].result(30)
    assert err.value.field == "invoice_number"
    assert futures["other account"].result(30).customer_id == "C2"
    assert futures["after the refusal"].result(30).events[0].originator_version == 4
    assert gate.sizes[1] == 3  # ok, other account, duplicate number: one transaction; repeats and C1 after the refusal next

    c1 = app.ledger.account("C1").state
    assert sorted(c1.invoices) == ["INV-0", "INV-1", "INV-4"]
    assert sorted(app.ledger.account("C2").state.invoices) == ["INV-3"]
    assert versions_are_contiguous(app, "C1") and versions_are_contiguous(app, "C2")
    # what a fresh process reads is what the answers said
    fresh = make_app().ledger.account("C1")
    assert fresh.version == 4 and fresh.state.invoices["INV-1"].amount_minor == 1_000


def test_concurrent_threads_lose_nothing_and_share_commits(make_app, monkeypatch):
    app = make_app()
    customers = ["A", "B", "C"]
    register(app, *customers)
    gate = Gate(monkeypatch)
    threads_n, per_thread = 6, 15
    errors: list[BaseException] = []
    results: list = []
    start = threading.Barrier(threads_n)

    def work(t: int) -> None:
        start.wait()
        for n in range(per_thread):
            try:
                results.append(app.ledger.execute(invoice(customers[(t + n) % 3], f"T{t}-{n}", 100 + t), actor=f"clerk{t}", idempotency_key=f"{t}-{n}"))
            except BaseException as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    assert gate.entered.wait(30)
    gate.release.set()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(results) == threads_n * per_thread and not any(r.replayed for r in results)
    assert sum(gate.sizes) == threads_n * per_thread
    assert len(gate.sizes) < threads_n * per_thread  # fewer commits than commands
    invoices = Counter()
    for customer in customers:
        account = make_app().ledger.account(customer)
        invoices[customer] = len(account.state.invoices)
        assert versions_are_contiguous(app, customer)
        assert account.version == 1 + len(account.state.invoices)
    assert sum(invoices.values()) == threads_n * per_thread
    # each answer names the version its event was saved at, once
    refs = Counter((r.customer_id, r.events[0].originator_version) for r in results)
    assert max(refs.values()) == 1


def test_a_conflict_with_another_process_is_retried_for_that_command_only(make_app, monkeypatch):
    app, other = make_app(), make_app()
    register(app, "C1", "C2")
    app.ledger.execute(invoice("C1", "INV-0"), actor="alice")  # the committer now holds C1 at version 2
    gate = Gate(monkeypatch)
    first = app.ledger.submit(invoice("C2", "INV-0b"), actor="alice")
    assert gate.entered.wait(30)
    c1 = app.ledger.submit(invoice("C1", "INV-1"), actor="alice")
    c2 = app.ledger.submit(invoice("C2", "INV-2"), actor="alice")

    def other_process_writes_c1_first() -> None:
        if len(gate.sizes) == 2:  # the batch of c1 and c2 is decided: C1 moves under it
            assert other.ledger.account("C1").version == 2
            other.ledger.execute(invoice("C1", "INV-X"), actor="mallory")  # another process, its own committer

    gate.before_write = other_process_writes_c1_first
    gate.release.set()
    first.result(30)
    assert c2.result(30).events[0].originator_version == 3  # saved in the batch where C1 collided
    assert c1.result(30).events[0].originator_version == 4  # decided again after INV-X
    assert gate.sizes[1] == 2  # (the other process's own save is the third)
    account = make_app().ledger.account("C1")
    assert sorted(account.state.invoices) == ["INV-0", "INV-1", "INV-X"]
    assert versions_are_contiguous(app, "C1") and versions_are_contiguous(app, "C2")


def test_a_failed_transaction_answers_every_command_with_the_error_and_records_nothing(make_app, monkeypatch):
    app = make_app()
    register(app, "C1")
    head = app.store.max_position()

    class DiskFull(Exception):
        pass

    def failing(store, groups):
        raise DiskFull("no space left on device")

    monkeypatch.setattr(ledger_module, "write_groups", failing)
    with pytest.raises(DiskFull):
        app.ledger.execute(invoice("C1", "INV-1"), actor="alice")
    monkeypatch.undo()
    assert app.store.max_position() == head
    # the committer dropped its copy of the account: the next command starts from the store
    result = app.ledger.execute(invoice("C1", "INV-1"), actor="alice")
    assert result.events[0].originator_version == 2
    assert msgspec.to_builtins(app.ledger.account("C1").state.invoices["INV-1"].amount_minor) == 1_000


def test_close_finishes_queued_commands_then_refuses_new_ones(make_app):
    app = make_app()
    register(app, "C1")
    futures = [app.ledger.submit(invoice("C1", f"INV-{n}"), actor="alice") for n in range(20)]
    app.ledger.close()
    assert all(f.done() for f in futures)
    assert [f.result().events[0].originator_version for f in futures] == list(range(2, 22))
    with pytest.raises(RuntimeError, match="closed"):
        app.ledger.submit(invoice("C1", "INV-99"), actor="alice")


def test_commands_waiting_behind_refusals_on_their_account_are_never_given_up(make_app, monkeypatch):
    """A refused command stops the later commands on its account for that batch only: they
    are decided in the next one, however many times that happens (no 409 for them)."""
    app = make_app()
    register(app, "C1")
    gate = Gate(monkeypatch)
    first = app.ledger.submit(invoice("C1", "INV-0"), actor="alice")
    assert gate.entered.wait(30)
    bad = msgspec.structs.replace(invoice("C1", "BAD"), due_date=date(2025, 12, 1))
    futures = []
    for n in range(15):
        futures.append(("bad", app.ledger.submit(bad, actor="alice")))
        futures.append(("good", app.ledger.submit(invoice("C1", f"INV-{n + 1}"), actor="alice")))
    gate.release.set()
    first.result(30)
    for kind, future in futures:
        if kind == "bad":
            with pytest.raises(RuleViolation):
                future.result(30)
        else:
            future.result(30)
    account = make_app().ledger.account("C1")
    assert sorted(account.state.invoices) == sorted(f"INV-{n}" for n in range(16))
    assert [i.number for i in account.state.invoices.values()] == [f"INV-{n}" for n in range(16)]  # in arrival order
    assert versions_are_contiguous(app, "C1")


def test_a_broken_log_stream_changes_no_command_outcome(make_app, monkeypatch):
    """The committer logs every recorded, replayed and retried command; a log stream that
    fails (here: closed) must not turn a saved command into an error."""
    import io

    import structlog

    app, other = make_app(), make_app()
    register(app, "C1")
    app.ledger.execute(invoice("C1", "INV-0"), actor="alice")
    closed = io.StringIO()
    closed.close()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=closed))
    try:
        gate = Gate(monkeypatch)
        first = app.ledger.submit(invoice("C1", "INV-1"), actor="alice", idempotency_key="k1")
        assert gate.entered.wait(30)
        collides = app.ledger.submit(invoice("C1", "INV-2"), actor="alice")
        gate.before_write = lambda: len(gate.sizes) == 2 and other.ledger.execute(invoice("C1", "INV-X"), actor="bob")
        gate.release.set()
        assert first.result(30).events[0].originator_version == 3
        assert collides.result(30).events[0].originator_version == 5  # retried after INV-X, and logged as such
        assert app.ledger.execute(invoice("C1", "INV-1"), actor="alice", idempotency_key="k1").replayed
    finally:
        structlog.reset_defaults()
    assert sorted(make_app().ledger.account("C1").state.invoices) == ["INV-0", "INV-1", "INV-2", "INV-X"]


def test_a_lost_postgresql_connection_is_written_again_as_a_whole(make_app, monkeypatch):
    """PostgreSQL: a transaction that failed on its connection recorded nothing and is
    written again (as the library's recorder retries). SQLite has no connection to lose:
    its write errors reach the caller, and nothing is recorded either."""
    import psycopg

    import services.group_commit as group_commit

    app = make_app()
    register(app, "C1")
    head = app.store.max_position()
    failures = []
    if app.store.is_postgres:
        real = group_commit._write_postgres_once

        def flaky(store, groups):
            if not failures:
                failures.append("lost")
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            return real(store, groups)

        monkeypatch.setattr(group_commit, "_write_postgres_once", flaky)
        assert app.ledger.execute(invoice("C1", "INV-1"), actor="alice").events[0].originator_version == 2
        assert failures == ["lost"] and app.store.max_position() == head + 2  # the invoice and its number, once
    else:
        def broken(cursor, timeout):
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(group_commit, "_begin_immediate", broken)
        with pytest.raises(OperationalError):
            app.ledger.execute(invoice("C1", "INV-1"), actor="alice")
        assert app.store.max_position() == head
