"""The stream as the relay reads it: (position, topic, stored bytes) rows, nothing more.

The library's ``select_notifications`` builds a frozen ``Notification`` dataclass per
event and, on SQLite, parses each originator id into a ``UUID``: about 4 us an event,
more than all the rest of the relay's work on it. The relay needs three columns, so it
selects them from the recorder's own table through the recorder's own datastore (same
connection pool, schema and table name; the same way ``projections.audit_store`` reads
for the audit): ``stored_events`` keyed by ``rowid`` on SQLite,
``<schema>.<events table>`` keyed by ``notification_id`` on PostgreSQL. Ordering and
visibility are the library's: on PostgreSQL its writers serialise inserts with a table
lock, so no lower position can appear after a higher one was read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: (position, topic, stored bytes); sqlite3.Row or tuple, unpacked the same way.
StreamRow = Sequence[Any]


class StreamReader:
    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.postgres = hasattr(recorder.datastore, "schema")
        if self.postgres:
            from psycopg import sql

            self._query = sql.SQL("SELECT notification_id, topic, state FROM {}.{} WHERE notification_id > %s ORDER BY notification_id LIMIT %s").format(
                sql.Identifier(recorder.datastore.schema), sql.Identifier(recorder.events_table_name))
        else:
            self._query = f"SELECT rowid, topic, state FROM {recorder.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?"

    def after(self, position: int, limit: int) -> list[StreamRow]:
        """Up to ``limit`` rows after ``position``, in stream order."""
        if self.postgres:
            from psycopg.rows import tuple_row

            with self.recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(self._query, (position, limit), prepare=True)
                return cur.fetchall()
        with self.recorder.datastore.transaction(commit=False) as cur:
            cur.execute(self._query, (position, limit))
            return cur.fetchall()
