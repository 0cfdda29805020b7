"""Shared fixtures.

Persistence tests run on both stores: an SQLite file in a temporary directory, and the
PostgreSQL server on 127.0.0.1:5432 (``ARLEDGER_TEST_POSTGRES_URL`` overrides it), each
test in a fresh schema. PostgreSQL is required: if it cannot be reached the tests
fail, they never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from services.bootstrap import App, bootstrap
from services.settings import Settings
from tests.kafka_broker import TansuBroker

POSTGRES_URL = os.environ.get("ARLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class FakeClock:
    """A controllable UTC clock: ``recorded_at`` of events under test is exact."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def _drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL.split("?")[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A fresh, empty store URL of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        _drop_schema(schema)
    except psycopg.OperationalError as exc:  # pragma: no cover - CI must have PostgreSQL
        pytest.fail(f"PostgreSQL is required for the test suite and is not reachable at {POSTGRES_URL}: {exc}")
    yield f"{POSTGRES_URL}?schema={schema}"
    _drop_schema(schema)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(database_url: str, clock: FakeClock) -> Iterator[Callable[..., App]]:
    """Build apps on the same store (several = several processes sharing a database)."""
    apps: list[App] = []

    def make(**overrides: object) -> App:
        settings = Settings.from_env({}, database_url=database_url, **overrides)
        app = bootstrap(settings, clock=clock, configure_logs=False)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One real broker per test process, shared: tests use their own topic names."""
    broker = TansuBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def private_kafka_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker of the test's own, for tests that stop and restart it."""
    broker = TansuBroker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_topics() -> dict[str, str]:
    """Topic names unique to one test, as settings overrides."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return {"kafka_events_topic": f"{prefix}.events.v1", "kafka_overdue_topic": f"{prefix}.overdue.v1"}
