"""Raw rows of the event store, for the audit: what is *stored*, not what a view says.

Verification must not trust any read model, so it reads the recorder's own table
through the recorder's own datastore (the same connection pool, schema and table name
the library writes to): ``stored_events`` keyed by ``rowid`` on SQLite,
``<schema>.arledger_events`` keyed by ``notification_id`` on PostgreSQL. It selects
plain tuples in large ranges, without building the library's Notification objects,
so a full scan runs at the speed of the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

#: (position, originator id as 32 hex digits, originator_version, topic, state bytes)
StoredRow = tuple[int, str, int, str, bytes]


class StoredRows:
    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.table = recorder.events_table_name
        self.postgres = hasattr(recorder.datastore, "schema")

    def max_position(self) -> int:
        return int(self.recorder.max_notification_id() or 0)

    def scan(self, after: int, upto: int, batch: int = 10_000) -> Iterator[StoredRow]:
        """Every stored row with ``after < position <= upto``, in position order."""
        while after < upto:
            rows = self._select_range(after, upto, batch)
            if not rows:
                return
            yield from rows
            after = rows[-1][0]

    def at(self, positions: Iterable[int], chunk: int = 500) -> dict[int, tuple[str, bytes]]:
        """(topic, stored bytes) at each of ``positions`` (missing positions are absent)."""
        wanted = list(positions)
        found: dict[int, tuple[str, bytes]] = {}
        for i in range(0, len(wanted), chunk):
            found.update(self._select_at(wanted[i : i + chunk]))
        return found

    # ---- dialects -----------------------------------------------------------------------

    def _select_range(self, after: int, upto: int, limit: int) -> list[StoredRow]:
        if self.postgres:
            from psycopg import sql
            from psycopg.rows import tuple_row

            query = sql.SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{}"
                " WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
            ).format(sql.Identifier(self.recorder.datastore.schema), sql.Identifier(self.table))
            with self.recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(query, (after, upto, limit))
                return [(p, o.hex, v, t, bytes(s)) for p, o, v, t, s in cur.fetchall()]
        statement = (
            f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.table}"
            " WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        with self.recorder.datastore.transaction(commit=False) as cur:
            cur.execute(statement, (after, upto, limit))
            return [(r[0], r[1], r[2], r[3], _bytes(r[4])) for r in cur.fetchall()]

    def _select_at(self, positions: list[int]) -> dict[int, tuple[str, bytes]]:
        if not positions:
            return {}
        if self.postgres:
            from psycopg import sql
            from psycopg.rows import tuple_row

            query = sql.SQL("SELECT notification_id, topic, state FROM {}.{} WHERE notification_id = ANY(%s)").format(
                sql.Identifier(self.recorder.datastore.schema), sql.Identifier(self.table)
            )
            with self.recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(query, (positions,))
                return {p: (t, bytes(s)) for p, t, s in cur.fetchall()}
        statement = f"SELECT rowid, topic, state FROM {self.table} WHERE rowid IN ({', '.join('?' * len(positions))})"
        with self.recorder.datastore.transaction(commit=False) as cur:
            cur.execute(statement, positions)
            return {r[0]: (r[1], _bytes(r[2])) for r in cur.fetchall()}


def _bytes(value: Any) -> bytes:
    """SQLite keeps whatever type was written: a hand-edited row may hold TEXT."""
    return value if isinstance(value, bytes) else str(value).encode() if value is not None else b""
