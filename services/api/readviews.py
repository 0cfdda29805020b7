"""Read endpoints over projections: one view connection per app, caught up on demand.

A query reads its own writes: before answering, the views it reads are brought to the
head of the stream (as the CLI's ``collections``, ``statement`` and ``risk`` commands do).
One lock serialises catch-up and reading on the app's single view connection; when a
projection worker advances a view at the same moment (``PositionMoved``), the query
answers at the worker's position instead of failing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any

from litestar import Request
from litestar.params import QueryParameter

from projections.db import ViewDatabase
from projections.runner import PositionMoved, Projection, ProjectionRunner
from services.clock.runner import TopicRunner

#: An optional business date in the query string (default: today, UTC).
BusinessDate = Annotated[date | None, QueryParameter(description="Business date YYYY-MM-DD (default: today, UTC)")]
#: The bitemporal cut of a report, as the CLI's ``--known-at`` and ``--at-position``.
KnownAt = Annotated[datetime | None, QueryParameter(description="Count only events recorded at or before this ISO time (UTC if no offset)")]
AtPosition = Annotated[int | None, QueryParameter(ge=0, le=2**53, description="Count only events at or before this stream position")]


def day_or_today(value: date | None) -> date:
    return value if value is not None else datetime.now(UTC).date()


def utc(moment: datetime | None) -> datetime | None:
    """A time without an offset is UTC (as the CLI reads ``--known-at``)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Views:
    def __init__(self, ledger_app: Any) -> None:
        self.ledger_app = ledger_app
        self.db = ViewDatabase(ledger_app.settings.resolved_database_url)
        self.lock = threading.Lock()
        self._set_up: set[str] = set()

    @contextmanager
    def caught_up(self, *projections: Projection, catch_up: bool = True) -> Iterator[ViewDatabase]:
        """The view database with ``projections`` at the head of the stream (held under the lock);
        with ``catch_up=False`` the views are read where the workers left them."""
        with self.lock:
            # a view of every stored event (the audit trail) reads the whole log, internal rows included
            kind = ProjectionRunner if any(p.event_types is None for p in projections) else TopicRunner
            runner = kind(self.ledger_app.store, self.db, list(projections))
            if not {p.name for p in projections} <= self._set_up:
                runner.setup()
                self._set_up.update(p.name for p in projections)
            try:
                if catch_up:
                    runner.catch_up()
            except PositionMoved:  # a worker is advancing the view right now: read at its position
                pass
            yield self.db

    def close(self) -> None:
        self.db.close()


def views_of(request: Request) -> Views:
    return request.app.state.views
