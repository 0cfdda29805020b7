"""A downstream subscriber of arledger's overdue events: copy this file and change
:func:`handle`.

What it shows:

* **consume** ``arledger.overdue.v1`` in a consumer group (kafka-python);
* **decode** each message: a CloudEvents 1.0 JSON document (structured mode,
  ``content-type: application/cloudevents+json``) whose ``data`` is the event; the data is
  validated against the JSON Schema that ``arledger schema > arledger-events.schema.json``
  prints (``dataschema`` names the entry, ``type`` says ``arledger.<Event>.v<version>``);
* **de-duplicate** by CloudEvents ``id``: arledger delivers at least once, and a re-sent
  event carries the same id. Seen ids live in a small SQLite table, written in the same
  transaction as your own effect when that effect is in the same database; Kafka offsets
  are committed only after, so a crash re-delivers and the table filters the repeat.

Order: a customer's events arrive in order (the key is the customer id); events of
different customers may interleave.

Run::

    arledger schema > arledger-events.schema.json
    python subscriber_example.py --bootstrap kafka:9092 --schema arledger-events.schema.json

Needs ``kafka-python``, ``msgspec`` and ``jsonschema-rs`` (``pip install kafka-python
msgspec jsonschema-rs``); nothing from arledger itself.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import jsonschema_rs
import msgspec
from kafka import KafkaConsumer


class CloudEvent(msgspec.Struct, kw_only=True):
    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    dataschema: str
    data: dict[str, Any]
    datacontenttype: str = "application/json"
    ledgerposition: int = 0


class Subscriber:
    def __init__(self, *, bootstrap: str, schema: dict[str, Any], seen_db: str, topic: str = "arledger.overdue.v1", group: str = "overdue-subscriber", handle: Callable[[CloudEvent], None] | None = None) -> None:
        self.topic = topic
        self.handle = handle or print_event
        self.validator = jsonschema_rs.validator_for(schema)
        self.known = {entry["dataschema"] for entry in schema.get("x-arledger-events", {}).values()}
        self.decoder = msgspec.json.Decoder(CloudEvent)
        self.seen = sqlite3.connect(seen_db, isolation_level=None)
        self.seen.execute("CREATE TABLE IF NOT EXISTS seen_events (id TEXT PRIMARY KEY, type TEXT NOT NULL, received_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap.split(","), group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=2000,
        )
        self.handled = 0
        self.duplicates = 0

    def process(self, value: bytes) -> bool:
        """Handle one message unless its id was seen; returns whether it was handled."""
        event = self.decoder.decode(value)
        if event.specversion != "1.0" or event.dataschema not in self.known:
            raise ValueError(f"unknown event format {event.type} ({event.dataschema}); update the schema file")
        self.validator.validate(event.data)
        self.seen.execute("BEGIN IMMEDIATE")
        try:
            if self.seen.execute("INSERT INTO seen_events (id, type) VALUES (?, ?) ON CONFLICT (id) DO NOTHING", (event.id, event.type)).rowcount == 0:
                self.seen.execute("ROLLBACK")
                self.duplicates += 1
                return False
            self.handle(event)  # your effect; put it in this transaction if it writes here
        except BaseException:
            self.seen.execute("ROLLBACK")
            raise
        self.seen.execute("COMMIT")
        self.handled += 1
        return True

    def poll_once(self, timeout_ms: int = 1000) -> int:
        handled = 0
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        for records in batches.values():
            for record in records:
                handled += self.process(record.value)
        if batches:
            self.consumer.commit()  # after the effects: at least once, de-duplicated above
        return handled

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll_once()

    def close(self) -> None:
        self.consumer.close(autocommit=False)
        self.seen.close()


def print_event(event: CloudEvent) -> None:
    data = event.data
    print(f"{event.time} {event.type} customer={event.subject} invoice={data.get('invoice_number', '-')} id={event.id}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="subscribe to arledger's overdue events")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="arledger.overdue.v1")
    parser.add_argument("--group", default="overdue-subscriber")
    parser.add_argument("--schema", required=True, help="output of `arledger schema`")
    parser.add_argument("--seen-db", default="seen_events.sqlite")
    args = parser.parse_args()
    with open(args.schema, encoding="utf-8") as f:
        schema = json.load(f)
    subscriber = Subscriber(bootstrap=args.bootstrap, schema=schema, seen_db=args.seen_db, topic=args.topic, group=args.group)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        subscriber.run(stop)
    finally:
        subscriber.close()


if __name__ == "__main__":
    main()
