"""The relay's batch producer against a real broker (Tansu): acknowledgements, retries of
the same bytes, idempotent sequences, batches split at the size limit, a missing topic,
a broker that is down."""

from __future__ import annotations

import time

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from services.relay.cloudevents import HEADERS
from services.relay.producer import MAX_BATCH_BYTES, BatchProducer, PublishFailed
from services.relay.records import encode_headers, length_prefixed
from tests.kafka_broker import read_topic

pytestmark = pytest.mark.kafka


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def producer(bootstrap: str, topics: list[str], cls: type[BatchProducer] = BatchProducer, **kwargs) -> BatchProducer:
    p = cls([bootstrap], "test-relay", timeout_ms=kwargs.pop("timeout_ms", 5000), headers=encode_headers(HEADERS), **kwargs)
    try:
        p.connect(topics)
    except BaseException:
        p.close()
        raise
    return p


def pairs(prefix: str, n: int, size: int = 10) -> list[tuple[bytes, bytes]]:
    return [(length_prefixed(f"{prefix}{i % 5}".encode()), f"{prefix}-{i}:".encode().ljust(size, b".")) for i in range(n)]


class LosesTheFirstAnswer(BatchProducer):
    """The broker appends the first round, but its answer is lost on the way back (as on a
    dropped connection): the producer must send the same batches again."""

    lost = False

    def _await(self, sent, queues, deadline):
        if self.lost:
            return super()._await(sent, queues, deadline)
        self.lost = True
        for future, _ in sent:
            self._net.poll(timeout_ms=5000, future=future)
            assert future.succeeded() and all(p.error_code == 0 for t in future.value.responses for p in t.partition_responses)
        return "KafkaConnectionError: answer lost (test)"


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_lost_acknowledgement_is_resent_and_only_idempotence_keeps_one_copy(kafka_broker, kafka_topics, idempotent):
    topic = kafka_topics["kafka_events_topic"]
    create_topic(kafka_broker.bootstrap, topic, 2)
    p = producer(kafka_broker.bootstrap, [topic], LosesTheFirstAnswer, idempotent=idempotent)
    try:
        assert (p.producer_id >= 0) is idempotent
        p.publish({(topic, 0): pairs("a", 30), (topic, 1): pairs("b", 20)})
        assert p.lost
        p.publish({(topic, 0): pairs("c", 5)})  # the sequences continue after the duplicate
    finally:
        p.close()
    copies = 1 if idempotent else 2  # without a producer id the broker cannot tell a retry
    records = read_topic(kafka_broker.bootstrap, topic, at_least=55 if idempotent else 105)
    by_partition = {part: [r.value.split(b":")[0].decode() for r in records if r.partition == part] for part in (0, 1)}
    assert by_partition[0] == [f"a-{i}" for i in range(30)] * copies + [f"c-{i}" for i in range(5)]
    assert by_partition[1] == [f"b-{i}" for i in range(20)] * copies
    assert all(r.headers == [("content-type", b"application/cloudevents+json")] for r in records)


def test_a_partition_over_the_batch_limit_is_sent_in_several_batches_in_order(kafka_broker, kafka_topics):
    topic = kafka_topics["kafka_events_topic"]
    create_topic(kafka_broker.bootstrap, topic, 1)
    big = pairs("big", 3 * MAX_BATCH_BYTES // 20_000, size=20_000)  # three batches' worth
    p = producer(kafka_broker.bootstrap, [topic])
    try:
        p.publish({(topic, 0): big})
        p.publish({(topic, 0): pairs("next", 3)})  # sequence numbers went on across the batches
    finally:
        p.close()
    records = read_topic(kafka_broker.bootstrap, topic, at_least=len(big) + 3)
    assert [r.value.split(b":")[0].decode() for r in records] == [f"big-{i}" for i in range(len(big))] + [f"next-{i}" for i in range(3)]
    assert [r.offset for r in records] == list(range(len(big) + 3))


def test_a_missing_topic_fails_and_is_not_created_by_the_producer(kafka_broker, kafka_topics):
    topic = kafka_topics["kafka_events_topic"]
    create_topic(kafka_broker.bootstrap, kafka_topics["kafka_overdue_topic"], 1)
    p = producer(kafka_broker.bootstrap, [kafka_topics["kafka_overdue_topic"]], timeout_ms=2000)
    try:
        with pytest.raises(PublishFailed, match="does not exist"):
            p.partition_count(topic)
    finally:
        p.close()
    with pytest.raises(PublishFailed, match="does not exist"):
        producer(kafka_broker.bootstrap, [topic], timeout_ms=2000)
    admin = KafkaAdminClient(bootstrap_servers=[kafka_broker.bootstrap])
    try:
        assert topic not in admin.list_topics()  # the relay creates it, with its partitions
    finally:
        admin.close()


def test_a_broker_that_is_down_fails_the_publish_within_the_delivery_timeout(private_kafka_broker, kafka_topics):
    topic = kafka_topics["kafka_events_topic"]
    create_topic(private_kafka_broker.bootstrap, topic, 2)
    p = producer(private_kafka_broker.bootstrap, [topic], timeout_ms=1000)
    try:
        p.publish({(topic, 0): pairs("before", 3)})
        private_kafka_broker.stop()
        started = time.monotonic()
        with pytest.raises(PublishFailed, match="did not acknowledge"):
            p.publish({(topic, 1): pairs("during", 3)})
        assert time.monotonic() - started < 2 * 1000 / 1000 + 2  # the delivery timeout, plus one backoff
    finally:
        p.close()


def test_a_restarted_broker_that_lost_the_producer_refuses_it_at_once_and_a_new_producer_goes_on(private_kafka_broker, kafka_topics):
    topic = kafka_topics["kafka_events_topic"]
    create_topic(private_kafka_broker.bootstrap, topic, 2)
    p = producer(private_kafka_broker.bootstrap, [topic], timeout_ms=2000)
    try:
        p.publish({(topic, 0): pairs("before", 3)})
        private_kafka_broker.restart()  # in memory: topics and producer ids are gone
        create_topic(private_kafka_broker.bootstrap, topic, 2)
        started = time.monotonic()
        with pytest.raises(PublishFailed, match=r"\[0\]: UnknownProducerIdError"):
            p.publish({(topic, 0): pairs("after", 3)})  # sequence 3 of a producer the broker never saw
        assert time.monotonic() - started < 2  # not retried: the relay reconnects with a new producer
    finally:
        p.close()
    fresh = producer(private_kafka_broker.bootstrap, [topic])
    try:
        fresh.publish({(topic, 0): pairs("after", 3)})
    finally:
        fresh.close()
    records = read_topic(private_kafka_broker.bootstrap, topic, at_least=3)
    assert [r.value.split(b":")[0] for r in records] == [b"after-0", b"after-1", b"after-2"]


def test_a_partition_without_a_leader_is_retried_until_the_delivery_timeout_and_named(kafka_broker, kafka_topics):
    topic = kafka_topics["kafka_events_topic"]
    create_topic(kafka_broker.bootstrap, topic, 2)
    p = producer(kafka_broker.bootstrap, [topic], timeout_ms=500)
    try:
        with pytest.raises(PublishFailed, match=rf"no leader known \(waiting: {topic}\[7\]\)"):
            p.publish({(topic, 0): pairs("ok", 2), (topic, 7): pairs("nowhere", 2)})
    finally:
        p.close()
    assert len(read_topic(kafka_broker.bootstrap, topic, at_least=2)) == 2  # the partition that exists got its records
