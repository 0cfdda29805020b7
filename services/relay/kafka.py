"""Kafka clients configured once for the relay and the consumers (kafka-python).

The producer settings are what makes delivery safe and fast:

* ``acks='all'`` - a send counts only when every in-sync replica has it;
* ``enable_idempotence`` - broker-side de-duplication of producer retries, which also
  keeps a key's order with several requests in flight (falls back to one request in
  flight when the broker does not support it);
* one flush per relay batch, ``linger_ms`` high and ``batch_size`` large so records go
  out in large record batches; no compression (the broker is local, CPU is the limit).
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError, UnsupportedVersionError

from services.settings import Settings

log = structlog.get_logger("arledger.kafka")

BATCH_BYTES = 1 << 20
MAX_REQUEST_BYTES = 8 << 20


def producer_config(settings: Settings, *, timeout_ms: int = 15000) -> dict[str, object]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "client_id": f"arledger-relay-{settings.ledger_name}",
        "acks": "all",
        "linger_ms": 1000,
        "batch_size": BATCH_BYTES,
        "max_request_size": MAX_REQUEST_BYTES,
        "compression_type": None,
        "request_timeout_ms": timeout_ms,
        "max_block_ms": timeout_ms,
        "delivery_timeout_ms": 2 * timeout_ms + 50,
        "retry_backoff_ms": 100,
        "reconnect_backoff_max_ms": 1000,
    }


def make_producer(settings: Settings, *, timeout_ms: int = 15000) -> KafkaProducer:
    config = producer_config(settings, timeout_ms=timeout_ms)
    try:
        return KafkaProducer(enable_idempotence=True, **config)
    except UnsupportedVersionError:
        log.warning("kafka_idempotence_unsupported", fallback="max_in_flight_requests_per_connection=1")
        return KafkaProducer(enable_idempotence=False, max_in_flight_requests_per_connection=1, **config)


def ensure_topics(settings: Settings, topics: Iterable[str], *, timeout_ms: int = 15000) -> list[str]:
    """Create the topics that are missing, with the configured partitions and replication
    factor. Returns the names created. Existing topics are left as they are."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","), client_id="arledger-admin", request_timeout_ms=timeout_ms)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if missing:
            new = [NewTopic(t, settings.kafka_partitions, settings.kafka_replication_factor) for t in missing]
            try:
                admin.create_topics(new, timeout_ms=timeout_ms)
            except TopicAlreadyExistsError:  # another process won the race
                pass
            log.info("kafka_topics_created", topics=missing, partitions=settings.kafka_partitions, replication_factor=settings.kafka_replication_factor)
        return missing
    finally:
        admin.close()
