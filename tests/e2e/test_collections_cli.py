"""Collections through the ``arledger`` command: the clock, a contact reported back by a
downstream service, worklist, results and a printable statement."""

from __future__ import annotations

import json

from tests.e2e.test_cli import run


def test_clock_contacts_worklist_results_and_statement(tmp_path):
    ok = lambda *args, **kw: run(list(args), tmp_path, check=True, **kw)  # noqa: E731
    ok("register-customer", "--customer-id", "ACME", "--name", "Acme", "--currency", "EUR")
    ok("issue-invoice", "--customer-id", "ACME", "--invoice-number", "I1", "--currency", "EUR", "--amount-minor", "5000",
       "--issue-date", "2026-01-01", "--due-date", "2026-01-31")
    first = json.loads(ok("clock", "tick", "--date", "2026-03-10").stdout)
    assert first["recorded"] == 7 and first["by_type"]["AgingBucketEntered"] == 2
    assert json.loads(ok("clock", "tick", "--date", "2026-03-10").stdout)["recorded"] == 0

    worklist = json.loads(ok("collections", "worklist", "--date", "2026-03-10", "--json", env_extra={"ARLEDGER_COLLECTORS": "ann,bob"}).stdout)
    assert [(w["customer_id"], w["overdue_minor"], w["days_past_due"]) for w in worklist] == [("ACME", 5000, 38)]
    due = worklist[0]["actions_due"][0]
    assert due["step"] == "phone_call" and worklist[0]["collector"] in {"ann", "bob"}
    ok("log-collection-contact", "--customer-id", "ACME", "--contact-id", "M1", "--contacted-on", "2026-03-10", "--channel",
       due["channel"], "--outcome", "delivered", "--collector", "mailer", "--dunning-event-id", due["dunning_event_id"])
    after = json.loads(ok("collections", "worklist", "--date", "2026-03-10", "--json").stdout)
    assert due["dunning_event_id"] not in {a["dunning_event_id"] for a in after[0]["actions_due"]}

    results = json.loads(ok("collections", "results", "--json").stdout)
    assert {r["key"] for r in results["by_channel"]} == {"email", "letter", "phone_call"}

    page = tmp_path / "statement.html"
    ok("statement", "ACME", "--date", "2026-03-10", "--html", str(page))
    assert "Statement of account" in page.read_text() and "50.00" in page.read_text()

    (tmp_path / "bad.toml").write_text('version = "x"\ndefault_track = "a"\n[tracks.a]\nsteps = [{name = "s", offset_days = 1, channel = "pigeon", template = "t"}]\n')
    refused = run(["clock", "tick", "--date", "2026-03-11"], tmp_path, env_extra={"ARLEDGER_DUNNING_POLICY": str(tmp_path / "bad.toml")})
    assert refused.returncode == 2 and json.loads(refused.stderr.strip().splitlines()[-1])["error"]["field"] == "tracks.a.steps[0].channel"
