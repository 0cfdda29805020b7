"""Projection workers as a Kafka consumer group build the same views as one process."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest

from domain import commands as c
from domain.catalog import public_event_types
from projections.db import ViewDatabase
from projections.kafka_runner import KafkaProjectionWorker
from projections.runner import Projection, ProjectionRunner
from services.bootstrap import bootstrap
from services.demo.bulk import record_bulk
from services.relay.relay import Relay
from services.settings import Settings

pytestmark = pytest.mark.kafka


class CountsPerCustomer(Projection):
    """Events and amounts per customer and event type: a lost or doubled event shows,
    and so does one applied out of order (``last_version`` must be the highest)."""

    event_types = public_event_types()  # what the relay publishes

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
                (e.customer_id, type(e).__name__, getattr(e, "amount_minor", 0), e.originator_version),
            )


def rows(db, table):
    return sorted(db.query(f"SELECT customer_id, event_type, n, amount, last_version FROM {table}"))


def test_two_workers_in_one_group_build_the_same_view_as_a_single_process(tmp_path, kafka_broker, kafka_topics):
    settings = Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", kafka_bootstrap=kafka_broker.bootstrap, kafka_partitions=4, kafka_timeout_ms=5000, **kafka_topics)
    app = bootstrap(settings, configure_logs=False)
    record_bulk(app.store, customers=40, invoices_per_customer=12)
    for n in range(5):
        app.ledger.execute(c.ReceivePayment(customer_id=f"BULK{n:06d}", payment_id=f"P{n}", currency="EUR", amount_minor=700, value_date=date(2026, 2, 1)), actor="t")
    relay_db = ViewDatabase(settings.resolved_database_url)
    relay = Relay(app.store, relay_db, settings, batch_size=100)
    relay.setup()
    relay.drain()
    relay.disconnect()
    public = relay.published
    assert public == 40 * 13 + 5

    stop = threading.Event()
    workers, errors = [], []

    def run(worker: KafkaProjectionWorker) -> None:
        try:
            worker.run_forever(stop)
        except RuntimeError as exc:  # the injected crash: the worker dies, its partitions move
            errors.append(exc)

    dbs = [ViewDatabase(settings.resolved_database_url) for _ in range(2)]
    for i, db in enumerate(dbs):
        worker = KafkaProjectionWorker(db, [CountsPerCustomer("kc_group", crash_on_batch=2 if i == 1 else None)], settings, group="g1", max_poll_records=40)
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

    single = CountsPerCustomer("kc_single")
    runner = ProjectionRunner(app.store, check, [single])
    runner.setup()
    runner.rebuild("kc_single")
    assert rows(check, "kc_group") == rows(check, "kc_single")
    assert all(r[4] > 0 for r in rows(check, "kc_group"))  # in order per customer
    offsets = check.query("SELECT SUM(next_offset) FROM projection_kafka_offsets WHERE projection = 'kc_group'")[0][0]
    assert offsets == public  # every partition's stored offset is its end
    check.close()
    relay_db.close()
    app.close()
