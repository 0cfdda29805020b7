"""The ``arledger`` command as a user runs it: a real process on a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema_rs
import msgspec
import pytest


def run(args, tmp_path, env_extra=None, check=False):
    env = {**os.environ, "ARLEDGER_DATA_DIR": str(tmp_path / "data"), "ARLEDGER_ACTOR": "tester", **(env_extra or {})}
    env.pop("ARLEDGER_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_schema_lists_every_public_event_and_validates_stored_events(tmp_path):
    schema = json.loads(run(["schema"], tmp_path, check=True).stdout)
    names = set(schema["$defs"])
    assert {"CustomerRegistered", "InvoiceIssued", "CreditNoteIssued", "PaymentReceived", "PaymentAllocated", "PaymentReversed",
            "InvoiceDisputed", "InvoiceDisputeResolved", "WriteOffRequested", "WriteOffApproved", "WriteOffRejected",
            "WrittenOffAmountRecovered", "CustomerUpdated", "PaymentTermsSet"} <= names
    assert "ReferenceClaimed" not in names and "CommandRecorded" not in names  # internal events stay internal
    run(["demo"], tmp_path, check=True)
    from eventsourcing.sqlite import SQLiteDatastore  # noqa: F401 - the store is plain SQLite
    import sqlite3

    rows = sqlite3.connect(tmp_path / "data" / "ledger.sqlite").execute("SELECT topic, state FROM stored_events").fetchall()
    validator = jsonschema_rs.validator_for(schema)
    public = [msgspec.json.decode(state) for topic, state in rows if topic.startswith("domain.events:")]
    assert len(public) > 20
    for event in public:
        validator.validate(event)


def test_commands_and_errors_from_the_command_line(tmp_path):
    run(["register-customer", "--customer-id", "C1", "--name", "Acme", "--currency", "EUR"], tmp_path, check=True)
    ok = run(["issue-invoice", "--customer-id", "C1", "--invoice-number", "INV-1", "--currency", "EUR", "--amount-minor", "5594", "--issue-date", "2026-01-15"], tmp_path, check=True)
    result = json.loads(ok.stdout)
    assert result["events"][0]["type"] == "InvoiceIssued"
    bad = run(["issue-invoice", "--customer-id", "C1", "--invoice-number", "INV-2", "--currency", "EUR", "--amount-minor", "0", "--issue-date", "2026-01-15"], tmp_path)
    assert bad.returncode == 2
    assert json.loads(bad.stderr.strip().splitlines()[-1])["error"]["field"] == "amount_minor"
    dup = run(["issue-invoice", "--customer-id", "C1", "--invoice-number", "INV-1", "--currency", "EUR", "--amount-minor", "1", "--issue-date", "2026-01-15"], tmp_path)
    assert dup.returncode == 2
    assert json.loads(dup.stderr.strip().splitlines()[-1])["error"] == {"field": "invoice_number", "rule": "must_be_unique", "message": "invoice 'INV-1' already exists"}


@pytest.mark.parametrize(("env", "expect_json"), [({"ARLEDGER_ENV": "production"}, True), ({"ARLEDGER_ENV": "development", "ARLEDGER_LOG_FORMAT": "console"}, False)])
def test_logs_are_structured_and_bound_with_actor_and_correlation(tmp_path, env, expect_json):
    proc = run(["register-customer", "--customer-id", "C1", "--name", "Acme", "--currency", "EUR"], tmp_path, env_extra=env, check=True)
    line = next(line for line in proc.stderr.splitlines() if "command_recorded" in line)
    if expect_json:
        record = json.loads(line)
        assert record["event"] == "command_recorded" and record["actor"] == "tester" and record["customer_id"] == "C1"
        assert record["correlation_id"] and record["level"] == "info"
    else:
        assert "actor=tester" in line and "correlation_id=" in line
