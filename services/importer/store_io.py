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

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, suppress
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError, PersistenceError

from services.importer.sqlite_writer import SqliteWriter, WriterFailed
from services.persistence import LedgerStore, MsgspecMapper, encode_event, encode_events, topic_of

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
    if store.max_position() == 0:
        return found  # an empty store (a migration's first import): nothing to look up
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


#: Events per batch streamed to the writer (process or COPY): small enough that writing
#: starts early and that little is left to write once the last row is checked.
PIPE_BATCH = 4000
#: The writer process's page cache: the primary-key index stays in it; table pages
#: beyond it spill to the WAL during the load, on the writer's core, not at COMMIT.
SQLITE_PIPE_CACHE_KIB = 64 * 1024


def open_stream(store: LedgerStore) -> EventStream | PostgresCopyStream | None:
    """Where the import's events go while later rows are still being checked:

    * an SQLite file: a child process holding the SQLite write transaction (see
      :mod:`services.importer.sqlite_writer`), so inserting runs on the second core;
    * PostgreSQL: one ``COPY`` in one transaction, which the server ingests on its own
      cores while rows are still being checked;
    * an in-memory SQLite database (no other process can open it): None, the events
      are written once all rows have passed (:func:`write_events`).

    Either way nothing is committed before every row of every file has passed."""
    if store.is_postgres:
        return PostgresCopyStream(store)
    pool = store.recorder.datastore.pool
    if pool.is_sqlite_memory_mode:
        return None
    writer = SqliteWriter(pool.db_name, store.recorder.events_table_name, float(pool.lock_timeout or 5), SQLITE_PIPE_CACHE_KIB)
    return EventStream(store, writer)


class EventStream:
    """Feeds a writer process the plan's events in batches, as the planner makes them."""

    def __init__(self, store: LedgerStore, writer: SqliteWriter, on_batch: Callable[[int], None] = lambda n: None) -> None:
        self.writer, self.on_batch = writer, on_batch
        self.rows_of = _rows_maker(store, hex_ids=True)
        # The plain msgspec mapper: a batch goes as one JSON array, cut into rows by the
        # writer process (it waits for work while this process checks rows; this one
        # is the import's critical path). Otherwise as rows mapped here.
        mapper = store.mapper
        self.plain = isinstance(mapper, MsgspecMapper) and not mapper.compressor and not mapper.cipher
        self.sent = 0

    @property
    def cpu_seconds(self) -> float:
        """The writer process's CPU time, once it has ended."""
        return self.writer.cpu_seconds

    def __call__(self, events: Sequence[Any]) -> None:
        """Send every complete batch of ``events`` not sent yet."""
        while len(events) - self.sent >= PIPE_BATCH:
            self._send(events[self.sent:self.sent + PIPE_BATCH])

    def commit(self, events: Sequence[Any]) -> None:
        """Send the rest and commit; raises IntegrityError on a clash, nothing recorded."""
        self.request_commit(events)
        self.wait()

    def request_commit(self, events: Sequence[Any]) -> None:
        """Send the rest and the commit frame, without waiting for the commit."""
        self(events)
        self._send(events[self.sent:])
        self.writer.request_commit()

    def wait(self) -> None:
        """Wait for the commit; IntegrityError on a clash, PersistenceError if the writer
        failed otherwise (nothing is recorded in either case)."""
        try:
            self.writer.wait_commit()
        except WriterFailed as exc:
            if exc.status == "integrity_error":
                raise IntegrityError(str(exc)) from None
            raise PersistenceError(str(exc)) from None

    def abort(self) -> None:
        """Record nothing (a bad row): the writer rolls back."""
        self.writer.abort()

    def kill(self) -> None:
        """Record nothing, at once (an exception in this process)."""
        self.writer.kill()

    def _send(self, chunk: Sequence[Any]) -> None:
        if chunk:
            if self.plain:
                topics = {cls.__struct_config__.tag: topic_of(cls) for cls in set(map(type, chunk))}
                self.writer.send_events(topics, encode_events(chunk))
            else:
                self.writer.send(self.rows_of(chunk))
            self.sent += len(chunk)
            self.on_batch(len(chunk))


class _Abort(Exception):
    """Ends the COPY transaction with a rollback."""


class PostgresCopyStream:
    """The plan's events into one ``COPY``, batch by batch as the planner makes them, in
    the transaction that commits them only once every row has passed. The transaction
    starts at the first batch, under the recorder's table lock and with its NOTIFY (as
    :func:`write_events` does), so log followers never skip a position; other writers
    wait for the import from then on."""

    cpu_seconds = 0.0

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self.rows_of = _rows_maker(store, hex_ids=False)
        self.sent = 0
        self._stack: ExitStack | None = None
        self._copy: Any = None
        self._failed: BaseException | None = None

    def _open(self) -> None:
        from psycopg import sql

        recorder = self.store.recorder
        datastore = recorder.datastore
        copy_sql = sql.SQL("COPY {}.{} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(datastore.schema), sql.Identifier(recorder.events_table_name))
        stack = ExitStack()
        try:
            conn = stack.enter_context(datastore.get_connection())
            stack.enter_context(conn.transaction())
            cursor = stack.enter_context(conn.cursor())
            for statement in recorder.lock_table_statements:  # serialise with other writers, as the recorder does
                cursor.execute(statement)
            cursor.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(recorder.channel_name)))
            self._copy = stack.enter_context(cursor.copy(copy_sql))
            self._copy.set_types(["uuid", "int8", "text", "bytea"])
        except BaseException:
            stack.__exit__(*sys.exc_info())
            raise
        self._stack = stack

    def __call__(self, events: Sequence[Any]) -> None:
        while len(events) - self.sent >= PIPE_BATCH:
            self._send(events[self.sent:self.sent + PIPE_BATCH])

    def _send(self, chunk: Sequence[Any]) -> None:
        if not chunk or self._failed is not None:
            return
        import psycopg

        try:
            if self._stack is None:
                self._open()
            write_row = self._copy.write_row
            for row in self.rows_of(chunk):
                write_row(row)
        except (psycopg.Error, PersistenceError) as exc:
            # The server may end the COPY early (a clash with a concurrent writer):
            # roll back now, and say so at the commit, as the SQLite writer does.
            self._failed = exc
            with suppress(Exception):  # whatever happens here, nothing was committed
                self.abort()
            return
        self.sent += len(chunk)

    def request_commit(self, events: Sequence[Any]) -> None:
        """Send the rest, end the COPY and commit; IntegrityError on a clash, another
        PersistenceError if the write failed otherwise (then nothing is recorded)."""
        self(events)
        self._send(events[self.sent:])
        if self._failed is not None:
            raise _persistence_error(self._failed)
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            stack.close()
        except PersistenceError:
            raise
        except Exception as exc:
            raise _persistence_error(exc) from exc

    def wait(self) -> None:
        """The commit happened in :meth:`request_commit`."""

    def commit(self, events: Sequence[Any]) -> None:
        self.request_commit(events)

    def abort(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.__exit__(_Abort, _Abort(), None)

    kill = abort


def _persistence_error(exc: BaseException) -> PersistenceError:
    """psycopg's errors as the library's (the recorder's datastore maps them the same way)."""
    import psycopg

    if isinstance(exc, PersistenceError):
        return exc
    if isinstance(exc, psycopg.errors.IntegrityError):
        return IntegrityError(str(exc))
    return PersistenceError(f"{type(exc).__name__}: {exc}")


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
