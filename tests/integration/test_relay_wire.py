"""What the relay puts on the wire, checked against independent decoders: the record
batches against kafka-python's own record reader, the CloudEvents envelope against
msgspec's encoding of the :class:`CloudEvent` struct, the partitions against the Java
client's murmur2 partitioning."""

from __future__ import annotations

import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch

from services.relay.cloudevents import Envelopes, from_message
from services.relay.records import encode_headers, encode_records, frame, length_prefixed, varint
from services.relay.relay import _partition

HEADERS = [("content-type", b"application/cloudevents+json")]


def decoded(batch: bytes) -> DefaultRecordBatch:
    found = DefaultRecordBatch(batch)
    assert found.validate_crc()
    return found


def test_a_record_batch_reads_back_with_kafka_pythons_reader():
    # 20,000 records: offset deltas past the two-byte varint table; values up to 40 kB
    pairs = [(f"C{i % 37}".encode(), b"v" * (i * 2 % 40_000)) for i in range(20_000)]
    now = int(time.time() * 1000)
    [(records, count)] = encode_records([(length_prefixed(k), v) for k, v in pairs], encode_headers(HEADERS))
    assert count == len(pairs)
    batch = decoded(frame(records, count, now, 42, 3, 7))
    assert (batch.magic, batch.producer_id, batch.producer_epoch, batch.base_sequence, batch.compression_type) == (2, 42, 3, 7, 0)
    records = list(batch)
    assert [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in records] == [(i, k, v, HEADERS, now) for i, (k, v) in enumerate(pairs)]


def test_a_batch_without_producer_id_and_with_an_empty_key():
    [(records, count)] = encode_records([(length_prefixed(b""), b"x")], encode_headers([]))
    batch = decoded(frame(records, count, 5))
    assert (batch.producer_id, batch.base_sequence) == (-1, -1)
    [record] = list(batch)
    assert (record.key, record.value, record.headers) == (b"", b"x", [])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=200), st.integers(min_value=200, max_value=20_000))
def test_records_are_split_into_batches_under_the_limit_in_order(sizes, limit):
    pairs = [(length_prefixed(b"k%d" % i), b"%d:" % i + b"v" * size) for i, size in enumerate(sizes)]
    batches = [frame(records, count, 1) for records, count in encode_records(pairs, encode_headers(HEADERS), limit)]
    records = []
    for batch in batches:
        found = list(decoded(batch))
        assert len(batch) <= limit or len(found) == 1  # only a record bigger than the limit goes over it, alone
        assert [r.offset for r in found] == list(range(len(found)))
        records += found
    assert [(r.key, r.value) for r in records] == [(b"k%d" % i, b"%d:" % i + b"v" * size) for i, size in enumerate(sizes)]


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_varints_are_kafkas_zigzag_encoding(value):
    from kafka.record.util import decode_varint, encode_varint

    out = bytearray()
    encode_varint(value, out.append)
    assert varint(value) == bytes(out)
    assert decode_varint(varint(value), 0)[0] == value


def test_partitions_are_the_java_clients_murmur2():
    # org.apache.kafka.clients.producer.internals.DefaultPartitioner, 1000 partitions
    expected = {b"": 681, b"a": 524, b"ab": 434, b"abc": 107, b"123456789": 566, b"\x00 ": 742}
    assert {key: _partition(key, 1000) for key in expected} == expected


def stored(customer_id: object = "C1", **extra: object) -> bytes:
    event = {"type": "PaymentReceived", "originator_id": "0b4d8a3e-8b6a-4f44-9c1e-2f1a3c4d5e6f", "originator_version": 3,
             "event_id": "6fcf2c6d-956b-56db-9043-c891df4ad06b", "recorded_at": "2026-11-23T17:11:35.692676Z", **extra}
    if customer_id is not None:
        event["customer_id"] = customer_id
    return msgspec.json.encode(event)


TOPIC = "domain.events:PaymentReceived"


def message(state: bytes, position: int = 17) -> tuple[bytes, bytes]:
    envelopes = Envelopes("/arledger/test")
    return envelopes.message(envelopes.template(TOPIC), position, state)


@settings(max_examples=200)
@given(st.text(min_size=1), st.integers(min_value=1, max_value=2**62))
def test_the_envelope_is_the_cloudevent_structs_own_encoding(customer_id, position):
    state = stored(customer_id)
    key, value = message(state, position)
    ce = from_message(value)
    assert msgspec.json.encode(ce) == value  # byte for byte what encoding the struct gives
    assert key == customer_id.encode() and ce.subject == customer_id
    assert (ce.id, ce.time, ce.ledgerposition, bytes(ce.data)) == ("6fcf2c6d-956b-56db-9043-c891df4ad06b", "2026-11-23T17:11:35.692676Z", position, state)
    assert (ce.type, ce.source, ce.dataschema) == ("arledger.PaymentReceived.v1", "/arledger/test", "urn:arledger:schema:PaymentReceived:v1")


@pytest.mark.parametrize("customer_id", [None, ""], ids=["missing", "empty"])
def test_an_event_without_customer_is_keyed_by_its_originator(customer_id):
    key, value = message(stored(customer_id))
    assert key == b"0b4d8a3e-8b6a-4f44-9c1e-2f1a3c4d5e6f" == from_message(value).subject.encode()


def test_a_customer_id_that_is_null_is_no_customer():
    key, _ = message(stored(None).replace(b'"recorded_at"', b'"customer_id":null,"recorded_at"'))
    assert key == b"0b4d8a3e-8b6a-4f44-9c1e-2f1a3c4d5e6f"


def test_a_customer_id_that_is_not_a_string_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="position 17: customer_id must be a string"):
        message(stored(12))


def test_internal_events_have_no_envelope():
    from domain.registry import CommandRecorded, ReferenceClaimed
    from services.persistence import topic_of

    envelopes = Envelopes("/arledger/test")
    assert [envelopes.template(topic_of(cls)) for cls in (ReferenceClaimed, CommandRecorded)] == [None, None]
