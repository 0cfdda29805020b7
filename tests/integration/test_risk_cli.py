"""``arledger risk`` as a user runs it (a real process) on SQLite and PostgreSQL, and the
reproducibility contract: a report stamped with position P is reproduced byte for byte
by ``--at-position P`` (and ``--known-at``) after more events, late-dated ones included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import pytest

from domain import commands as c
from tests.integration.test_risk import pay, record_ledger

D = date


def risk(database_url, *args, check=True):
    env = {**os.environ, "ARLEDGER_ACTOR": "tester", "ARLEDGER_LOG_LEVEL": "WARNING"}
    env.pop("ARLEDGER_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "services.cli", "--database-url", database_url, "risk", *args],
                          capture_output=True, env=env, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def test_reports_are_reproduced_byte_for_byte_at_their_position(app, clock, database_url):
    record_ledger(app)
    known_at = clock().isoformat()
    first = risk(database_url, "C1", "--as-of", "2026-03-31", "--json").stdout
    first_known = risk(database_url, "C1", "--as-of", "2026-03-31", "--known-at", known_at, "--json").stdout
    first_all = risk(database_url, "--all", "--as-of", "2026-03-31", "--sort", "days_late", "--json", "--no-catch-up").stdout
    report = json.loads(first)
    assert (report["position"], report["as_of"], report["known_at"]) == (app.store.max_position(), "2026-03-31", None)
    assert (report["open_minor"], report["overdue_minor"], report["payment"]["average_days_late"]) == (1070, 670, 11.3889)
    assert report["dso"]["dso"] == 31.0645 and len(report["trend"]) == 6
    # more happens later, some of it dated before the report's as-of date
    clock.advance(days=3)
    x = app.ledger.execute
    pay(x, "P9", 600, D(2026, 3, 20), "I2", 2)
    x(c.IssueInvoice(customer_id="C1", invoice_number="I7", currency="EUR", amount_minor=250, issue_date=D(2026, 2, 1),
                     due_date=D(2026, 2, 20)), actor="sales")
    x(c.ResolveDispute(invoice_number="I2", resolved_on=D(2026, 3, 15), resolution="replaced"), actor="collector")
    now = risk(database_url, "C1", "--as-of", "2026-03-31", "--json").stdout
    assert json.loads(now)["overdue_minor"] == 70 + 250 and now != first
    again = risk(database_url, "C1", "--as-of", "2026-03-31", "--at-position", str(report["position"]), "--json").stdout
    assert again == first
    again_all = risk(database_url, "--all", "--as-of", "2026-03-31", "--sort", "days_late", "--json",
                     "--at-position", str(report["position"])).stdout
    assert again_all == first_all and json.loads(first_all)["position"] == report["position"]
    again_known = risk(database_url, "C1", "--as-of", "2026-03-31", "--known-at", known_at, "--json").stdout
    assert again_known == first_known
    # stamped with the last position it counted (C1's last event): that position gives the same figures
    known = json.loads(first_known)
    assert known["position"] < report["position"] and known["known_at"] == known_at
    assert {**known, "known_at": None, "position": report["position"]} == report


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the CLI layer; PostgreSQL streaming: test_risk.py
def test_all_customers_sorted_limited_and_as_a_table(app, database_url):
    record_ledger(app)
    top = json.loads(risk(database_url, "--all", "--as-of", "2026-03-31", "--sort", "overdue", "--limit", "1", "--json").stdout)
    assert [(p["customer_id"], p["overdue_minor"]) for p in top["customers"]] == [("C1", 670)]
    assert (top["count"], top["sort"], top["limit"], top["as_of"]) == (1, "overdue", 1, "2026-03-31")
    everyone = json.loads(risk(database_url, "--all", "--as-of", "2026-03-31", "--json", "--no-catch-up").stdout)
    assert [p["customer_id"] for p in everyone["customers"]] == ["C1", "C2"]
    assert everyone["customers"][0]["trend"] == []  # --all leaves the trend to single profiles
    table = risk(database_url, "--all", "--as-of", "2026-03-31", "--sort", "days_late").stdout.decode()
    assert "C1" in table and "C2" in table and "11.4" in table
    assert table.index("C1") < table.index("C2")
    single = risk(database_url, "C2", "--as-of", "2026-03-31").stdout.decode()
    assert "C2" in single and "-5.0" in single


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_requests_are_refused_with_the_field(app, database_url):
    record_ledger(app)
    for args, field in ((["--as-of", "2026-02-30", "C1"], "as_of"), (["--all", "C1"], "customer_id"),
                        (["C1", "--at-position", "999999"], "at_position"),
                        (["C1", "--known-at", "yesterday"], "known_at")):
        proc = risk(database_url, *args, "--json", check=False)
        assert proc.returncode == 2, args
        assert json.loads(proc.stderr.decode().strip().splitlines()[-1])["error"]["field"] == field
