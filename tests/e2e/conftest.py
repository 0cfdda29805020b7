"""Fixtures for the HTTP API tests: a Litestar TestClient on the test store, and keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from services.api import create_app
from services.bootstrap import App


class Api:
    """A test client plus a key per role (names ``<role>-tester`` unless told)."""

    def __init__(self, client: TestClient, ledger_app: App) -> None:
        self.client = client
        self.ledger_app = ledger_app
        self.keys = client.app.state.api_keys
        self._secrets: dict[str, str] = {}

    def headers(self, role: str, name: str | None = None, **extra: str) -> dict[str, str]:
        name = name or f"{role}-tester"
        if name not in self._secrets:
            self._secrets[name] = self.keys.create(name, role)[1]
        return {"Authorization": f"Bearer {self._secrets[name]}", **extra}

    def forget(self, name: str) -> None:
        self._secrets.pop(name, None)

    def call(self, method: str, path: str, role: str, body: Any = None, name: str | None = None, **headers: str) -> Any:
        kwargs: dict[str, Any] = {"headers": self.headers(role, name, **headers)}
        if body is not None:
            kwargs["json"] = body
        return self.client.request(method, path, **kwargs)

    def head(self) -> int:
        return self.ledger_app.store.max_position()


@pytest.fixture
def api(app: App) -> Iterator[Api]:
    """The API on a fresh store of each backend (SQLite and PostgreSQL)."""
    with TestClient(create_app(ledger_app=app)) as client:
        yield Api(client, app)
