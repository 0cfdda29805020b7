"""Operations and access: health, metrics, access logs, keys (CLI and HTTP), `arledger serve`."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
from litestar.testing import TestClient

from services.api import create_app
from services.ledger import ConcurrencyConflict

CUSTOMER = {"customer_id": "ACME", "name": "Acme GmbH", "currency": "EUR"}


def test_health_readiness_reports_the_head_and_metrics_count_requests_and_commands(api):
    assert api.client.get("/health/live").json() == {"status": "live"}
    assert api.call("POST", "/v1/customers", "sales", CUSTOMER).status_code == 201
    ready = api.client.get("/health/ready").json()
    assert ready["status"] == "ready" and ready["store"] == "ok" and ready["head"] == api.head() >= 1
    text = api.client.get("/metrics").text
    assert 'arledger_commands_recorded_total{command="RegisterCustomer"} 1.0' in text
    assert re.search(r'arledger_http_requests_total\{method="POST",route="/v1/customers",status="201"\} 1.0', text)
    assert 'arledger_http_request_duration_seconds_bucket{le="0.25",method="POST",route="/v1/customers"}' in text
    assert f"arledger_store_head_position {float(api.head())}" in text


def test_readiness_is_503_when_the_store_does_not_answer(api, monkeypatch):
    def unreachable():
        raise ConnectionError("database went away")

    monkeypatch.setattr(api.client.app.state, "store_status", unreachable)
    response = api.client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable" and response.json()["detail"] == "ConnectionError"
    assert api.client.get("/health/live").status_code == 200


def test_a_concurrency_conflict_is_409_with_retry_guidance(api, monkeypatch):
    async def always_conflicts(*args, **kwargs):
        raise ConcurrencyConflict("account kept changing under 10 attempts; retry the command")

    monkeypatch.setattr(api.ledger_app.ledger, "execute_async", always_conflicts)
    response = api.call("POST", "/v1/customers", "sales", CUSTOMER)
    assert response.status_code == 409 and response.headers["retry-after"] == "1"
    assert response.json()["rule"] == "concurrent_change" and "retry" in response.json()["detail"]


def test_keys_over_http_are_admin_only_and_revocation_is_immediate(api):
    created = api.call("POST", "/v1/keys", "admin", {"name": "robot", "role": "finance"})
    assert created.status_code == 201
    secret = created.json()["secret"]
    listed = api.call("GET", "/v1/keys", "admin").json()
    assert any(k["name"] == "robot" and k["role"] == "finance" for k in listed)
    assert secret not in json.dumps(listed)
    robot = {"X-API-Key": secret}
    assert api.client.get("/v1/customers", headers=robot).status_code == 200
    assert api.call("DELETE", "/v1/keys/robot", "admin").json() == {"revoked": 1}
    assert api.client.get("/v1/customers", headers=robot).status_code == 401
    assert api.call("POST", "/v1/keys", "admin", {"name": "robot", "role": "emperor"}).status_code == 422


def test_keys_are_stored_hashed_only(api):
    secret = api.keys.create("hashed", "auditor")[1]
    rows = api.keys.db.query("SELECT key_id, name, role, key_hash, hint FROM api_keys")
    assert secret not in repr(rows)
    assert any(len(r[3]) == 64 for r in rows)


def test_access_log_lines_carry_the_correlation_id_and_actor(api, capsys):
    api.call("GET", "/v1/customers", "auditor", name="ann", **{"X-Correlation-ID": "req-42"})
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "http_request" in line and "req-42" in line)
    assert "actor=ann" in line or '"actor": "ann"' in line


def test_the_app_survives_several_lifespans(app):
    asgi = create_app(ledger_app=app)
    for _ in range(2):
        with TestClient(asgi) as client:
            assert client.get("/health/ready").status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(tmp_path, *args):
    env = {**os.environ, "ARLEDGER_DATA_DIR": str(tmp_path / "data")}
    env.pop("ARLEDGER_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)


def test_keys_cli_create_list_revoke(tmp_path):
    created = cli(tmp_path, "keys", "create", "--role", "finance", "--name", "jane")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("ark_") and key["role"] == "finance"
    listed = json.loads(cli(tmp_path, "keys", "list", "--json").stdout)
    assert [(k["name"], k["revoked_at"]) for k in listed] == [("jane", None)]
    assert key["key"] not in cli(tmp_path, "keys", "list").stdout
    assert json.loads(cli(tmp_path, "keys", "revoke", key["key_id"]).stdout) == {"revoked": 1}
    again = cli(tmp_path, "keys", "revoke", "jane")
    assert again.returncode == 2 and json.loads(again.stderr)["error"]["rule"] == "must_exist"
    assert cli(tmp_path, "keys", "create", "--role", "king", "--name", "x").returncode != 0


@pytest.mark.slow
def test_make_run_flow_demo_then_serve_prints_usable_keys(tmp_path):
    assert cli(tmp_path, "demo").returncode == 0
    port = _free_port()
    env = {**os.environ, "ARLEDGER_DATA_DIR": str(tmp_path / "data")}
    env.pop("ARLEDGER_DATABASE_URL", None)
    server = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", "--port", str(port)], stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        keys: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = server.stderr.readline()
            if match := re.match(r"\s+(\w+)\s+(\S+\.local)\s+(ark_\S+)", line):
                keys[match.group(1)] = match.group(3)
            if line.startswith("serving"):
                break
        assert set(keys) == {"sales", "credit_manager", "collector", "finance", "auditor", "admin"}
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        page = httpx.get(f"{base}/v1/customers", headers={"Authorization": f"Bearer {keys['auditor']}"}).json()
        assert [c["customer_id"] for c in page["items"]][:2] == ["ACME", "BOLT"]
        assert httpx.get(f"{base}/openapi.json").json()["openapi"].startswith("3.1")
        assert httpx.get(f"{base}/docs").status_code == 200
        # serve follows the stream in-process on the embedded default: the views catch up
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lags = [p["lag"] for p in httpx.get(f"{base}/health/ready").json()["projections"]]
            if lags and not any(lags):
                break
            time.sleep(0.2)
        assert lags and not any(lags), lags
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_readiness_reports_each_projection_lag(api):
    from projections.db import ViewDatabase
    from projections.registry import all_projections
    from projections.runner import ProjectionRunner

    assert api.call("POST", "/v1/customers", "sales", CUSTOMER).status_code == 201
    names = {p.name for p in all_projections()}
    lags = {p["name"]: p["lag"] for p in api.client.get("/health/ready").json()["projections"]}
    assert set(lags) == names and all(lag == api.head() for lag in lags.values())
    db = ViewDatabase(api.ledger_app.settings.resolved_database_url)
    try:
        ProjectionRunner(api.ledger_app.store, db, all_projections()).catch_up()
    finally:
        db.close()
    assert all(p["lag"] == 0 for p in api.client.get("/health/ready").json()["projections"])


def test_readiness_and_metrics_report_relay_lag_once_a_relay_has_run(api):
    from projections.db import ViewDatabase
    from services.relay.relay import Relay

    assert api.call("POST", "/v1/customers", "sales", CUSTOMER).status_code == 201
    assert api.client.get("/health/ready").json()["relays"] == []
    db = ViewDatabase(api.ledger_app.settings.resolved_database_url)
    try:
        Relay(api.ledger_app.store, db, api.ledger_app.settings).setup()  # position 0: nothing published yet
    finally:
        db.close()
    relays = api.client.get("/health/ready").json()["relays"]
    assert [(r["name"], r["position"], r["lag"]) for r in relays] == [("kafka", 0, api.head())]
    assert f'arledger_relay_lag_events{{relay="kafka"}} {float(api.head())}' in api.client.get("/metrics").text
