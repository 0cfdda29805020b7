"""The relay: publishes the ledger's global ordered stream to Kafka, at least once.

It reads the store's notification log after its last position, publishes every public
event of a batch as a CloudEvent (:mod:`services.relay.cloudevents`) to the events topic,
the overdue/warning ones also to the overdue topic, waits until the broker acknowledged
**every** message of the batch (acks from all in-sync replicas, each partition's answer
checked: :mod:`services.relay.producer`) and only then stores its new position in ``relay_positions`` (a compare-and-set in the store's own
database). Consequences:

* killed at any moment, it loses nothing: the next run re-sends from the last stored
  position, and a re-sent event carries the same CloudEvents ``id`` (its ``event_id``);
* one customer's events stay in order: the key is the customer id (one partition), a
  batch is sent in stream order, one record batch per partition, by an idempotent
  producer, and the next batch starts only after the previous one was acknowledged;
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

import structlog
from kafka.partitioner.default import murmur2

from projections.db import ViewDatabase
from services.persistence import LedgerStore
from services.relay.cloudevents import HEADERS, Envelopes, source_of
from services.relay.kafka import ensure_topics
from services.relay.producer import BatchProducer, PublishFailed
from services.relay.records import encode_headers, length_prefixed
from services.relay.stream import StreamReader
from services.settings import Settings

log = structlog.get_logger("arledger.relay")

POSITIONS_DDL = "CREATE TABLE IF NOT EXISTS relay_positions (name TEXT PRIMARY KEY, position BIGINT NOT NULL, updated_at TEXT NOT NULL)"
LAG_LOG_INTERVAL = 10.0
#: Batches ``run_forever`` publishes between its looks at the clock (lag log) and ``stop``.
BATCHES_PER_TURN = 10
#: Customers whose key and partitions are remembered (murmur2 is pure Python in kafka-python).
KEY_CACHE_SIZE = 1_000_000

__all__ = ["POSITIONS_DDL", "PublishFailed", "Relay", "RelayPositionMoved"]


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
        self.envelopes = Envelopes(source_of(settings.ledger_name))
        self.overdue = settings.overdue_event_names
        self.timeout_ms = settings.kafka_timeout_ms
        self.stream = StreamReader(store.recorder)
        self.producer: BatchProducer | None = None
        self.published = 0
        #: key -> (length-prefixed key, events partition, overdue partition), for the
        #: partition counts in ``_keys_for``
        self._keys: dict[bytes, tuple[bytes, int, int]] = {}
        self._keys_for: tuple[int, int] = (0, 0)

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
            topics = [self.settings.kafka_events_topic, self.settings.kafka_overdue_topic]
            ensure_topics(self.settings, topics, timeout_ms=self.timeout_ms)
            producer = BatchProducer(
                self.settings.kafka_bootstrap.split(","), f"arledger-relay-{self.settings.ledger_name}",
                timeout_ms=self.timeout_ms, headers=encode_headers(HEADERS),
            )
            try:
                producer.connect(topics)
            except BaseException:
                producer.close()
                raise
            self.producer = producer

    def disconnect(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                producer.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is dropped either way
                log.debug("relay_producer_close_failed", exc_info=True)

    # ---- publishing ------------------------------------------------------------------

    def publish_batch(self) -> int:
        """Publish the next batch and commit its position; returns stream positions
        advanced (0 when caught up). Raises if the broker did not acknowledge it all."""
        return self.publish(max_batches=1)

    def drain(self) -> int:
        """Publish until the relay has reached the head of the stream (no retries)."""
        return self.publish()

    def publish(self, max_batches: int | None = None, stop: threading.Event | None = None) -> int:
        """Publish batch after batch until caught up (or ``max_batches`` were, or ``stop``
        is set), storing each batch's position once the broker acknowledged all of it;
        returns stream positions advanced.

        Pipelined: while the broker stores batch N, batch N+1 is read and encoded. It is
        sent only after N was acknowledged and its position stored, so there is never
        more than one batch in flight and each customer's order holds."""
        after = self.position()
        batch = self._prepare(after)
        advanced = batches = 0
        while batch is not None:
            last, messages, count, rows = batch
            assert self.producer is not None
            flight = self.producer.send(messages)
            batches += 1
            following = None
            if (max_batches is None or batches < max_batches) and not (stop is not None and stop.is_set()):
                following = self._prepare(last)
            self.producer.wait(flight)
            self._commit(after, last)
            self.published += count
            advanced += rows
            after, batch = last, following
        return advanced

    def _prepare(self, after: int) -> tuple[int, dict[tuple[str, int], list[tuple[bytes, bytes]]], int, int] | None:
        """The batch after ``after``: (its last position, messages per topic partition,
        message count, stream rows read); None when caught up."""
        rows = self.stream.after(after, self.batch_size)
        if not rows:
            return None
        self.connect()
        producer = self.producer
        assert producer is not None
        events_topic, overdue_topic = self.settings.kafka_events_topic, self.settings.kafka_overdue_topic
        counts = (producer.partition_count(events_topic), producer.partition_count(overdue_topic))
        if counts != self._keys_for or len(self._keys) > KEY_CACHE_SIZE:
            self._keys, self._keys_for = {}, counts
        keys, (events_count, overdue_count) = self._keys, counts
        events: list[list[tuple[bytes, bytes]]] = [[] for _ in range(events_count)]
        overdue: list[list[tuple[bytes, bytes]]] = [[] for _ in range(overdue_count)]
        shard, shards, overdue_names = self.shard, self.shards, self.overdue
        template_of, message = self.envelopes.template, self.envelopes.message
        sent = 0
        for position, topic, state in rows:
            template = template_of(topic)
            if template is None:
                continue  # not a public event
            key, value = message(template, position, state)
            found = keys.get(key)
            if found is None:
                found = keys[key] = (length_prefixed(key), _partition(key, events_count), _partition(key, overdue_count))
            prefixed, partition, overdue_partition = found
            if shards > 1 and partition % shards != shard:
                continue  # another shard's customer
            events[partition].append((prefixed, value))
            sent += 1
            if template[0].name in overdue_names:
                overdue[overdue_partition].append((prefixed, value))
                sent += 1
        messages = {(events_topic, p): pairs for p, pairs in enumerate(events) if pairs}
        messages.update(((overdue_topic, p), pairs) for p, pairs in enumerate(overdue) if pairs)
        return rows[-1][0], messages, sent, len(rows)

    def run_forever(self, stop: threading.Event, poll_interval: float = 0.2) -> None:
        """Follow the stream until ``stop`` is set, retrying with exponential backoff
        (with jitter, capped at ``relay_max_backoff``) while the broker is unreachable."""
        log.info("relay_started", relay=self.name, bootstrap=self.settings.kafka_bootstrap, **self.lag())
        backoff, failures, last_lag_log = 0.0, 0, 0.0
        while not stop.is_set():
            try:
                self.connect()  # topics exist from the start, even before the first event
                advanced = self.publish(max_batches=BATCHES_PER_TURN, stop=stop)
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
                self._idle(stop, poll_interval)
        self.disconnect()
        log.info("relay_stopped", relay=self.name, published=self.published)

    def _idle(self, stop: threading.Event, seconds: float) -> None:
        """Caught up: look at the stream again in ``seconds`` (or at ``stop``); the
        producer's connections are tended meanwhile."""
        deadline = time.monotonic() + seconds
        producer = self.producer
        while producer is not None and not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            producer.idle(min(left, 0.05))
        if producer is None:
            stop.wait(seconds)

    def _safe_lag(self) -> dict[str, int]:
        try:
            return self.lag()
        except Exception:  # noqa: BLE001 - the store itself may be what is failing
            return {}


def _partition(key: bytes, count: int) -> int:
    """Kafka's default key partitioning (murmur2, as the Java client and kafka-python's
    producer do), so a customer's partition is the one consumers have always seen."""
    return (murmur2(key) & 0x7FFFFFFF) % count


def _now() -> str:
    return datetime.now(UTC).isoformat()
