"""Scale-out projections: workers in a Kafka consumer group instead of one store reader.

``arledger projections run --from-kafka --group G`` consumes the relay's events topic
(one CloudEvent per event, key = customer id) in consumer group ``G``. Kafka shares the
partitions among the group's workers; each worker applies its partitions' events to the
same :class:`~projections.runner.Projection` classes as the single-process runner.

Exactly once, without Kafka's offset commits: for every projection and partition the
*next offset to apply* lives in ``projection_kafka_offsets``, in the view database, and
is advanced in the **same transaction** as the view rows, with a compare-and-set on the
value the worker last saw. So

* a killed worker's open transaction rolls back; whoever gets the partition next seeks
  to the stored offset (on assignment, through a rebalance listener): nothing lost;
* a worker that lost a partition in a rebalance but still finishes a batch cannot apply
  it twice: the new owner's compare-and-set (or its own) fails, rolls back, re-seeks.

Views built this way equal a single-process rebuild for projections whose rows depend
only on each customer's own *public* events in order (the key keeps a customer on one
partition). A projection says so with ``per_customer = True``; the others (the audit
trail chains every event, internal ones included, in the global order) stay on the store
reader (``projections run`` without ``--from-kafka``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import structlog
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

from domain.catalog import event_type_named
from projections.db import ViewDatabase
from projections.runner import Envelope, Projection
from services.persistence import decode_event, topic_of
from services.relay.cloudevents import from_message
from services.settings import Settings

log = structlog.get_logger("arledger.projections.kafka")

OFFSETS_DDL = (
    "CREATE TABLE IF NOT EXISTS projection_kafka_offsets ("
    " projection TEXT NOT NULL, topic TEXT NOT NULL, kafka_partition INTEGER NOT NULL,"
    " next_offset BIGINT NOT NULL, updated_at TEXT NOT NULL,"
    " PRIMARY KEY (projection, topic, kafka_partition))"
)


def per_customer(projection: Projection) -> bool:
    """Whether a projection may be built from the partitioned Kafka stream."""
    return bool(getattr(projection, "per_customer", False))


class OffsetsMoved(RuntimeError):
    """Another worker applied this partition meanwhile; the batch was rolled back."""


@lru_cache(maxsize=None)
def _stored_topic(event_type: str) -> str:
    return topic_of(event_type_named(event_type))


def consumer_config(settings: Settings, group: str, max_poll_records: int = 2000) -> dict[str, Any]:
    """Short group timeouts: a dead worker's partitions move on after ~6 s."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "group_id": group,
        "client_id": f"arledger-projections-{group}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        "max_poll_interval_ms": 60000,
        "max_poll_records": max_poll_records,
    }


class KafkaProjectionWorker:
    def __init__(self, db: ViewDatabase, projections: Iterable[Projection], settings: Settings, group: str, *, max_poll_records: int = 2000) -> None:
        self.db = db
        self.projections = list(projections)
        self.settings = settings
        self.group = group
        self.topic = settings.kafka_events_topic
        self.consumer: KafkaConsumer | None = None
        #: (projection name, partition) -> next offset this worker believes is stored
        self.expected: dict[tuple[str, int], int] = {}
        self.applied = 0
        self.max_poll_records = max_poll_records

    def setup(self) -> None:
        with self.db.transaction() as tx:
            tx.execute(OFFSETS_DDL)
            for projection in self.projections:
                projection.create(tx)
                for ddl in projection.indexes:  # secondary indexes (the store runner builds them after a rebuild)
                    tx.execute(ddl)

    # ---- partitions ------------------------------------------------------------------

    def _load_offsets(self, partitions: Sequence[int]) -> None:
        """Read (creating at 0) the stored offsets of these partitions and seek to them."""
        with self.db.transaction() as tx:
            for projection in self.projections:
                for p in partitions:
                    tx.execute(
                        "INSERT INTO projection_kafka_offsets (projection, topic, kafka_partition, next_offset, updated_at) VALUES (?, ?, ?, 0, ?)"
                        " ON CONFLICT (projection, topic, kafka_partition) DO NOTHING",
                        (projection.name, self.topic, p, _now()),
                    )
        for p in partitions:
            for projection in self.projections:
                rows = self.db.query(
                    "SELECT next_offset FROM projection_kafka_offsets WHERE projection = ? AND topic = ? AND kafka_partition = ?",
                    (projection.name, self.topic, p),
                )
                self.expected[(projection.name, p)] = int(rows[0][0])
            start = min((self.expected[(proj.name, p)] for proj in self.projections), default=0)
            assert self.consumer is not None
            self.consumer.seek(TopicPartition(self.topic, p), start)
        log.info("kafka_partitions_assigned", group=self.group, partitions=list(partitions))

    def _forget(self, partitions: Sequence[int]) -> None:
        for key in [k for k in self.expected if k[1] in partitions]:
            del self.expected[key]
        log.info("kafka_partitions_revoked", group=self.group, partitions=list(partitions))

    # ---- applying --------------------------------------------------------------------

    def apply(self, partition: int, records: Sequence[Any]) -> int:
        """Apply one partition's records to every projection and advance its offsets,
        all in one transaction. Returns events applied (summed over projections)."""
        envelopes = []
        for record in records:
            ce = from_message(record.value)
            stored_topic = _stored_topic(ce.event_type)
            state = bytes(ce.data)
            envelopes.append((record.offset, Envelope(ce.ledgerposition, decode_event(stored_topic, state), stored_topic, state)))
        next_offset = records[-1].offset + 1
        applied = 0
        with self.db.transaction() as tx:
            for projection in self.projections:
                expected = self.expected[(projection.name, partition)]
                if next_offset <= expected:
                    continue
                tx.execute(
                    "UPDATE projection_kafka_offsets SET next_offset = ?, updated_at = ? WHERE projection = ? AND topic = ? AND kafka_partition = ? AND next_offset = ?",
                    (next_offset, _now(), projection.name, self.topic, partition, expected),
                )
                if tx.rowcount != 1:
                    raise OffsetsMoved(f"{projection.name}: partition {partition} moved past offset {expected}")
                batch = [env for offset, env in envelopes if offset >= expected and projection.wants(env.topic)]
                if batch:
                    projection.handle(tx, batch)
                applied += len(batch)
        for projection in self.projections:
            self.expected[(projection.name, partition)] = max(next_offset, self.expected[(projection.name, partition)])
        return applied

    def poll_once(self, timeout_ms: int = 500) -> int:
        assert self.consumer is not None
        applied = 0
        for tp, records in self.consumer.poll(timeout_ms=timeout_ms).items():
            if not records or all((p.name, tp.partition) not in self.expected for p in self.projections):
                continue
            try:
                applied += self.apply(tp.partition, records)
            except OffsetsMoved as exc:
                log.warning("kafka_offsets_moved", group=self.group, error=str(exc))
                self._load_offsets([tp.partition])
        self.applied += applied
        return applied

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                worker._forget([tp.partition for tp in revoked])

            def on_partitions_assigned(self, assigned: Any) -> None:
                worker._load_offsets([tp.partition for tp in assigned])

        self.consumer = KafkaConsumer(**consumer_config(self.settings, self.group, self.max_poll_records))
        self.consumer.subscribe([self.topic], listener=Listener())

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
            self.consumer = None

    def run_forever(self, stop: threading.Event) -> None:
        log.info("kafka_projections_started", group=self.group, topic=self.topic, projections=[p.name for p in self.projections])
        self.start()
        try:
            while not stop.is_set():
                self.poll_once()
        finally:
            self.stop()
        log.info("kafka_projections_stopped", group=self.group, applied=self.applied)


def _now() -> str:
    return datetime.now(UTC).isoformat()
