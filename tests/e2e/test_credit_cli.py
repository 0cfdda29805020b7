"""``arledger credit`` as a user runs it, on a real SQLite store. The command line runs
in-process (``services.cli.main``; a process start per command would cost seconds), except
for one real process that checks the error output of a bad policy file."""

from __future__ import annotations

import json
import types
from importlib import resources

import jsonschema_rs
import msgspec
import pytest

from services.cli import main
from tests.e2e.test_cli import run as run_process


@pytest.fixture
def run(monkeypatch, capsys):
    def call(args, tmp_path, check=False):
        monkeypatch.setenv("ARLEDGER_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("ARLEDGER_ACTOR", "tester")
        monkeypatch.setenv("ARLEDGER_LOG_LEVEL", "WARNING")
        monkeypatch.delenv("ARLEDGER_DATABASE_URL", raising=False)
        code = main(args)
        out, err = capsys.readouterr()
        if check:
            assert code == 0, err
        return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return call


def last_error(proc) -> dict:
    return json.loads(proc.stderr.strip().splitlines()[-1])["error"]


def test_credit_commands_policy_and_events_match_the_schema(tmp_path, run):
    run(["register-customer", "--customer-id", "C1", "--name", "Acme", "--currency", "EUR"], tmp_path, check=True)
    run(["issue-invoice", "--customer-id", "C1", "--invoice-number", "INV-1", "--currency", "EUR", "--amount-minor", "300000", "--issue-date", "2026-01-15"], tmp_path, check=True)
    assessed = run(["credit", "assess", "--customer-id", "C1", "--assessed-on", "2026-01-15", "--current-ratio", "1.4", "--debt-ratio", "0.5",
                    "--years-trading", "5", "--average-days-late", "10", "--share-paid-late", "0.2"], tmp_path, check=True)
    assert json.loads(assessed.stdout)["events"][0]["type"] == "CreditAssessed"
    run(["credit", "set-limit", "--customer-id", "C1", "--limit-minor", "1000000", "--reason", "opening"], tmp_path, check=True)
    requested = json.loads(run(["credit", "set-limit", "--customer-id", "C1", "--limit-minor", "2500000", "--reason", "growth", "--request-id", "LR-1"], tmp_path, check=True).stdout)
    assert requested["events"][0]["type"] == "CreditLimitIncreaseRequested"
    same_actor = run(["credit", "approve-limit", "--customer-id", "C1", "--request-id", "LR-1"], tmp_path)
    assert same_actor.returncode == 2 and last_error(same_actor)["rule"] == "four_eyes"
    run(["--actor", "controller", "credit", "approve-limit", "--customer-id", "C1", "--request-id", "LR-1"], tmp_path, check=True)
    placed = json.loads(run(["credit", "place-order", "--customer-id", "C1", "--order-id", "SO-1", "--currency", "EUR", "--amount-minor", "2300000",
                             "--ordered-on", "2026-01-20"], tmp_path, check=True).stdout)
    check = placed["checks"][0]
    assert check["decision"] == "hold" and check["reasons"][0]["code"] == "OVER_LIMIT" and check["reasons"][0]["measured"] == 100_000
    run(["--actor", "manager", "credit", "release-order", "--order-id", "SO-1", "--reason", "known customer"], tmp_path, check=True)
    run(["credit", "hold", "--customer-id", "C1", "--reason", "rumours", "--placed-on", "2026-01-21"], tmp_path, check=True)
    run(["credit", "release-hold", "--customer-id", "C1", "--reason", "rumours false", "--released-on", "2026-01-22"], tmp_path, check=True)
    reviews = json.loads(run(["credit", "reviews", "--date", "2026-03-20"], tmp_path, check=True).stdout)
    assert reviews["reviews_due"] == [{"customer_id": "C1", "review_id": "2026-03-17:bucket_crossed_30"}]
    warnings = json.loads(run(["credit", "warnings", "--date", "2026-03-20"], tmp_path, check=True).stdout)
    assert warnings["concentration"]["EUR"]["herfindahl"] == "1.0000"
    shipped = str(resources.files("services").joinpath("credit_policy.toml"))
    report = json.loads(run(["credit", "backtest", "--policy", shipped, "--from", "2026-01-01", "--to", "2026-12-31", "--json"], tmp_path, check=True).stdout)
    assert report["checks"] == 1 and report["changed"] == []

    run(["credit", "assess", "--customer-id", "C1", "--assessed-on", "2026-03-20", "--from-risk-profile", "--broken-promises", "1"], tmp_path, check=True)

    import sqlite3

    schema = json.loads(run(["schema"], tmp_path, check=True).stdout)
    validator = jsonschema_rs.validator_for(schema)
    rows = sqlite3.connect(tmp_path / "data" / "ledger.sqlite").execute("SELECT topic, state FROM stored_events").fetchall()
    credit_events = [msgspec.json.decode(state) for topic, state in rows if topic.startswith("domain.credit_events:")]
    assert {"CreditAssessed", "CreditLimitIncreaseApproved", "OrderCreditChecked", "HeldOrderReleased", "CreditReviewDue"} <= {e["type"] for e in credit_events}
    for event in credit_events:
        validator.validate(event)
    reassessed = [e for e in credit_events if e["type"] == "CreditAssessed"][-1]
    # INV-1 (due 2026-02-14) is 34 days overdue on 03-20; the promise count came from the flag
    assert reassessed["behaviour"] == {"average_days_late": "0", "share_paid_late": "0", "broken_promises": 1, "disputes": 0,
                                       "overdue_minor": 300000, "overdue_days": 34}


def test_bad_policy_file_names_the_key(tmp_path, run):
    text = resources.files("services").joinpath("credit_policy.toml").read_text()
    bad = tmp_path / "policy.toml"
    bad.write_text(text.replace("current_ratio = 12", 'current_ratio = "high"', 1))
    proc = run_process(["credit", "policy", "--set", str(bad), "--reason", "try"], tmp_path)
    assert proc.returncode == 2
    error = last_error(proc)
    assert error["field"] == "$.scorecard.weights.current_ratio" and str(bad) in error["message"]
    good = tmp_path / "good.toml"
    good.write_text(text.replace("A = 80", "A = 85", 1))
    recorded = json.loads(run(["credit", "policy", "--set", str(good), "--reason", "stricter A"], tmp_path, check=True).stdout)
    assert recorded["version"] == 1 and recorded["policy"]["scorecard"]["cutoffs"]["A"] == 85
