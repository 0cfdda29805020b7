"""JSON Schema of the public events, generated from the msgspec Structs (never by hand)."""

from __future__ import annotations

from typing import Any, Union

import msgspec

from domain.catalog import public_event_types

SCHEMA_ID = "https://arledger.example/schemas/events.v1.json"


def dataschema_uri(name: str, version: int) -> str:
    """The CloudEvents ``dataschema`` of an event type: names the ``$defs`` entry of the
    document ``arledger schema`` prints (and ``arledger schema --event NAME``)."""
    return f"urn:arledger:schema:{name}:v{version}"


def events_json_schema() -> dict[str, Any]:
    """One document: ``$defs`` holds every event, ``oneOf`` the tagged union of them.
    ``x-arledger-events`` lists each event name with its schema version, for subscribers."""
    types = public_event_types()
    union = Union[tuple(types)]  # type: ignore[valid-type]
    schema = msgspec.json.schema(union)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "arledger events",
        "description": "Every public arledger event; the 'type' field names the event.",
        **schema,
        "x-arledger-events": {
            cls.__name__: {"version": cls.schema_version, "$ref": f"#/$defs/{cls.__name__}", "dataschema": dataschema_uri(cls.__name__, cls.schema_version)}
            for cls in types
        },
    }
    return schema


def event_json_schema(name: str) -> dict[str, Any]:
    """The schema of one event (its own document, for a CloudEvents ``dataschema``)."""
    for cls in public_event_types():
        if cls.__name__ == name:
            return msgspec.json.schema(cls)
    raise KeyError(name)
