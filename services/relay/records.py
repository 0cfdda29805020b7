"""Kafka record batches (format v2, magic 2) encoded in one pass, for the relay.

Why not kafka-python's producer: its ``send`` does per-record work that the relay does
not need (a future and a lock per record, accumulator bookkeeping, size estimates,
header re-encoding, varints written one byte at a time). The relay already knows, for a
whole batch of events, each message's partition; what it needs is the batch's bytes per
partition. Here one record costs a few tuple and bytes operations: the key's length
prefix is cached per customer, the offset deltas and lengths come from a table of
pre-encoded varints, the headers are encoded once, and every record of a batch shares
one timestamp (the send time, as the producer's ``CreateTime``; the event's own time is
the CloudEvents ``time``). The CRC-32C over the batch is computed in C (``crc32c``).

Layout (Kafka's ``DefaultRecordBatch``/``DefaultRecord``)::

    RecordBatch: baseOffset int64 | length int32 | partitionLeaderEpoch int32 | magic int8
                 | crc uint32 (CRC-32C of everything after it) | attributes int16
                 | lastOffsetDelta int32 | baseTimestamp int64 | maxTimestamp int64
                 | producerId int64 | producerEpoch int16 | baseSequence int32
                 | recordCount int32 | records
    Record:      length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
                 | keyLength varint | key | valueLength varint | value | headerCount varint
                 | (headerKeyLength varint | headerKey | headerValueLength varint | headerValue)*

Varints are zig-zag encoded (Protocol Buffers style), as Kafka's ``ByteUtils.writeVarint``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from crc32c import crc32c

_HEADER = struct.Struct(">qiibIhiqqqhii")
#: The CRC covers the batch from ``attributes`` on.
_CRC_FROM = struct.calcsize(">qiibI")
_LENGTH_FROM = struct.calcsize(">qi")
HEADER_SIZE = _HEADER.size
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1


def varint(value: int) -> bytes:
    """Kafka's zig-zag varint of a (32- or 64-bit) signed integer."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


#: Pre-encoded varints of 0..16383 (one or two bytes; record lengths, offset deltas).
_VARINTS = [varint(i) for i in range(1 << 14)]
_SMALL = len(_VARINTS)


def encode_headers(headers: Iterable[tuple[str, bytes]]) -> bytes:
    """The record-header section (count and pairs), the same for every record."""
    pairs = list(headers)
    out = bytearray(varint(len(pairs)))
    for key, value in pairs:
        k = key.encode()
        out += varint(len(k)) + k + varint(len(value)) + value
    return bytes(out)


def length_prefixed(data: bytes) -> bytes:
    """``varint(len(data)) + data``: a record's key (cached by the caller per key)."""
    return varint(len(data)) + data


def encode_records(pairs: Sequence[tuple[bytes, bytes]], headers: bytes, limit: int = 1 << 62) -> list[tuple[bytes, int]]:
    """The records sections of one partition's batches: ``pairs`` are (length-prefixed
    key, value) in order, ``headers`` the :func:`encode_headers` section shared by all
    records. Returns ``(records, count)`` per batch, each batch at most ``limit`` bytes
    with its header (a single larger record goes alone).

    Written as one flat loop over local names (no method call per record): this is the
    per-message cost of the relay's send path, about a tenth of kafka-python's
    ``DefaultRecordBatchBuilder.append`` (measured 0.25 us against 2.2 us a record)."""
    table, small = _VARINTS, _SMALL
    fixed = 2 + len(headers)  # attributes and timestampDelta (b"\0\0"), headers
    room = limit - HEADER_SIZE
    batches: list[tuple[bytes, int]] = []
    parts: list[bytes] = []
    add = parts.extend
    offset = size = 0
    for key, value in pairs:
        n = len(value)
        value_length = table[n] if n < small else varint(n)
        while True:
            offset_delta = table[offset] if offset < small else varint(offset)
            body = fixed + len(offset_delta) + len(key) + len(value_length) + n
            length = table[body] if body < small else varint(body)
            if size + len(length) + body <= room or not offset:
                break
            batches.append((b"".join(parts), offset))  # full: this record starts the next batch
            parts = []
            add = parts.extend
            offset = size = 0
        add((length, b"\0\0", offset_delta, key, value_length, value, headers))
        offset += 1
        size += len(length) + body
    if offset:
        batches.append((b"".join(parts), offset))
    return batches


def frame(body: bytes, count: int, timestamp_ms: int, producer_id: int = NO_PRODUCER_ID, producer_epoch: int = NO_PRODUCER_EPOCH, base_sequence: int = NO_SEQUENCE) -> bytes:
    """The complete record batch around ``count`` encoded records: header and CRC-32C.
    Every record has the batch's timestamp (timestampDelta 0)."""
    header = bytearray(_HEADER.pack(
        0,  # baseOffset: assigned by the broker
        HEADER_SIZE - _LENGTH_FROM + len(body),
        -1,  # partitionLeaderEpoch: set by the broker
        2,  # magic
        0,  # crc, below
        0,  # attributes: no compression, CreateTime, not transactional, not control
        count - 1,  # lastOffsetDelta
        timestamp_ms,
        timestamp_ms,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    ))
    crc = crc32c(body, crc32c(memoryview(header)[_CRC_FROM:]))
    struct.pack_into(">I", header, _CRC_FROM - 4, crc)
    return bytes(header) + body
