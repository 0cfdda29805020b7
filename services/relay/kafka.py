"""Kafka topics for the relay and the consumers (kafka-python's admin client).

The relay's producer is :mod:`services.relay.producer`; the consumers are configured in
``projections/kafka_runner.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.settings import Settings

log = structlog.get_logger("arledger.kafka")


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
