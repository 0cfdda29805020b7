"""The Kafka message format: CloudEvents 1.0 in **structured** mode.

Each Kafka message value is one JSON CloudEvent (header ``content-type:
application/cloudevents+json``, the Kafka protocol binding's structured mode); the key is
the customer id. Structured rather than binary mode because the message is then one
self-describing JSON document for subscribers, and because kafka-python encodes record
headers in pure Python: eight ``ce_*`` headers per record cost more than the whole rest of
the send path (measured: per-record append 17 us with 8 headers, 12 us with none).

Attributes:

* ``id`` - the event's ``event_id``: stable, so a re-sent message carries the same id and
  subscribers de-duplicate by it;
* ``type`` - ``arledger.<EventClass>.v<schema version>``;
* ``source`` - ``/arledger/<ledger name>`` (``ARLEDGER_LEDGER_NAME``);
* ``subject`` - the customer id (also the Kafka key);
* ``time`` - when the ledger recorded the event (``recorded_at``);
* ``dataschema`` - ``urn:arledger:schema:<EventClass>:v<version>``, listed in the
  ``x-arledger-events`` map of ``arledger schema``;
* ``ledgerposition`` - extension: the event's position in the ledger's global stream;
* ``data`` - the event exactly as stored (its msgspec JSON), valid against
  ``arledger schema --event <EventClass>``.

Kafka record headers: ``content-type`` only. The record timestamp is the relay's send time
(``CreateTime``); the event's own time is ``time``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec

from services.persistence import class_of
from services.schema import dataschema_uri

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
HEADERS = [("content-type", CONTENT_TYPE.encode())]


class CloudEvent(msgspec.Struct, kw_only=True):
    """One structured-mode CloudEvent; ``data`` stays raw JSON bytes until asked for."""

    specversion: str = SPECVERSION
    id: str
    source: str
    type: str
    subject: str
    time: str
    datacontenttype: str = "application/json"
    dataschema: str
    ledgerposition: int
    data: msgspec.Raw

    @property
    def event_type(self) -> str:
        """The event class name (``InvoiceFellOverdue`` of ``arledger.InvoiceFellOverdue.v1``)."""
        return self.type.split(".")[1]


class _Head(msgspec.Struct):
    """The few fields of a stored event that the envelope needs, as their raw JSON tokens
    (the rest is skipped): they are spliced into the envelope as they are stored."""

    originator_id: msgspec.Raw
    event_id: msgspec.Raw
    recorded_at: msgspec.Raw
    customer_id: msgspec.Raw = msgspec.Raw()


class EventKind(msgspec.Struct, frozen=True):
    """What the relay knows about one stored topic, computed once per topic."""

    name: str
    public: bool
    type: str
    dataschema: str


_head_decoder = msgspec.json.Decoder(_Head)
_json = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(CloudEvent)
_NO_SUBJECT = (b"", b'""', b"null")


@lru_cache(maxsize=None)
def kind_of(topic: str) -> EventKind:
    cls: Any = class_of(topic)
    version = getattr(cls, "schema_version", 1)
    return EventKind(
        name=cls.__name__,
        public=bool(getattr(cls, "public", True)),
        type=f"arledger.{cls.__name__}.v{version}",
        dataschema=dataschema_uri(cls.__name__, version),
    )


def source_of(ledger_name: str) -> str:
    return f"/arledger/{ledger_name}"


class Envelopes:
    """Builds the Kafka messages of one ledger (one ``source``).

    The value is written as bytes around the stored event rather than by encoding a
    :class:`CloudEvent`: the constant parts of each event type are encoded once, and the
    event's own ``id``, ``time`` and ``subject`` are the raw JSON tokens of the stored
    event (msgspec wrote them, so they are exactly what encoding them again would give).
    The result is byte for byte ``msgspec.json.encode(CloudEvent(...))`` (the tests
    check it by decoding and re-encoding), at about a third of the cost.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._templates: dict[str, tuple[EventKind, bytes, bytes] | None] = {}

    def template(self, topic: str) -> tuple[EventKind, bytes, bytes] | None:
        """(kind, bytes between id and subject, bytes between time and position) of a
        stored topic; None for events that are not published."""
        try:
            return self._templates[topic]
        except KeyError:
            pass
        kind = kind_of(topic)
        found = None
        if kind.public:
            found = (
                kind,
                b',"source":' + _json.encode(self.source) + b',"type":' + _json.encode(kind.type) + b',"subject":',
                b',"datacontenttype":"application/json","dataschema":' + _json.encode(kind.dataschema) + b',"ledgerposition":',
            )
        self._templates[topic] = found
        return found

    def message(self, template: tuple[EventKind, bytes, bytes], position: int, state: bytes) -> tuple[bytes, bytes]:
        """(key, value) of the message for one stored event: the key is the subject, the
        customer id (the originator id for events without one)."""
        head = _head_decoder.decode(state)
        subject = bytes(head.customer_id)
        if subject in _NO_SUBJECT:
            subject = bytes(head.originator_id)
        if subject[:1] != b'"':
            raise ValueError(f"stored event at position {position}: customer_id must be a string, got {subject!r}")
        key = subject[1:-1]
        if b"\\" in key:  # an escaped character: the key is the decoded string
            key = msgspec.json.decode(subject).encode()
        _, middle, tail = template
        return key, b'{"specversion":"1.0","id":%b%b%b,"time":%b%b%d,"data":%b}' % (head.event_id, middle, subject, head.recorded_at, tail, position, state)


def from_message(value: bytes) -> CloudEvent:
    return _envelope_decoder.decode(value)
