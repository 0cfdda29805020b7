"""The role x endpoint matrix, cell by cell: 403 exactly where the table says no.

An allowed role gets past authorization: its answer may be 2xx or a 4xx about the
(empty) body or an unknown id, but never 401 or 403. One store serves every cell:
authorization does not depend on the backend.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from services.api import create_app
from services.api.app import operation_routes
from services.api.permissions import PERMISSIONS, markdown_matrix
from services.apikeys import ROLES
from services.bootstrap import bootstrap
from services.settings import Settings

ROUTES = operation_routes()
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.fixture(scope="module")
def matrix_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('roles') / 'ledger.sqlite'}"
    ledger_app = bootstrap(Settings.from_env({}, database_url=url), configure_logs=False)
    with TestClient(create_app(ledger_app=ledger_app)) as client:
        keys = client.app.state.api_keys
        yield client, {role: keys.create(f"{role}-matrix", role)[1] for role in ROLES}
    ledger_app.close()


def test_every_guarded_endpoint_has_a_row_and_every_row_an_endpoint():
    assert set(ROUTES) == set(PERMISSIONS)


def test_the_documented_matrix_is_generated_from_the_table():
    assert markdown_matrix(ROUTES) in DOCS.read_text()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", sorted(PERMISSIONS))
def test_role_matrix_cell(matrix_client, operation, role):
    client, secrets = matrix_client
    method, path = ROUTES[operation].split(" ", 1)
    path = re.sub(r"\{[^}]+\}", "X-1", path)
    body = None if method in ("GET", "DELETE") else {}
    response = client.request(method, path, json=body, headers={"Authorization": f"Bearer {secrets[role]}"})
    if role in PERMISSIONS[operation]:
        assert response.status_code not in (401, 403, 500), response.text
    else:
        assert response.status_code == 403, response.text
        assert response.json()["rule"] == "forbidden"


@pytest.mark.parametrize("operation", sorted(PERMISSIONS))
def test_no_key_or_a_wrong_key_is_401(matrix_client, operation):
    client, _ = matrix_client
    method, path = ROUTES[operation].split(" ", 1)
    path = re.sub(r"\{[^}]+\}", "X-1", path)
    assert client.request(method, path).status_code == 401
    assert client.request(method, path, headers={"X-API-Key": "ark_not-a-key"}).status_code == 401
