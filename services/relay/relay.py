"""The relay: publishes the ledger's global ordered stream to Kafka, at least once.

It reads the store's notification log after its last position, publishes every public
event of a batch as a CloudEvent (:mod:`services.relay.cloudevents`) to the events topic,
the overdue/warning ones also to the overdue topic, waits until the broker acknowledged
**every** message of the batch (``acks='all'``, flush, each future checked) and only then
stores its new position in ``relay_positions`` (a compare-and-set in the store's own
database). Consequences:

* killed at any moment, it loses nothing: the next run re-sends from the last stored
  position, and a re-sent event carries the same CloudEvents ``id`` (its ``event_id``);
* one customer's events stay in order: the key is the customer id (one partition), a
  batch is sent in stream order by an idempotent producer, and the next batch starts
  only after the previous one was acknowledged;
* it scales out by customer: ``shard=(i, n)`` publishes only the customers whose
  events-topic partition is ``i`` modulo ``n``, with a position of its own, so ``n``
  relay processes share the work and each customer's order is still kept by one of them;
* the relay is independent of the command path: while the broker is down commands are
  recorded as usual, the relay retries with exponential backoff, logs ``relay_lag``, and
  drains the backlog in order when the broker is back (re-creating missing topics).
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime
from collections.abc import Callable
from typing import Any

import structlog
from kafka.errors import KafkaTimeoutError
from kafka.partitioner.default import murmur2

from projections.db import ViewDatabase
from services.persistence import LedgerStore
from services.relay.cloudevents import HEADERS, envelope, kind_of, source_of, subject_of
from services.relay.kafka import ensure_topics, make_producer
from services.settings import Settings

log = structlog.get_logger("arledger.relay")

POSITIONS_DDL = "CREATE TABLE IF NOT EXISTS relay_positions (name TEXT PRIMARY KEY, position BIGINT NOT NULL, updated_at TEXT NOT NULL)"
LAG_LOG_INTERVAL = 10.0


class PublishFailed(RuntimeError):
    """The broker did not acknowledge every message of a batch; nothing was committed."""


class RelayPositionMoved(RuntimeError):
    """Another relay with the same name advanced the position; this one backs off."""


class Relay:
    def __init__(
        self, store: LedgerStore, db: ViewDatabase, settings: Settings, *, name: str = "kafka", batch_size: int | None = None, shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.store = store
        self.db = db
        self.settings = settings
        self.shard, self.shards = shard
        if not 0 <= self.shard < self.shards:
            raise ValueError(f"shard {self.shard} of {self.shards}")
        #: Each shard stores its own position.
        self.name = name if self.shards == 1 else f"{name}-{self.shard}-of-{self.shards}"
        self.batch_size = batch_size or settings.relay_batch_size
        self.source = source_of(settings.ledger_name)
        self.overdue = settings.overdue_event_names
        self.timeout_ms = settings.kafka_timeout_ms
        self.producer: Any = None
        self.published = 0
        self._partition_cache: dict[tuple[str, int], dict[bytes, int]] = {}

    # ---- position --------------------------------------------------------------------

    def setup(self) -> None:
        with self.db.transaction() as tx:
            tx.execute(POSITIONS_DDL)
            tx.execute("INSERT INTO relay_positions (name, position, updated_at) VALUES (?, 0, ?) ON CONFLICT (name) DO NOTHING", (self.name, _now()))

    def position(self) -> int:
        rows = self.db.query("SELECT position FROM relay_positions WHERE name = ?", (self.name,))
        return int(rows[0][0]) if rows else 0

    def lag(self) -> dict[str, int]:
        head, position = self.store.max_position(), self.position()
        return {"position": position, "head": head, "lag": max(head - position, 0)}

    def _commit(self, after: int, last: int) -> None:
        with self.db.transaction() as tx:
            tx.execute("UPDATE relay_positions SET position = ?, updated_at = ? WHERE name = ? AND position = ?", (last, _now(), self.name, after))
            if tx.rowcount != 1:
                raise RelayPositionMoved(f"relay {self.name!r}: position moved from {after}; is another relay running?")

    # ---- broker ----------------------------------------------------------------------

    def connect(self) -> None:
        """Create missing topics, then the producer (again after every failure: a broker
        that came back may have lost its topics and its producer ids)."""
        if self.producer is None:
            ensure_topics(self.settings, [self.settings.kafka_events_topic, self.settings.kafka_overdue_topic], timeout_ms=self.timeout_ms)
            self.producer = make_producer(self.settings, timeout_ms=self.timeout_ms)

    def disconnect(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is dropped either way
                log.debug("relay_producer_close_failed", exc_info=True)

    # ---- publishing ------------------------------------------------------------------

    def publish_batch(self) -> int:
        """Publish the next batch and commit its position; returns stream positions
        advanced (0 when caught up). Raises if the broker did not acknowledge it all."""
        after = self.position()
        notifications = self.store.recorder.select_notifications(start=after, limit=self.batch_size, inclusive_of_start=False)
        if not notifications:
            return 0
        self.connect()
        send = self.producer.send
        events_topic, overdue_topic, overdue, source = self.settings.kafka_events_topic, self.settings.kafka_overdue_topic, self.overdue, self.source
        events_partition, overdue_partition = self._partitioner(events_topic), self._partitioner(overdue_topic)
        futures = []
        shard, shards = self.shard, self.shards
        for n in notifications:
            kind = kind_of(n.topic)
            if not kind.public:
                continue
            subject, head = subject_of(n.state)
            key = subject.encode()
            partition = events_partition(key)
            if shards > 1 and partition % shards != shard:
                continue  # another shard's customer
            value = envelope(kind, source, n.id, subject, head, n.state)
            futures.append(send(events_topic, key=key, value=value, headers=HEADERS, partition=partition))
            if kind.name in overdue:
                futures.append(send(overdue_topic, key=key, value=value, headers=HEADERS, partition=overdue_partition(key)))
        self._await_acks(futures)
        self._commit(after, notifications[-1].id)
        self.published += len(futures)
        return len(notifications)

    def _partitioner(self, topic: str) -> Callable[[bytes], int]:
        """Kafka's default key partitioning (murmur2, as the Java client does), memoised
        per customer: kafka-python computes murmur2 in pure Python on every send."""
        count = len(self.producer.partitions_for(topic))
        cache = self._partition_cache.setdefault((topic, count), {})
        if len(cache) > 1_000_000:
            cache.clear()

        def partition(key: bytes) -> int:
            found = cache.get(key)
            if found is None:
                found = cache[key] = (murmur2(key) & 0x7FFFFFFF) % count
            return found

        return partition

    def _await_acks(self, futures: list[Any]) -> None:
        try:
            self.producer.flush(timeout=self.timeout_ms * 2.5 / 1000)
        except KafkaTimeoutError as exc:
            raise PublishFailed(f"broker did not acknowledge the batch in time: {exc}") from exc
        for future in futures:
            if not future.is_done:
                raise PublishFailed("a message of the batch is still unacknowledged")
            if future.failed():
                raise PublishFailed(f"broker refused a message: {future.exception!r}") from future.exception

    def drain(self) -> int:
        """Publish until the relay has reached the head of the stream (no retries)."""
        total = 0
        while advanced := self.publish_batch():
            total += advanced
        return total

    def run_forever(self, stop: threading.Event, poll_interval: float = 0.2) -> None:
        """Follow the stream until ``stop`` is set, retrying with exponential backoff
        (with jitter, capped at ``relay_max_backoff``) while the broker is unreachable."""
        log.info("relay_started", relay=self.name, bootstrap=self.settings.kafka_bootstrap, **self.lag())
        backoff, failures, last_lag_log = 0.0, 0, 0.0
        while not stop.is_set():
            try:
                self.connect()  # topics exist from the start, even before the first event
                advanced = self.publish_batch()
            except Exception as exc:  # noqa: BLE001 - any failure: drop the connection, back off, retry
                failures += 1
                self.disconnect()
                backoff = min(self.settings.relay_max_backoff, 0.2 * 2 ** min(failures - 1, 10))
                wait = backoff * random.uniform(0.8, 1.2)
                log.warning("relay_lag", relay=self.name, error=f"{type(exc).__name__}: {exc}", failures=failures, retry_in=round(wait, 2), **self._safe_lag())
                stop.wait(wait)
                continue
            if failures:
                log.info("relay_recovered", relay=self.name, after_failures=failures, **self._safe_lag())
                failures = 0
            now = time.monotonic()
            if now - last_lag_log >= LAG_LOG_INTERVAL:
                log.info("relay_lag", relay=self.name, published=self.published, **self._safe_lag())
                last_lag_log = now
            if not advanced:
                stop.wait(poll_interval)
        self.disconnect()
        log.info("relay_stopped", relay=self.name, published=self.published)

    def _safe_lag(self) -> dict[str, int]:
        try:
            return self.lag()
        except Exception:  # noqa: BLE001 - the store itself may be what is failing
            return {}


def _now() -> str:
    return datetime.now(UTC).isoformat()
