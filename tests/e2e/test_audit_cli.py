"""``arledger audit`` as an auditor runs it: real processes on the SQLite file."""

from __future__ import annotations

import json
import sqlite3

from tests.e2e.test_cli import run


def test_verify_anchor_export_reproduce_and_detect_tampering(tmp_path):
    run(["demo"], tmp_path, check=True)
    run(["projections", "run", "--once"], tmp_path, check=True)
    report = json.loads(run(["audit", "verify", "--json"], tmp_path, check=True).stdout)
    assert report["intact"] and report["verified_events"] == report["store_head"] > 20
    anchor = json.loads(run(["audit", "anchor", "--json"], tmp_path, check=True).stdout)["anchor"]
    assert anchor.endswith(f"@{report['store_head']}")

    run(["audit", "export", "--output", "all.jsonl"], tmp_path, check=True)
    run(["audit", "export", "--format", "csv", "--customer", "ACME", "--output", "acme.csv"], tmp_path, check=True)
    for name in ("all.jsonl", "acme.csv"):
        assert run(["audit", "check-export", name], tmp_path).returncode == 0
    first = (tmp_path / "all.jsonl").read_bytes()
    position = json.loads(first.splitlines()[0])["position"]
    assert position == report["store_head"]

    run(["register-customer", "--customer-id", "NEW", "--name", "New", "--currency", "EUR"], tmp_path, check=True)
    run(["projections", "run", "--once"], tmp_path, check=True)
    run(["audit", "export", "--at-position", str(position), "--output", "again.jsonl"], tmp_path, check=True)
    assert (tmp_path / "again.jsonl").read_bytes() == first
    known_at = json.loads(first.splitlines()[-2])["recorded_at"]  # the last event exported
    run(["audit", "export", "--known-at", known_at, "--output", "known.jsonl"], tmp_path, check=True)
    assert (tmp_path / "known.jsonl").read_bytes() == first
    assert run(["audit", "verify", "--expect-head", anchor], tmp_path).returncode == 0
    beyond = run(["audit", "export", "--at-position", str(10**9)], tmp_path)
    assert beyond.returncode == 2 and "cannot state position" in beyond.stderr

    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as conn:
        conn.execute("UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), 'sales.demo', 'mallory') AS BLOB) WHERE rowid = 5")
    broken = run(["audit", "verify", "--json"], tmp_path)
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["first_bad_position"] == 5
    human = run(["audit", "verify"], tmp_path)
    assert human.returncode == 1 and "first bad position 5" in human.stdout
    assert run(["audit", "anchor"], tmp_path).returncode == 1
