"""Bulk reads and writes below the library's per-aggregate save, for imports.

``Application.save`` maps, inserts and commits one save at a time; on SQLite it even
inserts row by row to learn each notification id. An import knows all its events up
front, so it writes them in **one transaction**: ``executemany`` on SQLite, ``COPY``
on PostgreSQL (after taking the same EXCLUSIVE table lock and sending the same NOTIFY
the library's recorder does, so log followers never skip a position). Rows go into the
recorder's own table, so notification ids come from the same rowid / bigserial and the
(originator_id, originator_version) primary key still refuses a concurrent writer's
clash: the whole transaction rolls back and nothing is recorded. Stored bytes come
from the store's mapper, the same msgspec JSON a command writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from services.persistence import LedgerStore, MsgspecMapper, encode_event, topic_of

T = TypeVar("T")
BATCH = 20_000
SQLITE_IMPORT_CACHE_KIB = 256 * 1024
_hex = "%032x".__mod__  # what UUID.hex returns, without the property call


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def existing_originators(store: LedgerStore, ids: Iterable[UUID]) -> set[UUID]:
    """Which of ``ids`` already have a first event in the store (one query per 500 ids)."""
    wanted = list({u.int: u for u in ids}.values())  # distinct, in order; an int hashes in C, a UUID in Python
    if not wanted:
        return set()
    recorder = store.recorder
    found: set[UUID] = set()
    if store.is_postgres:
        from psycopg import sql

        query = sql.SQL("SELECT originator_id FROM {}.{} WHERE originator_version = 1 AND originator_id = ANY(%s)").format(
            sql.Identifier(recorder.datastore.schema), sql.Identifier(recorder.events_table_name))
        with recorder.datastore.transaction(commit=False) as curs:
            for chunk in batches(wanted, 5000):
                curs.execute(query, [list(chunk)])
                found.update(row["originator_id"] for row in curs.fetchall())
        return found
    with recorder.datastore.transaction(commit=False) as cursor:
        for chunk in batches(wanted, 500):
            marks = ",".join("?" * len(chunk))
            cursor.execute(f"SELECT originator_id FROM {recorder.events_table_name} WHERE originator_version = 1 AND originator_id IN ({marks})",
                           [_hex(u.int) for u in chunk])
            found.update(UUID(row[0]) for row in cursor.fetchall())
    return found


def write_events(store: LedgerStore, events: Sequence[Any], *, on_batch: Callable[[int], None] = lambda n: None, batch_size: int = BATCH) -> None:
    """Insert ``events`` into the store's event table in one transaction, or not at all.

    Raises :class:`eventsourcing.persistence.IntegrityError` if any (originator_id,
    originator_version) is already taken (a concurrent writer); nothing is then recorded.
    """
    if store.is_postgres:
        _copy_postgres(store, events, _rows_maker(store, hex_ids=False), on_batch, batch_size)
        return
    rows_of = _rows_maker(store, hex_ids=True)
    recorder = store.recorder
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute("PRAGMA cache_size")
        cache_size = cursor.fetchone()[0]
        # The primary-key index takes random uuids: keep its pages in memory while loading.
        cursor.execute(f"PRAGMA cache_size = {-SQLITE_IMPORT_CACHE_KIB}")
        try:
            for chunk in batches(events, batch_size):
                cursor.executemany(recorder.insert_events_statement, rows_of(chunk))
                on_batch(len(chunk))
        finally:
            cursor.execute(f"PRAGMA cache_size = {int(cache_size)}")


def _rows_maker(store: LedgerStore, *, hex_ids: bool) -> Callable[[Sequence[Any]], list[tuple[Any, ...]]]:
    """Events -> the recorder's rows (originator_id, version, topic, state); SQLite keeps
    the originator id as hex text. With the plain msgspec mapper (no compression, no
    cipher) one comprehension does it all: the same bytes as
    :meth:`MsgspecMapper.encode_state`, without two calls per event."""
    mapper = store.mapper
    if not isinstance(mapper, MsgspecMapper) or mapper.compressor or mapper.cipher:
        to_row = _row_maker(mapper)
        if hex_ids:
            return lambda chunk: [(r[0].hex, r[1], r[2], r[3]) for r in map(to_row, chunk)]
        return lambda chunk: list(map(to_row, chunk))

    def rows(chunk: Sequence[Any]) -> list[tuple[Any, ...]]:
        topics = {cls: topic_of(cls) for cls in set(map(type, chunk))}
        if hex_ids:
            return [(_hex(e.originator_id.int), e.originator_version, topics[type(e)], encode_event(e)) for e in chunk]
        return [(e.originator_id, e.originator_version, topics[type(e)], encode_event(e)) for e in chunk]

    return rows


def _row_maker(mapper: Any) -> Callable[[Any], tuple[Any, ...]]:
    """The store's mapper turns an event into (originator_id, version, topic, state)."""
    if isinstance(mapper, MsgspecMapper):
        return mapper.to_row

    def to_row(event: Any) -> tuple[Any, ...]:
        s = mapper.to_stored_event(event)
        return s.originator_id, s.originator_version, s.topic, s.state

    return to_row


def _copy_postgres(store: LedgerStore, events: Sequence[Any], rows_of: Callable[[Sequence[Any]], list[tuple[Any, ...]]], on_batch: Callable[[int], None], batch_size: int) -> None:
    import psycopg
    from psycopg import sql

    recorder = store.recorder
    datastore = recorder.datastore
    copy_sql = sql.SQL("COPY {}.{} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(datastore.schema), sql.Identifier(recorder.events_table_name))
    try:
        with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            for statement in recorder.lock_table_statements:  # serialise with other writers, as the recorder does
                curs.execute(statement)
            curs.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(recorder.channel_name)))
            with curs.copy(copy_sql) as copy:
                copy.set_types(["uuid", "int8", "text", "bytea"])
                for chunk in batches(events, batch_size):
                    write_row = copy.write_row
                    for row in rows_of(chunk):
                        write_row(row)
                    on_batch(len(chunk))
    except psycopg.errors.IntegrityError as exc:
        raise IntegrityError(exc) from exc


def forget_cached(store: LedgerStore, aggregate_ids: Iterable[UUID]) -> None:
    """Drop accounts the import changed from this process's aggregate cache, so the next
    command loads them from the store (other processes fast-forward from the store)."""
    cache = store.repository.cache
    if cache is None:
        return
    for aggregate_id in aggregate_ids:
        try:
            cache.get(aggregate_id, evict=True)
        except KeyError:
            pass
