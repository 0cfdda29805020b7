"""deploy/subscriber_example.py, as a downstream team would run it, against the test broker."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import msgspec
import pytest

from services.schema import events_json_schema
from tests.kafka_broker import demo_published

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "subscriber_example.py"


def load_example():
    spec = importlib.util.spec_from_file_location("subscriber_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # msgspec resolves the Struct annotations through it
    spec.loader.exec_module(module)
    return module


def test_subscriber_example_validates_and_handles_each_overdue_event_once(tmp_path, kafka_broker, kafka_topics):
    # The overdue events come from the collections clock; any configured set is routed.
    app, db, relay = demo_published(tmp_path, kafka_broker, kafka_topics, kafka_overdue_events="PaymentReceived,InvoiceDisputed")
    settings = app.settings
    with db.transaction() as tx:  # a relay that lost its position re-sends everything
        tx.execute("UPDATE relay_positions SET position = 0")
    relay.drain()
    relay.disconnect()
    db.close()
    expected = sorted(
        msgspec.json.decode(n.state)["event_id"]
        for n in app.store.recorder.select_notifications(start=0, limit=10000, inclusive_of_start=False)
        if msgspec.json.decode(n.state)["type"] in ("PaymentReceived", "InvoiceDisputed")
    )
    app.close()

    example = load_example()
    handled = []
    subscriber = example.Subscriber(bootstrap=settings.kafka_bootstrap, schema=events_json_schema(), seen_db=str(tmp_path / "seen.sqlite"),
                                    topic=settings.kafka_overdue_topic, group="downstream", handle=handled.append)
    try:
        deadline = time.monotonic() + 60
        while subscriber.handled + subscriber.duplicates < 2 * len(expected):
            assert time.monotonic() < deadline, f"handled {subscriber.handled}, duplicates {subscriber.duplicates}"
            subscriber.poll_once(timeout_ms=500)
    finally:
        subscriber.close()
    assert sorted(e.id for e in handled) == expected and len(expected) == 5
    assert subscriber.duplicates == len(expected)  # every re-sent copy was recognised by its id
    assert {e.type for e in handled} == {"arledger.PaymentReceived.v1", "arledger.InvoiceDisputed.v1"}
    assert all(e.subject == e.data["customer_id"] for e in handled)
