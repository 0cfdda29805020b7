"""Collections, risk, audit and the clock over HTTP on both stores: the same answers as
the CLI's reports, read-your-writes, field and rule named on refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ACME = "/v1/customers/ACME"


def _ledger(api) -> None:
    assert api.call("POST", "/v1/customers", "sales", {"customer_id": "ACME", "name": "Acme", "currency": "EUR"}).status_code == 201
    issued = api.call("POST", "/v1/invoices", "sales", {"customer_id": "ACME", "invoice_number": "I1", "currency": "EUR", "amount_minor": 5000,
                                                          "issue_date": "2026-01-01", "due_date": "2026-01-31"})
    assert issued.status_code == 201, issued.text


def test_collections_commands_worklist_results_and_statement(api):
    _ledger(api)
    ticked = api.call("POST", "/v1/clock/ticks", "admin", {"date": "2026-03-10"})
    assert ticked.status_code == 200 and ticked.json()["recorded"] == 7
    assert api.call("POST", "/v1/clock/ticks", "admin", {"date": "2026-03-10"}).json()["recorded"] == 0
    assert api.call("POST", "/v1/clock/ticks", "collector", {"date": "2026-03-10"}).status_code == 403

    assert api.call("PUT", f"{ACME}/collector", "credit_manager", {"collector": "ann"}).status_code == 200
    worklist = api.call("GET", "/v1/collections/worklists/ann?date=2026-03-10", "collector").json()
    assert [(w["customer_id"], w["collector"], w["overdue_minor"], w["days_past_due"]) for w in worklist] == [("ACME", "ann", 5000, 38)]
    assert api.call("GET", "/v1/collections/worklists/bob?date=2026-03-10", "auditor").json() == []
    due = worklist[0]["actions_due"][0]

    contact = {"contact_id": "M1", "contacted_on": "2026-03-10", "channel": due["channel"], "outcome": "delivered", "collector": "ann",
               "dunning_event_id": due["dunning_event_id"]}
    logged = api.call("POST", f"{ACME}/collection-contacts", "collector", contact, name="ann", **{"Idempotency-Key": "c-1"})
    assert logged.status_code == 201 and [e["type"] for e in logged.json()["events"]] == ["CollectionContactLogged"]
    head = api.head()
    again = api.call("POST", f"{ACME}/collection-contacts", "collector", contact, name="ann", **{"Idempotency-Key": "c-1"})
    assert again.headers["Idempotent-Replayed"] == "true" and api.head() == head
    after = api.call("GET", "/v1/collections/worklists/ann?date=2026-03-10", "collector").json()
    assert due["dunning_event_id"] not in {a["dunning_event_id"] for a in after[0]["actions_due"]}

    promise = {"promise_id": "P1", "made_on": "2026-03-10", "promised_date": "2026-03-20", "currency": "USD", "amount_minor": 5000}
    refused = api.call("POST", f"{ACME}/promises-to-pay", "collector", promise)
    assert (refused.status_code, refused.json()["field"], refused.json()["rule"]) == (422, "currency", "currency_match") and api.head() == head
    assert api.call("POST", f"{ACME}/promises-to-pay", "collector", {**promise, "currency": "EUR"}).status_code == 201
    assert api.call("POST", f"{ACME}/dunning-exemptions", "collector", {"invoice_number": "I1", "granted_on": "2026-03-11", "reason": "talks"}).status_code == 201
    revoked = api.call("POST", f"{ACME}/dunning-exemptions/I1/revocation", "credit_manager", {"revoked_on": "2026-03-12", "reason": "over"})
    assert revoked.status_code == 200, revoked.text
    assert api.call("POST", f"{ACME}/legal-escalations", "collector", {"case_id": "L1", "escalated_on": "2026-03-12", "law_firm": "Lex"}).status_code == 201
    assert api.call("POST", f"{ACME}/agency-assignments", "sales", {"case_id": "A1", "assigned_on": "2026-03-12", "agency": "Ag"}).status_code == 403
    cost = api.call("POST", f"{ACME}/collection-costs", "finance", {"cost_id": "K1", "incurred_on": "2026-03-12", "currency": "EUR",
                                                                      "amount_minor": 700, "kind": "lawyer", "case_id": "L1"})
    assert cost.status_code == 201, cost.text
    closed = api.call("POST", f"{ACME}/collection-cases/L1/closure", "collector", {"closed_on": "2026-03-13", "outcome": "settled"})
    assert closed.status_code == 200
    unknown = api.call("POST", f"{ACME}/collection-cases/L9/closure", "collector", {"closed_on": "2026-03-13", "outcome": "settled"})
    assert (unknown.status_code, unknown.json()["field"]) == (404, "case_id")

    results = api.call("GET", "/v1/collections/results", "auditor").json()
    assert {r["key"] for r in results["by_channel"]} >= {"email", "letter", "phone_call"}

    statement = api.call("GET", f"{ACME}/statement?date=2026-03-10", "collector").json()
    assert (statement["total_open_minor"], statement["as_of"], statement["open_items"][0]["days_past_due"]) == (5000, "2026-03-10", 38)
    html = api.call("GET", f"{ACME}/statement.html?date=2026-03-10", "auditor")
    assert html.headers["content-type"].startswith("text/html") and "Statement of account" in html.text and "50.00" in html.text
    negotiated = api.call("GET", f"{ACME}/statement?date=2026-03-10", "collector", Accept="text/html")
    assert negotiated.headers["content-type"].startswith("text/html") and negotiated.text == html.text
    missing = api.call("GET", "/v1/customers/NOPE/statement", "collector")
    assert (missing.status_code, missing.json()["field"]) == (404, "customer_id")
    bad_date = api.call("GET", f"{ACME}/statement?date=2026-13-01", "collector")
    assert bad_date.status_code in (400, 422) and bad_date.json()["field"] == "date"


def test_risk_profiles_as_the_cli_prints_them(api):
    _ledger(api)
    one = api.call("GET", f"{ACME}/risk?as_of=2026-03-10", "credit_manager")
    assert one.status_code == 200, one.text
    body = one.json()
    assert (body["customer_id"], body["overdue_minor"], body["as_of"]) == ("ACME", 5000, "2026-03-10")
    position = body["position"]
    assert api.call("POST", "/v1/payments", "finance", {"customer_id": "ACME", "payment_id": "PAY1", "currency": "EUR", "amount_minor": 5000,
                                                         "value_date": "2026-03-05"}).status_code == 201
    assert api.call("POST", "/v1/payments/PAY1/allocations", "finance", {}).status_code == 201
    assert api.call("GET", f"{ACME}/risk?as_of=2026-03-10", "auditor").json()["overdue_minor"] == 0  # reads its writes
    again = api.call("GET", f"{ACME}/risk?as_of=2026-03-10&at_position={position}", "auditor")
    assert again.content == one.content  # reproduced byte for byte
    ahead = api.call("GET", f"{ACME}/risk?at_position=999999", "auditor")
    assert (ahead.status_code, ahead.json()["field"]) == (422, "at_position")
    assert api.call("GET", "/v1/customers/NOPE/risk", "auditor").status_code == 404

    api.call("POST", "/v1/customers", "sales", {"customer_id": "BETA", "name": "Beta", "currency": "EUR"})
    page = api.call("GET", "/v1/risk?as_of=2026-03-10&limit=1", "collector").json()
    assert ([c["customer_id"] for c in page["customers"]], page["count"], page["next_offset"]) == (["ACME"], 1, 1)
    rest = api.call("GET", "/v1/risk?as_of=2026-03-10&limit=1&offset=1", "collector").json()
    assert ([c["customer_id"] for c in rest["customers"]], rest["next_offset"]) == (["BETA"], None)
    assert api.call("GET", "/v1/risk?sort=nope", "collector").json()["field"] == "sort"


def test_audit_export_pages_and_verification(api):
    _ledger(api)
    assert api.call("GET", "/v1/audit/events", "finance").status_code == 403
    first = api.call("GET", "/v1/audit/events?catch_up=true&limit=1", "auditor").json()
    assert first["header"]["position"] == api.head() and len(first["items"]) == 1 and first["items"][0]["type"] == "CustomerRegistered"
    second = api.call("GET", f"/v1/audit/events?limit=1&after={first['next_after']}", "auditor").json()
    assert [r["type"] for r in second["items"]] == ["InvoiceIssued"] and second["next_after"] is None
    by_actor = api.call("GET", "/v1/audit/events?actor=nobody", "auditor").json()
    assert by_actor["items"] == [] and by_actor["header"]["filters"] == {"actor": "nobody"}

    export = api.call("GET", "/v1/audit/events.jsonl?invoice_number=I1", "auditor")
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert lines[0]["arledger_audit_export"] == 1 and [r["type"] for r in lines[1:-1]] == ["InvoiceIssued"]
    assert lines[-1] == {"arledger_audit_export_end": {"rows": 1}}
    bad = api.call("GET", "/v1/audit/events?from_time=yesterday", "auditor")
    assert (bad.status_code, bad.json()["field"]) == (422, "from_time")

    report = api.call("GET", "/v1/audit/verification", "admin").json()
    assert report["intact"] and report["verified_events"] >= 2
    assert api.call("GET", "/v1/audit/verification?expect_head=zz", "auditor").json()["field"] == "expect_head"
    assert api.call("GET", "/v1/audit/verification", "collector").status_code == 403


def cli(api, *args: str) -> bytes:
    """``arledger ARGS`` on the API's store, in another process: its standard output."""
    env = {**os.environ, "ARLEDGER_DATABASE_URL": api.ledger_app.settings.resolved_database_url, "ARLEDGER_ACTOR": "tester"}
    proc = subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_reports_answer_the_cli_json(api):
    _ledger(api)
    risk = api.call("GET", f"{ACME}/risk?as_of=2026-03-10", "auditor")
    assert risk.content + b"\n" == cli(api, "risk", "ACME", "--as-of", "2026-03-10", "--at-position", str(risk.json()["position"]), "--json")
    statement = api.call("GET", f"{ACME}/statement?date=2026-03-10", "auditor").json()
    assert statement == json.loads(cli(api, "statement", "ACME", "--date", "2026-03-10", "--json"))


def test_aging_and_kpis_answer_the_cli_json(api):
    _ledger(api)
    aging = api.call("GET", "/v1/aging?as_of=2026-03-10&by=customer", "collector")
    assert aging.status_code == 200, aging.text
    body = aging.json()
    assert (body["currency"], body["total_minor"], body["by_customer"][0]["customer_id"]) == ("EUR", 5000, "ACME")
    at = str(body["position"])
    assert aging.content + b"\n" == cli(api, "aging", "--as-of", "2026-03-10", "--by", "customer", "--at-position", at, "--json")
    kpis = api.call("GET", "/v1/kpis?from=2026-01-01&to=2026-03-31", "auditor")
    assert kpis.status_code == 200, kpis.text
    assert kpis.content + b"\n" == cli(api, "kpi", "--from", "2026-01-01", "--to", "2026-03-31", "--at-position", at, "--json")
    quarter = api.call("GET", "/v1/kpis?period=quarter&year=2026&number=1", "finance")
    assert quarter.content == kpis.content
    backwards = api.call("GET", "/v1/kpis?from=2026-03-31&to=2026-01-01", "auditor")
    assert (backwards.status_code, backwards.json()["field"], backwards.json()["rule"]) == (422, "to", "not_before_from")
    assert api.call("GET", "/v1/kpis", "auditor").json()["field"] == "from"
    assert api.call("GET", "/v1/aging?buckets=a,b", "auditor").json()["field"] == "buckets"
    assert api.call("GET", "/v1/aging", "admin").status_code == 403
