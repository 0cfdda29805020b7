"""Property-based run of schemathesis against the OpenAPI document, on the ASGI app.

Each operation is called with a key of a role allowed to call it (so requests reach the
handlers) on a store holding the demo ledger. It must never answer 5xx, and every answer
must match the document (status code, content type, schema, headers). Bounded examples
per operation keep the suite fast.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api import create_app
from services.api.app import operation_routes
from services.api.permissions import PERMISSIONS
from services.apikeys import KeyStore
from services.bootstrap import bootstrap
from services.demo import load_demo
from services.settings import Settings

MAX_EXAMPLES = 10
# No server error, and every answer as documented. Left out: "positive data acceptance",
# because a schema-valid command may still break a business rule (422 by design).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, ignored_auth]
BY_ROUTE = {route: op for op, route in operation_routes().items()}
ROLES_NEEDED = sorted({role for allowed in PERMISSIONS.values() for role in allowed})

# Built at import: schemathesis parametrizes at collection time (its lazy fixture loader
# does not work with pytest 9). Each process gets its own temporary SQLite store.
_DIR = tempfile.mkdtemp(prefix="arledger-fuzz-")
_LEDGER = bootstrap(Settings.from_env({}, database_url=f"sqlite:///{_DIR}/ledger.sqlite"), configure_logs=False)
load_demo(_LEDGER.ledger)
APP = create_app(ledger_app=_LEDGER)
_KEYS = KeyStore.open(_LEDGER.settings.resolved_database_url)
SECRETS = {role: _KEYS.create(f"{role}-fuzz", role)[1] for role in ROLES_NEEDED}
_KEYS.close()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
# The coverage phase sends ~150 boundary cases per operation whatever max_examples says;
# fuzzing alone keeps the run bounded (about MAX_EXAMPLES requests per operation).
schema.config.phases.coverage.enabled = False


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    _LEDGER.close()
    shutil.rmtree(_DIR, ignore_errors=True)


def key_for(method: str, path: str) -> dict[str, str]:
    operation = BY_ROUTE.get(f"{method.upper()} {path}")
    if operation is None:  # health, metrics: public
        return {}
    return {"Authorization": f"Bearer {SECRETS[sorted(PERMISSIONS[operation])[0]]}"}


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_no_schema_violation(case):
    case.call_and_validate(headers=key_for(case.operation.method, case.operation.path), checks=CHECKS)
