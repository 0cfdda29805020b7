"""Group commit: several commands' events in one durable transaction, each in its own savepoint.

A command is durable when it is answered, so every save ends in a synchronous commit:
an fsync of SQLite's write-ahead log (``synchronous=FULL``) or a WAL flush on
PostgreSQL. That flush costs 1-6 ms on the disks we run on, far more than deciding a
command (~0.2 ms), so one commit per command caps a store at a few hundred commands/s.
:func:`write_groups` writes the events of many commands in **one** transaction (one
flush) while keeping each command atomic on its own: each group runs inside a
SAVEPOINT, and a group that collides on the (originator_id, originator_version) key -
a concurrent writer, a duplicate reference, a repeated idempotency key - is rolled back
alone and reported, the others still commit.

Rows go into the recorder's own table, like the library's ``insert_events`` and the
importer: notification ids come from the same rowid / bigserial, and on PostgreSQL the
same EXCLUSIVE table lock and NOTIFY keep followers from skipping a position.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.persistence import OperationalError, PersistenceError, StoredEvent

from services.persistence import LedgerStore, MsgspecMapper

Row = tuple[Any, int, str, bytes]  # (originator_id, originator_version, topic, state)
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


class Outcome(Enum):
    SAVED = "saved"
    CONFLICT = "conflict"  # this group's key collided; rolled back alone
    SKIPPED = "skipped"  # not written: an earlier group on the same aggregate failed


class Group:
    """One command's events, as store rows, and the aggregate it was decided on (its
    later groups depend on it: they are skipped when it fails)."""

    __slots__ = ("aggregate_id", "rows")

    def __init__(self, aggregate_id: UUID, rows: list[Row]) -> None:
        self.aggregate_id = aggregate_id
        self.rows = rows


def row_maker(store: LedgerStore) -> Callable[[Any], Row]:
    """The store's mapper turns an event into (originator_id, version, topic, state):
    the same bytes ``Application.save`` would store (compression and cipher honoured)."""
    mapper = store.mapper
    if isinstance(mapper, MsgspecMapper):
        return mapper.to_row

    def to_row(event: Any) -> Row:
        s = mapper.to_stored_event(event)
        return s.originator_id, s.originator_version, s.topic, s.state

    return to_row


def write_groups(store: LedgerStore, groups: Sequence[Group]) -> list[Outcome]:
    """Write ``groups`` in one transaction; the outcome of each, in order.

    A group after a failed one on the same aggregate is skipped (its versions follow
    events that were rolled back). Raises the store's error if the transaction itself
    fails (lock timeout, disk full, lost connection): then nothing was recorded."""
    if not groups:
        return []
    if store.is_postgres:
        return _write_postgres(store, groups)
    return _write_sqlite(store, groups)


def _write_sqlite(store: LedgerStore, groups: Sequence[Group]) -> list[Outcome]:
    recorder = store.recorder
    datastore = recorder.datastore
    insert = recorder.insert_events_statement
    outcomes: list[Outcome] = []
    failed: set[UUID] = set()
    with datastore.get_connection(commit=True) as conn:
        cursor = conn.cursor()
        try:
            _begin_immediate(cursor, float(datastore.pool.lock_timeout or 5))
            try:
                for group in groups:
                    if group.aggregate_id in failed:
                        outcomes.append(Outcome.SKIPPED)
                        continue
                    rows = [(r[0].hex if isinstance(r[0], UUID) else r[0], r[1], r[2], r[3]) for r in group.rows]
                    cursor.execute("SAVEPOINT command")
                    try:
                        cursor.executemany(insert, rows)
                    except sqlite3.IntegrityError:
                        cursor.execute("ROLLBACK TO command")
                        cursor.execute("RELEASE command")
                        failed.add(group.aggregate_id)
                        outcomes.append(Outcome.CONFLICT)
                        continue
                    cursor.execute("RELEASE command")
                    outcomes.append(Outcome.SAVED)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        except sqlite3.OperationalError as exc:
            raise OperationalError(exc) from exc
        except sqlite3.Error as exc:
            raise PersistenceError(exc) from exc
        finally:
            cursor.sqlite_cursor.close()
    return outcomes


def _begin_immediate(cursor: Any, timeout: float) -> None:
    """Take SQLite's write lock, polling every fraction of a millisecond while another
    process holds it. SQLite's own busy handler sleeps 1, 2, 5, 10, 15... ms between
    tries, so two ``serve`` workers taking turns to commit would mostly wait on it."""
    cursor.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + timeout
        pause = 0.0002
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (_SQLITE_BUSY, _SQLITE_LOCKED) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 1.5, 0.002)
    finally:
        cursor.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")


#: Attempts at a PostgreSQL transaction that failed on its connection (a server restart
#: leaves broken connections in the pool) or its lock timeout, as the library's recorder does.
PG_ATTEMPTS = 3


def _write_postgres(store: LedgerStore, groups: Sequence[Group]) -> list[Outcome]:
    """Nothing of a failed transaction was recorded, so it may be written again as a whole
    (if its commit was lost on the way back, the rewrite collides and is reported as such)."""
    import psycopg

    attempt = 1
    while True:
        try:
            return _write_postgres_once(store, groups)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if attempt >= PG_ATTEMPTS:
                raise OperationalError(exc) from exc
        time.sleep(0.2 * attempt)
        attempt += 1


def _write_postgres_once(store: LedgerStore, groups: Sequence[Group]) -> list[Outcome]:
    import psycopg
    from psycopg import sql

    recorder = store.recorder
    datastore = recorder.datastore
    make = recorder.construct_pg_stored_event
    outcomes: list[Outcome] = []
    failed: set[UUID] = set()
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        for statement in recorder.lock_table_statements:  # serialise with other writers, as the recorder does
            curs.execute(statement)
        curs.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(recorder.channel_name)))
        for group in groups:
            if group.aggregate_id in failed:
                outcomes.append(Outcome.SKIPPED)
                continue
            try:
                with conn.transaction():  # a SAVEPOINT: a collision rolls back this group only
                    curs.execute(recorder.insert_events_statement, ([make(*row) for row in group.rows],))
            except psycopg.errors.IntegrityError:
                failed.add(group.aggregate_id)
                outcomes.append(Outcome.CONFLICT)
                continue
            outcomes.append(Outcome.SAVED)
    return outcomes


class Reader:
    """The committer's reads: an account's events after the version it holds, and the
    first event of a registry entry (an idempotency record).

    On an SQLite file they go through one connection of the committer's own, a plain
    statement each: the library's path (pool checkout, BEGIN, SELECT, ROLLBACK, check-in)
    cost the committer more than deciding the command. Autocommit reads see every
    committed transaction, ours included. PostgreSQL and in-memory SQLite use the store's
    event store (an in-memory database is private to its connection)."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        datastore = store.recorder.datastore
        self._direct = not store.is_postgres and not datastore.pool.is_sqlite_memory_mode
        self._conn: sqlite3.Connection | None = None
        table = store.recorder.events_table_name
        self._after = f"SELECT originator_version, topic, state FROM {table} WHERE originator_id = ? AND originator_version > ? ORDER BY originator_version"
        self._first = f"SELECT topic, state FROM {table} WHERE originator_id = ? AND originator_version = 1"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            pool = self.store.recorder.datastore.pool
            self._conn = sqlite3.connect(pool.db_name, uri=True, isolation_level=None, check_same_thread=False, timeout=pool.lock_timeout or 5)
        return self._conn

    def events_after(self, aggregate_id: UUID, version: int) -> list[Any]:
        if not self._direct:
            return list(self.store.events.get(aggregate_id, gt=version))
        to_event = self.store.mapper.to_domain_event
        rows = self._connection().execute(self._after, (aggregate_id.hex, version)).fetchall()
        return [to_event(StoredEvent(aggregate_id, v, topic, state)) for v, topic, state in rows]

    def first_event(self, aggregate_id: UUID) -> Any | None:
        if not self._direct:
            found = list(self.store.events.get(aggregate_id, limit=1))
            return found[0] if found else None
        row = self._connection().execute(self._first, (aggregate_id.hex,)).fetchone()
        return None if row is None else self.store.mapper.to_domain_event(StoredEvent(aggregate_id, 1, row[0], row[1]))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
