"""Collections commands, worklists, results and statements on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from domain import collections_commands as cc
from domain import commands as c
from domain.collections import AgingRule
from domain.errors import AlreadyExists, NotFound, RuleViolation
from projections.ar_items import ArItemsProjection
from projections.collections_reports import collector_of, results, worklist
from projections.collections_worklist import CollectionsHoldsProjection, CollectionsWorklistProjection
from projections.db import ViewDatabase
from projections.statement import statement
from services.clock.runner import TopicRunner
from services.clock.wiring import build_clock
from services.collections.statement_html import render


@pytest.fixture
def db(app):
    view = ViewDatabase(app.settings.resolved_database_url)
    yield view
    view.close()


def catch_up(app, db) -> None:
    runner = TopicRunner(app.store, db, [ArItemsProjection(), CollectionsHoldsProjection(), CollectionsWorklistProjection()])
    runner.setup()
    runner.catch_up()


def ledger(app) -> None:
    x = app.ledger.execute
    for customer in ("ACME", "BOLT"):
        x(c.RegisterCustomer(customer_id=customer, name=f"{customer} <Ltd>", currency="EUR"), actor="t")
    x(c.IssueInvoice(customer_id="ACME", invoice_number="A1", currency="EUR", amount_minor=10_000, issue_date=date(2026, 1, 1), due_date=date(2026, 1, 31)), actor="t")
    x(c.IssueInvoice(customer_id="ACME", invoice_number="A2", currency="EUR", amount_minor=5_000, issue_date=date(2026, 2, 1), due_date=date(2026, 3, 3)), actor="t")
    x(c.IssueInvoice(customer_id="BOLT", invoice_number="B1", currency="EUR", amount_minor=2_000, issue_date=date(2026, 1, 1), due_date=date(2026, 1, 31)), actor="t")


def test_collection_commands_check_their_rules_and_record_nothing_when_refused(app):
    ledger(app)
    x = app.ledger.execute
    x(cc.LogCollectionContact(customer_id="ACME", contact_id="K1", contacted_on=date(2026, 2, 5), channel="phone_call",
                              outcome="promised", collector="ann", invoice_numbers=["A1"]), actor="ann")
    head = app.store.max_position()
    refusals = [
        (cc.LogCollectionContact(customer_id="ACME", contact_id="K1", contacted_on=date(2026, 2, 5), channel="email", outcome="x", collector="ann"), "contact_id"),
        (cc.LogCollectionContact(customer_id="ACME", contact_id="K2", contacted_on=date(2026, 2, 5), channel="email", outcome="x", collector="ann",
                                 invoice_numbers=["B1"]), "invoice_numbers"),
        (cc.MakePromiseToPay(customer_id="ACME", promise_id="P1", made_on=date(2026, 2, 5), promised_date=date(2026, 2, 1), currency="EUR", amount_minor=1), "promised_date"),
        (cc.MakePromiseToPay(customer_id="ACME", promise_id="P1", made_on=date(2026, 2, 5), promised_date=date(2026, 2, 9), currency="USD", amount_minor=1), "currency"),
        (cc.RevokeDunningExemption(customer_id="ACME", invoice_number="A1", revoked_on=date(2026, 2, 5), reason="x"), "invoice_number"),
        (cc.CloseCollectionCase(customer_id="ACME", case_id="C9", closed_on=date(2026, 2, 5), outcome="paid"), "case_id"),
        (cc.IncurCollectionCost(customer_id="ACME", cost_id="F1", incurred_on=date(2026, 2, 5), currency="EUR", amount_minor=100, kind="fee", case_id="C9"), "case_id"),
    ]
    for command, field in refusals:
        with pytest.raises(RuleViolation) as err:
            x(command, actor="ann")
        assert err.value.field == field
    assert app.store.max_position() == head
    x(cc.EscalateToLegal(customer_id="ACME", case_id="C1", escalated_on=date(2026, 4, 1), law_firm="Dewey"), actor="ann")
    with pytest.raises(AlreadyExists):
        x(cc.AssignToAgency(customer_id="ACME", case_id="C1", assigned_on=date(2026, 4, 2), agency="Collectors Inc"), actor="ann")
    x(cc.CloseCollectionCase(customer_id="ACME", case_id="C1", closed_on=date(2026, 5, 1), outcome="settled"), actor="ann")
    with pytest.raises(NotFound):
        x(cc.CloseCollectionCase(customer_id="ACME", case_id="C1", closed_on=date(2026, 5, 2), outcome="again"), actor="ann")
    promise = x(cc.MakePromiseToPay(customer_id="ACME", promise_id="P1", made_on=date(2026, 2, 5), promised_date=date(2026, 2, 9),
                                    currency="EUR", amount_minor=100), actor="ann")
    made = app.store.mapper.to_domain_event(list(app.store.recorder.select_events(app.ledger.account("ACME").id, desc=True, limit=1))[0])
    assert promise.events[0].type == "PromiseToPayMade" and made.tolerance_days == 3  # the packaged policy's default


def test_worklist_results_and_statement(app, db):
    ledger(app)
    x = app.ledger.execute
    x(cc.AssignCollector(customer_id="ACME", collector="ann"), actor="lead")
    clock = build_clock(app, db)
    clock.tick(date(2026, 2, 20))
    catch_up(app, db)
    steps = db.query("SELECT event_id, invoice_number, step FROM coll_steps WHERE invoice_number = 'A1' ORDER BY business_date")
    answered = steps[-1][0]
    x(cc.LogCollectionContact(customer_id="ACME", contact_id="K1", contacted_on=date(2026, 2, 21), channel="email", outcome="delivered",
                              collector="ann", dunning_event_id=answered, next_action_date=date(2026, 2, 28)), actor="mailer")
    x(cc.MakePromiseToPay(customer_id="ACME", promise_id="P1", made_on=date(2026, 2, 21), promised_date=date(2026, 2, 25), currency="EUR",
                          amount_minor=4_000, collector="ann", tolerance_days=1), actor="ann")
    x(c.ReceivePayment(customer_id="ACME", payment_id="PAY1", currency="EUR", amount_minor=4_000, value_date=date(2026, 2, 24)), actor="t")
    x(c.AllocatePayment(payment_id="PAY1", invoice_number="A1"), actor="t")
    x(cc.IncurCollectionCost(customer_id="ACME", cost_id="F1", incurred_on=date(2026, 2, 22), currency="EUR", amount_minor=200, kind="postage",
                             collector="ann", channel="letter"), actor="ann")
    clock.tick(date(2026, 3, 1))
    catch_up(app, db)

    rows = worklist(db, date(2026, 3, 1), ["bob"])
    assert [(r["customer_id"], r["collector"], r["overdue_minor"], r["days_past_due"]) for r in rows] == [
        ("ACME", "ann", 6_000, 29), ("BOLT", "bob", 2_000, 29)]
    acme = rows[0]
    assert answered not in {a["dunning_event_id"] for a in acme["actions_due"]} and acme["actions_due"]
    assert acme["next_action_date"] == "2026-02-28" and acme["open_promises"] == []
    assert [r["customer_id"] for r in worklist(db, date(2026, 3, 1), ["bob"], "bob")] == ["BOLT"]
    graded = worklist(db, date(2026, 3, 1), ["bob"], grade_of=lambda customer: ("E", 3) if customer == "BOLT" else ("A", 0))
    assert [(r["customer_id"], r["grade"], r["priority"]) for r in graded] == [("BOLT", "E", 15_733), ("ACME", "A", 11_800)]

    out = results(db, ["bob"])
    ann = next(r for r in out["by_collector"] if r["key"] == "ann")
    assert ann["recovered_minor"] == 4_000 and ann["cost_minor"] == 200 and ann["cost_per_unit_recovered"] == Decimal("0.0500")
    # A1's three steps up to Feb 20 (10,000 open each; the call of Feb 21 is held by the promise) and A2's reminder
    # (5,000, after the promise expired); the payment of Feb 24 goes to A1's latest step, the second notice of Feb 14
    assert (ann["steps"], ann["open_at_step_minor"], ann["recovery_rate"]) == (4, 35_000, Decimal("0.1143"))
    notice = next(r for r in out["by_step"] if r["key"] == "standard/second_notice")
    assert (notice["recovered_minor"], notice["recovery_rate"], notice["days_to_collect"]) == (4_000, Decimal("0.3333"), Decimal("10.0000"))  # with BOLT's 2,000
    assert out["promises_by_collector"] == [{"collector": "ann", "promises": 1, "kept": 1, "broken": 0, "kept_rate": Decimal("1.0000")}]

    s = statement(db, "ACME", date(2026, 3, 1), AgingRule())
    assert [(i["invoice_number"], i["open_minor"], i["bucket"]) for i in s["open_items"]] == [("A1", 6_000, "1-30"), ("A2", 5_000, "current")]
    assert s["payments"] == [{"document": "PAY1", "kind": "cash_received", "date": "2026-02-24", "amount_minor": 4_000}]
    assert s["total_open_minor"] == 11_000 and s["unapplied_cash_minor"] == 0 and s["balance_minor"] == 11_000
    page = render(s)
    assert "ACME &lt;Ltd&gt;" in page and "<Ltd>" not in page and "60.00" in page
    assert collector_of("X", {}, []) == "unassigned"
    letter = next(r for r in out["by_channel"] if r["key"] == "letter")
    assert letter["cost_minor"] == 200 and next(r for r in out["by_track"] if r["key"] == "standard")["cost_minor"] is None


def test_collections_views_rebuild_from_zero_and_the_topic_runner_matches_the_standard_one(app, db):
    from projections.registry import all_projections
    from projections.runner import ProjectionRunner

    ledger(app)
    x = app.ledger.execute
    x(cc.GrantDunningExemption(customer_id="BOLT", invoice_number="B1", granted_on=date(2026, 2, 1), reason="vip"), actor="t")
    x(cc.MakePromiseToPay(customer_id="ACME", promise_id="P1", made_on=date(2026, 2, 1), promised_date=date(2026, 2, 10),
                          currency="EUR", amount_minor=100), actor="t")
    build_clock(app, db).tick(date(2026, 3, 15))
    catch_up(app, db)
    tables = ("coll_steps", "coll_promises", "coll_exemptions", "ar_installments")
    before = {t: sorted(map(repr, db.query(f"SELECT * FROM {t}"))) for t in tables}
    runner = ProjectionRunner(app.store, db, all_projections(), batch_size=5)
    runner.setup()
    for name in ("ar_items", "collections_holds", "collections_worklist"):
        runner.rebuild(name)
    assert {t: sorted(map(repr, db.query(f"SELECT * FROM {t}"))) for t in tables} == before
    assert len(before["coll_steps"]) > 3 and "broken" in before["coll_promises"][0]
