"""Write many events in one store call, idempotently.

Time-caused facts are aggregates of one event at version 1 whose id is derived from
the fact, so a fact recorded before is refused by the store's unique key. One call
inserts a whole tick (one transaction); if the store refuses it (some facts were already
recorded - a tick that crashed after writing its events but before moving its cursors),
the batch is split in halves until the duplicates are isolated and skipped.

On SQLite the library's application recorder inserts row by row (to return each
notification id); facts need no ids back, so they go in with one ``executemany`` in
the recorder's own transaction - same table, same statement, rowids still the
notification ids. PostgreSQL's recorder already batches (pipeline + table lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from services.persistence import LedgerStore, encode_event, topic_of

SQLITE_CACHE_KIB = 256 * 1024


def record_facts(store: LedgerStore, events: Sequence[Any]) -> list[StoredEvent]:
    """Insert ``events`` (version-1 fact aggregates); returns those that were new."""
    mapper = store.mapper
    if mapper.compressor is None and mapper.cipher is None:  # the mapper would only encode: do it without the wrapper
        return _insert(store, [StoredEvent(e.originator_id, e.originator_version, topic_of(type(e)), encode_event(e)) for e in events])
    return _insert(store, [mapper.to_stored_event(e) for e in events])


def _insert(store: LedgerStore, stored: list[StoredEvent]) -> list[StoredEvent]:
    if not stored:
        return []
    try:
        _bulk(store.recorder, stored)
        return stored
    except IntegrityError:
        if len(stored) == 1:
            return []
        middle = len(stored) // 2
        return _insert(store, stored[:middle]) + _insert(store, stored[middle:])


def _bulk(recorder: Any, stored: list[StoredEvent]) -> None:
    if isinstance(recorder, SQLiteApplicationRecorder):
        rows = [(s.originator_id.hex, s.originator_version, s.topic, s.state) for s in stored]
        with recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")  # random-keyed inserts into a large index
            cursor.executemany(recorder.insert_events_statement, rows)
        return
    recorder.insert_events(stored)
