"""The Kafka relay against a real broker (Tansu): contract, no loss, stable ids, order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import date

import jsonschema_rs
import msgspec
import pytest
import structlog
from kafka.partitioner.default import murmur2

from domain import commands as c
from projections.db import ViewDatabase
from services.bootstrap import bootstrap
from services.demo import load_demo
from services.demo.bulk import record_bulk
from services.relay.cloudevents import CONTENT_TYPE, from_message
from services.relay.relay import Relay
from services.schema import events_json_schema
from services.settings import Settings
from tests.kafka_broker import read_topic

pytestmark = pytest.mark.kafka


def stored_public(store) -> list[tuple[int, str, bytes]]:
    """(position, event_id, stored bytes) of every public event, in stream order."""
    from services.relay.cloudevents import kind_of

    out, after = [], 0
    while batch := store.recorder.select_notifications(start=after, limit=5000, inclusive_of_start=False):
        for n in batch:
            if kind_of(n.topic).public:
                out.append((n.id, msgspec.json.decode(n.state)["event_id"], n.state))
        after = batch[-1].id
    return out


def make_relay(app, **overrides) -> tuple[Relay, ViewDatabase]:
    db = ViewDatabase(app.settings.resolved_database_url)
    relay = Relay(app.store, db, app.settings, **overrides)
    relay.setup()
    return relay, db


@pytest.fixture
def kafka_app(make_app, kafka_broker, kafka_topics):
    """An app on each store backend, configured for the shared test broker."""
    return make_app(kafka_bootstrap=kafka_broker.bootstrap, ledger_name="test", kafka_partitions=3, kafka_overdue_events="PaymentReceived,InvoiceDisputed", kafka_timeout_ms=5000, **kafka_topics)


def test_every_public_event_is_published_once_as_a_cloudevent(kafka_app):
    app = kafka_app
    load_demo(app.ledger)
    stored = stored_public(app.store)
    relay, db = make_relay(app, batch_size=7)
    try:
        relay.drain()
        assert relay.lag()["lag"] == 0
        assert relay.drain() == 0  # caught up: nothing more
    finally:
        db.close()
        relay.disconnect()
    records = read_topic(app.settings.kafka_bootstrap, app.settings.kafka_events_topic, at_least=len(stored))
    assert len(records) == len(stored)  # once each, internal registry/idempotency events left out
    by_id = {event_id: (position, state) for position, event_id, state in stored}
    schema = events_json_schema()
    validator = jsonschema_rs.validator_for(schema)
    last_position_per_partition: dict[int, int] = defaultdict(int)
    for record in records:
        assert dict(record.headers) == {"content-type": CONTENT_TYPE.encode()}
        ce = from_message(record.value)
        assert msgspec.json.encode(ce) == record.value  # the CloudEvent struct's own encoding
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % 3  # DefaultPartitioner's (kafka-python's and Java's) choice
        position, state = by_id[ce.id]
        data = msgspec.json.decode(ce.data)
        assert bytes(ce.data) == state  # the data is the stored event, byte for byte
        validator.validate(data)
        name = data["type"]
        assert ce.specversion == "1.0" and ce.type == f"arledger.{name}.v1" and ce.source == "/arledger/test"
        assert ce.subject == data["customer_id"] == record.key.decode()
        assert ce.time == data["recorded_at"] and ce.ledgerposition == position
        assert schema["x-arledger-events"][name]["dataschema"] == ce.dataschema == f"urn:arledger:schema:{name}:v1"
        assert ce.ledgerposition > last_position_per_partition[record.partition]  # stream order within a partition
        last_position_per_partition[record.partition] = ce.ledgerposition
    overdue = read_topic(app.settings.kafka_bootstrap, app.settings.kafka_overdue_topic)
    routed = sorted(from_message(r.value).id for r in overdue)
    expected = sorted(eid for _, eid, state in stored if msgspec.json.decode(state)["type"] in ("PaymentReceived", "InvoiceDisputed"))
    assert routed == expected and len(expected) == 5


class CrashAfterAcks(Relay):
    """Dies like a killed process at the worst moment: every message of the batch was
    acknowledged by the broker, but the position was not stored yet."""

    def __init__(self, *args, crash_on_batch: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.crash_on_batch = crash_on_batch
        self.batches = 0

    def _commit(self, after: int, last: int) -> None:
        self.batches += 1
        if self.batches == self.crash_on_batch:
            raise SystemExit("killed between the broker's acknowledgement and the position commit")
        super()._commit(after, last)


def assert_exactly_the_stored_set_after_dedup(records, stored) -> int:
    """De-duplicating by CloudEvents id gives exactly the stored events; a re-sent message
    is identical to the first copy. Returns how many duplicates there were."""
    first: dict[str, bytes] = {}
    for record in records:
        ce = from_message(record.value)
        if ce.id in first:
            assert first[ce.id] == record.value
        first.setdefault(ce.id, record.value)
    assert sorted(first) == sorted(eid for _, eid, _ in stored)
    return len(records) - len(first)


@pytest.fixture
def sqlite_kafka_app(tmp_path, kafka_broker, kafka_topics):
    settings = Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", kafka_bootstrap=kafka_broker.bootstrap, kafka_partitions=3, kafka_timeout_ms=5000, **kafka_topics)
    app = bootstrap(settings, configure_logs=False)
    yield app
    app.close()


def test_a_relay_dying_after_the_acks_loses_nothing_and_resends_the_same_ids(sqlite_kafka_app):
    app = sqlite_kafka_app
    record_bulk(app.store, customers=20, invoices_per_customer=10)
    stored = stored_public(app.store)
    db = ViewDatabase(app.settings.resolved_database_url)
    crashing = CrashAfterAcks(app.store, db, app.settings, batch_size=50, crash_on_batch=2)
    crashing.setup()
    with pytest.raises(SystemExit):
        crashing.drain()
    crashing.disconnect()
    assert crashing.position() == 50  # batch 2 was published, its position never stored
    restarted = Relay(app.store, db, app.settings, batch_size=50)
    restarted.drain()
    restarted.disconnect()
    db.close()
    records = read_topic(app.settings.kafka_bootstrap, app.settings.kafka_events_topic, at_least=len(stored))
    assert assert_exactly_the_stored_set_after_dedup(records, stored) == 50  # batch 2, sent twice


def relay_process(app, *args: str) -> subprocess.Popen:
    s = app.settings
    env = {
        **os.environ, "ARLEDGER_DATABASE_URL": s.resolved_database_url, "ARLEDGER_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "ARLEDGER_KAFKA_EVENTS_TOPIC": s.kafka_events_topic, "ARLEDGER_KAFKA_OVERDUE_TOPIC": s.kafka_overdue_topic,
        "ARLEDGER_KAFKA_PARTITIONS": "3", "ARLEDGER_CREATE_TABLES": "false", "ARLEDGER_ENV": "production",
    }
    return subprocess.Popen([sys.executable, "-m", "services.cli", "relay", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_relay_process_killed_with_sigkill_mid_stream_loses_nothing(sqlite_kafka_app):
    app = sqlite_kafka_app
    record_bulk(app.store, customers=50, invoices_per_customer=40)  # 2,050 events
    stored = stored_public(app.store)
    proc = relay_process(app, "--batch-size", "20", "--poll-interval", "0.05")
    try:
        deadline = time.monotonic() + 60
        from kafka import KafkaConsumer

        probe = KafkaConsumer(bootstrap_servers=app.settings.kafka_bootstrap)
        while not probe.partitions_for_topic(app.settings.kafka_events_topic) or sum(probe.end_offsets(
                [__import__("kafka").TopicPartition(app.settings.kafka_events_topic, p) for p in range(3)]).values()) < 100:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "no messages"
            time.sleep(0.01)
        probe.close()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    db = ViewDatabase(app.settings.resolved_database_url)
    killed_at = Relay(app.store, db, app.settings).position()
    db.close()
    assert killed_at < app.store.max_position(), "the relay finished before it was killed; the test proves nothing"
    finish = relay_process(app, "--once")
    out, err = finish.communicate(timeout=120)
    assert finish.returncode == 0, err
    assert msgspec.json.decode(out)["lag"] == 0
    records = read_topic(app.settings.kafka_bootstrap, app.settings.kafka_events_topic, at_least=len(stored))
    assert_exactly_the_stored_set_after_dedup(records, stored)


def test_broker_down_commands_still_recorded_backlog_drains_in_order(tmp_path, private_kafka_broker, kafka_topics, capsys):
    settings = Settings.from_env(
        {}, database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", kafka_bootstrap=private_kafka_broker.bootstrap,
        kafka_partitions=2, kafka_timeout_ms=1500, relay_max_backoff=1.0, log_format="json", **kafka_topics,
    )
    app = bootstrap(settings)  # real logging: the relay_lag lines are part of the contract
    relay, db = make_relay(app, batch_size=10)
    stop = threading.Event()
    worker = threading.Thread(target=relay.run_forever, args=(stop, 0.05))
    try:
        for cid in ("A", "B", "C"):
            app.ledger.execute(c.RegisterCustomer(customer_id=cid, name=cid, currency="EUR"), actor="t")
        worker.start()
        _wait(lambda: relay.lag()["lag"] == 0, "relay caught up")
        private_kafka_broker.stop()
        for n in range(30):  # the command path does not care about the broker
            app.ledger.execute(c.IssueInvoice(customer_id="ABC"[n % 3], invoice_number=f"I{n}", currency="EUR", amount_minor=100 + n, issue_date=date(2026, 1, 5)), actor="t")
        _wait(lambda: relay.lag()["lag"] > 0 and "relay_lag" in capsys.readouterr().err, "relay_lag logged while the broker is down", timeout=20)
        private_kafka_broker.start()  # in-memory: comes back empty, the relay re-creates the topics
        _wait(lambda: relay.lag()["lag"] == 0, "backlog drained", timeout=60)
    finally:
        stop.set()
        worker.join(timeout=30)
        db.close()
        app.close()
        structlog.reset_defaults()  # the logger wrote to capsys's stream, closed after this test
    from kafka import KafkaConsumer

    probe = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    for topic in (settings.kafka_events_topic, settings.kafka_overdue_topic):  # re-created, with the configured partitions
        assert probe.partitions_for_topic(topic) == {0, 1}
    probe.close()
    # the restarted broker lost what it had (in memory): the 30 invoices are what it holds
    records = read_topic(settings.kafka_bootstrap, settings.kafka_events_topic, at_least=30)
    per_key: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for record in records:
        ce = from_message(record.value)
        if ce.type == "arledger.InvoiceIssued.v1" and ce.id not in seen:
            seen.add(ce.id)
            per_key[ce.subject].append(msgspec.json.decode(ce.data)["amount_minor"] - 100)
    # everything recorded while the broker was down arrived, once, in order per customer
    assert per_key == {cid: [n for n in range(30) if "ABC"[n % 3] == cid] for cid in "ABC"}


def _wait(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        time.sleep(0.05)


def test_two_relay_shards_publish_every_event_once_between_them(sqlite_kafka_app):
    app = sqlite_kafka_app
    record_bulk(app.store, customers=30, invoices_per_customer=5)
    stored = stored_public(app.store)
    db = ViewDatabase(app.settings.resolved_database_url)
    shards = [Relay(app.store, db, app.settings, batch_size=40, shard=(i, 2)) for i in range(2)]
    for relay in shards:
        relay.setup()
        relay.drain()
        relay.disconnect()
    db.close()
    assert all(r.published > 0 for r in shards) and sum(r.published for r in shards) == len(stored)
    records = read_topic(app.settings.kafka_bootstrap, app.settings.kafka_events_topic, at_least=len(stored))
    assert assert_exactly_the_stored_set_after_dedup(records, stored) == 0
    shard_of_partition = {r.partition % 2 for r in records}
    assert shard_of_partition == {0, 1}
