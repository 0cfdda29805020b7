"""Projection workers as a Kafka consumer group build the same views as one process."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest

from domain import commands as c
from domain.catalog import public_event_types
from projections.db import ViewDatabase
from projections.ar_items import ArItemsProjection
from projections.kafka_runner import KafkaProjectionWorker
from projections.runner import Projection, ProjectionRunner
from services.bootstrap import bootstrap
from services.demo import load_demo
from services.demo.bulk import record_bulk
from services.relay.relay import Relay
from services.settings import Settings
from tests.kafka_broker import demo_published

pytestmark = pytest.mark.kafka


class CountsPerCustomer(Projection):
    """Events and amounts per customer and event type: a lost or doubled event shows,
    and so does one applied out of order (``last_version`` must be the highest)."""

    event_types = public_event_types()  # what the relay publishes
    per_customer = True

    def __init__(self, table: str, crash_on_batch: int | None = None) -> None:
        self.name = table
        self.table = table
        self.crash_on_batch = crash_on_batch
        self.batches = 0

    def create(self, tx):
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (customer_id TEXT NOT NULL, event_type TEXT NOT NULL, n INTEGER NOT NULL,"
            " amount BIGINT NOT NULL, last_version INTEGER NOT NULL, PRIMARY KEY (customer_id, event_type))"
        )

    def drop(self, tx):
        tx.execute(f"DROP TABLE IF EXISTS {self.table}")

    def handle(self, tx, batch):
        self.batches += 1
        for i, env in enumerate(batch):
            if self.batches == self.crash_on_batch and i == len(batch) // 2:
                raise RuntimeError("worker killed in the middle of a batch")
            e = env.event
            tx.execute(
                f"INSERT INTO {self.table} (customer_id, event_type, n, amount, last_version) VALUES (?, ?, 1, ?, ?)"
                f" ON CONFLICT (customer_id, event_type) DO UPDATE SET n = {self.table}.n + 1, amount = {self.table}.amount + excluded.amount,"
                f" last_version = CASE WHEN excluded.last_version > {self.table}.last_version THEN excluded.last_version ELSE -1 END",
                (e.customer_id, type(e).__name__, getattr(e, "amount_minor", 0) or 0, e.originator_version),
            )


def rows(db, table):
    return sorted(db.query(f"SELECT customer_id, event_type, n, amount, last_version FROM {table}"))


def test_two_workers_in_one_group_build_the_same_views_as_a_single_process(tmp_path, kafka_broker, kafka_topics):
    settings = Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", kafka_bootstrap=kafka_broker.bootstrap, kafka_partitions=4, kafka_timeout_ms=5000, **kafka_topics)
    app = bootstrap(settings, configure_logs=False)
    record_bulk(app.store, customers=40, invoices_per_customer=12)
    for n in range(5):
        app.ledger.execute(c.ReceivePayment(customer_id=f"BULK{n:06d}", payment_id=f"P{n}", currency="EUR", amount_minor=2500, value_date=date(2026, 2, 1)), actor="t")
        app.ledger.execute(c.AllocatePayment(payment_id=f"P{n}"), actor="t")
    load_demo(app.ledger)  # credit notes, disputes, write-offs, instalments
    relay_db = ViewDatabase(settings.resolved_database_url)
    relay = Relay(app.store, relay_db, settings, batch_size=100)
    relay.setup()
    relay.drain()
    relay.disconnect()
    public = relay.published
    assert public > 40 * 13 + 5

    stop = threading.Event()
    workers, errors = [], []

    def run(worker: KafkaProjectionWorker) -> None:
        try:
            worker.run_forever(stop)
        except RuntimeError as exc:  # the injected crash: the worker dies, its partitions move
            errors.append(exc)

    dbs = [ViewDatabase(settings.resolved_database_url) for _ in range(2)]
    for i, db in enumerate(dbs):
        projections = [CountsPerCustomer("kc_group", crash_on_batch=2 if i == 1 else None), ArItemsProjection()]
        worker = KafkaProjectionWorker(db, projections, settings, group="g1", max_poll_records=40)
        worker.setup()
        workers.append(worker)
    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    check = ViewDatabase(settings.resolved_database_url)
    try:
        deadline = time.monotonic() + 60
        while (check.query("SELECT COALESCE(SUM(n), 0) FROM kc_group")[0][0] or 0) < public or threads[1].is_alive():
            assert time.monotonic() < deadline, f"group view incomplete: {check.query('SELECT SUM(n) FROM kc_group')}"
            time.sleep(0.2)
        time.sleep(1.0)  # anything doubled would show up now
        assert errors, "the second worker should have been killed mid-batch"
        assert workers[0].applied > 0 and workers[1].applied > 0  # both held partitions
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        for db in dbs:
            db.close()

    # the single-process rebuild, from the store, into a view database of its own
    single_db = ViewDatabase(f"sqlite:///{tmp_path / 'single.sqlite'}")
    runner = ProjectionRunner(app.store, single_db, [CountsPerCustomer("kc_group"), ArItemsProjection()])
    runner.setup()
    runner.catch_up()
    assert rows(check, "kc_group") == rows(single_db, "kc_group")
    assert all(r[4] > 0 for r in rows(check, "kc_group"))  # in order per customer
    # ar_movements.seq numbers the rows of one *batch* (not of one event), so it depends on
    # batch boundaries, as a rebuild with another batch size shows too: compared without it
    movement = "position, recorded_at, customer_id, currency, invoice_number, installment, kind, effective_date, amount_minor, document"
    for table, columns in (("ar_customers", "*"), ("ar_installments", "*"), ("ar_movements", movement), ("ar_disputes", "*")):
        group_rows = sorted(check.query(f"SELECT {columns} FROM {table}"), key=repr)
        single_rows = sorted(single_db.query(f"SELECT {columns} FROM {table}"), key=repr)
        assert group_rows == single_rows and group_rows, table
    single_db.close()
    for name in ("kc_group", "ar_items"):  # every partition's stored offset is its end
        assert check.query("SELECT SUM(next_offset) FROM projection_kafka_offsets WHERE projection = ?", (name,))[0][0] == public
    check.close()
    relay_db.close()
    app.close()


def test_cli_worker_builds_the_per_customer_views_and_leaves_the_others(tmp_path, kafka_broker, kafka_topics):
    import os
    import signal
    import subprocess
    import sys

    app, db, relay = demo_published(tmp_path, kafka_broker, kafka_topics)
    settings = app.settings
    env = {**os.environ, "ARLEDGER_DATABASE_URL": settings.resolved_database_url, "ARLEDGER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "ARLEDGER_KAFKA_EVENTS_TOPIC": settings.kafka_events_topic, "ARLEDGER_ENV": "production"}
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "projections", "run", "--from-kafka", "--group", "cli"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _applied_up_to(db, relay.published):
            assert time.monotonic() < deadline and proc.poll() is None, "the worker did not apply every message"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert '"kafka_projections_skipped"' in err and "audit_trail" in err  # chained in global order: not from Kafka
    single_db = ViewDatabase(f"sqlite:///{tmp_path / 'single.sqlite'}")
    runner = ProjectionRunner(app.store, single_db, [ArItemsProjection()])
    runner.setup()
    runner.catch_up()
    assert sorted(db.query("SELECT * FROM ar_installments"), key=repr) == sorted(single_db.query("SELECT * FROM ar_installments"), key=repr)
    single_db.close()
    db.close()
    app.close()


def _applied_up_to(db, messages: int) -> bool:
    try:
        return db.query("SELECT SUM(next_offset) FROM projection_kafka_offsets WHERE projection = 'ar_items'")[0][0] == messages
    except Exception:  # noqa: BLE001 - not created yet
        return False
