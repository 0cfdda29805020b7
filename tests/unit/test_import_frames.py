"""The SQLite import writer cuts a batch's JSON array into stored rows: each row must be
exactly what the store's mapper writes for that event (id as hex, version, topic, bytes)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import msgspec

from domain.registry import claim
from services.importer.sqlite_writer import rows_of_frame
from services.persistence import encode_event, encode_events, topic_of


def test_an_events_frame_gives_the_mappers_rows_byte_for_byte():
    at = datetime(2026, 1, 1, 12, 30, 0, 123456, tzinfo=timezone.utc)
    ids = {"correlation_id": uuid.uuid4(), "causation_id": uuid.uuid4()}
    events = [claim(kind, ref, "Cé\"\\ 1", recorded_at=at, actor="ä\u2028b", **ids)
              for kind, ref in (("invoice", "INV-1"), ("payment", "P/ü:1"), ("credit_note", "CN \u00a0 \U0001f600"))]
    topics = {type(e).__struct_config__.tag: topic_of(type(e)) for e in events}
    frame = msgspec.msgpack.decode(msgspec.msgpack.encode({"topics": topics, "events": encode_events(events)}))
    rows = [(r[0], r[1], r[2], bytes(r[3])) for r in rows_of_frame(frame)]
    assert rows == [(e.originator_id.hex, e.originator_version, topic_of(type(e)), encode_event(e)) for e in events]


def test_a_rows_frame_is_inserted_as_sent():
    rows = [["ab" * 16, 1, "domain.events:X", b"{}"]]
    assert rows_of_frame(rows) is rows
