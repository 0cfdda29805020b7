"""The view database: where read models keep their rows and their stream positions.

Views live in the same database as the event store (the SQLite file, or the PostgreSQL
database and schema named by ``ARLEDGER_DATABASE_URL``) so one setting names everything
and a view's rows and its position commit in one transaction.

SQL is written once with ``?`` placeholders and portable syntax (``INSERT ... ON CONFLICT
... DO UPDATE``, ``BIGINT``, ``TEXT``); :class:`ViewDatabase` adapts the placeholders for
PostgreSQL.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

_QMARK = re.compile(r"\?")


class Tx:
    """A transaction on the view database (thin, dialect-neutral cursor wrapper)."""

    def __init__(self, db: ViewDatabase, cursor: Any) -> None:
        self.db = db
        self.cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Tx:
        self.cursor.execute(self.db.adapt(sql), params)
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.cursor.executemany(self.db.adapt(sql), rows)

    def insert_many(self, head: str, rows: Sequence[Sequence[Any]], per_statement: int = 100) -> None:
        """``head`` (``INSERT INTO t (cols) VALUES``) for every row. On SQLite, rows go up
        to ``per_statement`` to an INSERT (within the build's limit on bound variables):
        a quarter cheaper per row than one statement step each, and bulk rebuilds write
        millions; elsewhere one executemany."""
        if rows:
            self.insert_flat(head, list(chain.from_iterable(rows)), len(rows[0]), per_statement)

    def insert_flat(self, head: str, values: Sequence[Any], width: int, per_statement: int = 100) -> None:
        """:meth:`insert_many` of rows given flat: ``width`` values a row, one row after
        another (a caller building millions of rows saves a tuple per row)."""
        count = len(values) // width
        if not count:
            return
        one = "(" + ", ".join("?" * width) + ")"
        if self.db.dialect == "sqlite":
            per_statement = min(per_statement, self.db.max_variables // width)
        full = count - count % per_statement if self.db.dialect == "sqlite" and per_statement >= 2 else 0
        if full:
            step = per_statement * width
            self.cursor.executemany(f"{head} {', '.join([one] * per_statement)}",
                                    [values[i:i + step] for i in range(0, full * width, step)])
        if full < count:
            self.executemany(f"{head} {one}", [values[i:i + width] for i in range(full * width, count * width, width)])

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.cursor.fetchall()]

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self.cursor.fetchone()
        return tuple(row) if row is not None else None

    @property
    def rowcount(self) -> int:
        return self.cursor.rowcount


def sqlite_path(database_url: str) -> str | None:
    """The file of an ``sqlite:///`` URL, or ``None`` for another database."""
    parsed = urlparse(database_url)
    return None if parsed.scheme in ("postgres", "postgresql") else unquote(parsed.path)


class ViewDatabase:
    """One connection to the view database. Not shared between threads."""

    def __init__(self, database_url: str, *, scratch: bool = False, cache_mb: int = 64) -> None:
        self.url = database_url
        parsed = urlparse(database_url)
        self.dialect = "postgres" if parsed.scheme in ("postgres", "postgresql") else "sqlite"
        if self.dialect == "sqlite":
            path = unquote(parsed.path)
            self.conn: Any = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
            if scratch:
                # A disposable file that one process fills and then hands over whole (a
                # rebuild's scratch copy, projections/rebuild.py): no journal, no syncs,
                # no lock traffic. A crash loses it, which is the point: it is rebuilt.
                # 16 KB pages: appending millions of rows splits a quarter as many pages.
                for pragma in ("page_size=16384", "journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE"):
                    self.conn.execute(f"PRAGMA {pragma}")
            else:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                # Builds with SQLITE_SECURE_DELETE (Debian's, for one) zero every page a
                # DROP or DELETE frees: dropping 2 GB of old views on a version change
                # took 42 s. Views are derived from the events kept in the store, so FAST
                # (no extra I/O) loses nothing; this connection never deletes events.
                self.conn.execute("PRAGMA secure_delete=FAST")
            # views are rebuilt in big batches: a larger page cache (64 MB) keeps the
            # b-trees being filled in memory (temporary sort files stay on disk, so
            # building an index over millions of rows does not grow the process)
            self.conn.execute(f"PRAGMA cache_size=-{int(cache_mb) * 1024}")
        else:
            import psycopg

            schema = parse_qs(parsed.query).get("schema", ["public"])[0]
            dsn = database_url.split("?")[0]
            self.conn = psycopg.connect(dsn, autocommit=True)
            self.conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            self.conn.execute(f'SET search_path TO "{schema}"')

    @property
    def max_variables(self) -> int:
        """Most ``?`` one SQLite statement may bind (999 before SQLite 3.32)."""
        return int(self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))

    def adapt(self, sql: str) -> str:
        return _QMARK.sub("%s", sql) if self.dialect == "postgres" else sql

    @contextmanager
    def transaction(self, *, immediate: bool = True) -> Iterator[Tx]:
        """Everything inside commits together or not at all. On SQLite the write lock is
        taken at once (``immediate``) unless the first statement writes anyway: a
        deferred BEGIN opens write transactions only on the databases written, so
        attached read-only scratch files never turn the commit into a multi-file one."""
        if self.dialect == "sqlite":
            cur = self.conn.cursor()
            cur.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield Tx(self, cur)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        else:
            with self.conn.transaction(), self.conn.cursor() as cur:
                yield Tx(self, cur)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read-only: every query inside sees the same committed state (a report's rows
        and the stream position it states must come from one snapshot)."""
        if self.dialect == "sqlite":
            self.conn.execute("BEGIN")
            try:
                yield
            finally:
                self.conn.execute("COMMIT")
        else:
            with self.conn.transaction():
                self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read outside an explicit transaction (each statement sees committed data)."""
        cur = self.conn.cursor()
        try:
            cur.execute(self.adapt(sql), params)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()

    def close(self) -> None:
        self.conn.close()
