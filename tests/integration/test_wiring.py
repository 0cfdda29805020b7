"""Collections wired into the risk profile and credit management, on SQLite and PostgreSQL:
broken and kept promises (the clock's facts) counted in the risk profile at its cut,
bringing a credit review forward, reviews recorded by the clock tick, the dunning track
by grade, and the broken-promise early warning."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from domain import collections_commands as cc
from domain import commands as c
from domain.credit_commands import AssessCredit
from domain.credit_events import FinancialIndicators, PaymentBehaviour
from projections.db import ViewDatabase
from projections.risk import all_profiles, customer_profile, resolve_cut
from services.clock.wiring import build_clock
from tests.integration.test_clock import POLICY, facts, setup_ledger
from tests.integration.test_risk import catch_up

D = date


@pytest.fixture
def db(app):
    view = ViewDatabase(app.settings.resolved_database_url)
    yield view
    view.close()


def promise(app, pid, made, promised, amount, tolerance=0):
    app.ledger.execute(cc.MakePromiseToPay(customer_id="ACME", promise_id=pid, made_on=made, promised_date=promised,
                                           currency="EUR", amount_minor=amount, tolerance_days=tolerance), actor="collector")


def three_promises(app) -> None:
    """PR1 broken on Mar 11; PR2 kept on Mar 15 (300 paid); PR3 broken on Mar 28 (tolerance 2)."""
    setup_ledger(app, "I1")
    promise(app, "PR1", D(2026, 3, 4), D(2026, 3, 10), 500)
    promise(app, "PR2", D(2026, 3, 12), D(2026, 3, 20), 300)
    app.ledger.execute(c.ReceivePayment(customer_id="ACME", payment_id="P1", currency="EUR", amount_minor=300,
                                        value_date=D(2026, 3, 15)), actor="cash")
    promise(app, "PR3", D(2026, 3, 16), D(2026, 3, 25), 2000, tolerance=2)


def test_broken_and_kept_promises_count_in_the_risk_profile_at_its_cut(db, app, clock):
    three_promises(app)
    ticker = build_clock(app, db, policy=POLICY)
    ticker.tick(D(2026, 3, 20))  # PR1 broken (Mar 11), PR2 kept (Mar 15)
    position = catch_up(app, db)
    known_at = clock()
    clock.advance(days=10)
    ticker.tick(D(2026, 3, 31))  # PR3 broken (Mar 28)
    catch_up(app, db)

    def promises(as_of, **cut):
        return customer_profile(db, "ACME", resolve_cut(db, as_of, **cut), trend_months=0).promises

    now = promises(D(2026, 3, 31))
    assert (now.kept, now.broken, now.kept_rate, now.last_broken_on) == (1, 2, Decimal("0.3333"), D(2026, 3, 28))
    mid = promises(D(2026, 3, 20))  # as of a business date: PR3 is not broken yet
    assert (mid.kept, mid.broken, mid.kept_rate, mid.last_broken_on) == (1, 1, Decimal("0.5000"), D(2026, 3, 11))
    early = promises(D(2026, 3, 12))
    assert (early.kept, early.broken, early.kept_rate) == (0, 1, Decimal("0.0000"))
    assert promises(D(2026, 3, 10)).kept_rate is None
    # a promise broken after the cut does not count: at the earlier position, as known then
    assert (promises(D(2026, 3, 31), at_position=position).broken, promises(D(2026, 3, 31), known_at=known_at).broken) == (1, 1)
    book = {p.customer_id: p.promises for p in all_profiles(db, resolve_cut(db, D(2026, 3, 31)))}
    assert (book["ACME"].kept, book["ACME"].broken) == (1, 2)
    old = {p.customer_id: p.promises for p in all_profiles(db, resolve_cut(db, D(2026, 3, 31), at_position=position))}
    assert (old["ACME"].kept, old["ACME"].broken) == (1, 1)


def test_risk_cli_shows_promises_and_reproduces_a_report_after_a_later_broken_promise(db, app, clock, database_url):
    import json

    from tests.integration.test_risk_cli import risk

    three_promises(app)
    ticker = build_clock(app, db, policy=POLICY)
    ticker.tick(D(2026, 3, 20))
    first = risk(database_url, "ACME", "--as-of", "2026-03-31", "--json").stdout
    assert json.loads(first)["promises"] == {"kept": 1, "broken": 1, "kept_rate": 0.5, "last_broken_on": "2026-03-11"}
    ticker.tick(D(2026, 3, 31))
    now = json.loads(risk(database_url, "ACME", "--as-of", "2026-03-31", "--json").stdout)
    assert (now["promises"]["broken"], now["promises"]["kept_rate"]) == (2, 0.3333)
    position = str(json.loads(first)["position"])
    assert risk(database_url, "ACME", "--as-of", "2026-03-31", "--at-position", position, "--json").stdout == first
    card = risk(database_url, "ACME", "--as-of", "2026-03-31").stdout.decode()
    assert "1 / 2 (kept 33.3%)" in card


GOOD = FinancialIndicators(current_ratio=Decimal(3), debt_ratio=Decimal("0.1"), profitability=Decimal("0.2"), years_trading=20,
                           external_rating="AAA")
BAD = FinancialIndicators(current_ratio=Decimal("0.5"), debt_ratio=Decimal("0.95"), profitability=Decimal("-0.2"), years_trading=0,
                          external_rating="D")


def assess(app, customer, financial, on=D(2026, 2, 1), **behaviour):
    app.ledger.execute(AssessCredit(customer_id=customer, assessed_on=on, financial=financial,
                                    operating_state="normal" if financial is GOOD else "distressed",
                                    behaviour=PaymentBehaviour(**behaviour)), actor="credit")
    return app.ledger.account(customer).state.credit.grade


def reviews(app) -> list[tuple[str, date, str, str]]:
    return [(e.customer_id, e.due_on, e.trigger, e.actor) for e in facts(app, "CreditReviewDue")]


def test_a_broken_promise_brings_the_review_forward_and_the_tick_records_it_once(db, app):
    three_promises(app)
    assert assess(app, "ACME", GOOD) == "A"  # periodic review in 365 days
    ticker = build_clock(app, db, policy=POLICY)
    first = ticker.tick(D(2026, 3, 10))
    assert "CreditReviewDue" not in first.by_type  # nothing broken yet, the periodic review is far
    report = ticker.tick(D(2026, 3, 20))  # PR1 broken on Mar 11, recorded by this very tick
    assert report.by_type["CreditReviewDue"] == 1 and report.by_type["PromiseToPayBroken"] == 1
    assert reviews(app) == [("ACME", D(2026, 3, 11), "broken_promise", "clock")]
    head = app.store.max_position()
    assert ticker.tick(D(2026, 3, 20)).recorded == 0 and app.store.max_position() == head
    assert app.credit.reviews(D(2026, 3, 20), actor="credit") == []  # the sweep sees the same review
    ticker.tick(D(2026, 3, 31))  # PR3 broken too: still the review due since Mar 11, not another
    assert len(reviews(app)) == 1
    # a new assessment (taking the 2 broken promises from the risk profile) starts a new cycle
    behaviour = app.credit.behaviour_from_risk("ACME", D(2026, 4, 1))
    assert (behaviour.broken_promises, behaviour.overdue_days, behaviour.overdue_minor) == (2, 31, 1000)
    assert app.credit.behaviour_from_risk("ACME", D(2026, 3, 20)).broken_promises == 1
    assert app.credit.behaviour_from_risk("ACME", D(2026, 3, 20), broken_promises=0).broken_promises == 0
    app.ledger.execute(AssessCredit(customer_id="ACME", assessed_on=D(2026, 4, 1), financial=GOOD, behaviour=behaviour), actor="credit")
    assert ticker.tick(D(2026, 4, 2)).by_type.get("CreditReviewDue") is None
    promise(app, "PR4", D(2026, 4, 2), D(2026, 4, 5), 100)
    ticker.tick(D(2026, 4, 10))  # broken on Apr 6, after the assessment: a second review
    assert reviews(app)[1:] == [("ACME", D(2026, 4, 6), "broken_promise", "clock")]


def test_the_credit_reviews_sweep_counts_broken_promises_and_the_tick_skips_the_never_assessed(db, app):
    three_promises(app)
    assert "CreditReviewDue" not in build_clock(app, db, policy=POLICY).tick(D(2026, 3, 20)).by_type  # never assessed
    recorded = app.credit.reviews(D(2026, 3, 20), actor="credit")
    assert recorded == [{"customer_id": "ACME", "review_id": "never_assessed"}]
    assess(app, "ACME", GOOD, on=D(2026, 3, 5))
    assert app.credit.reviews(D(2026, 3, 20), actor="credit") == [{"customer_id": "ACME", "review_id": "2026-03-11:broken_promise"}]
    assert app.credit.reviews(D(2026, 3, 20), actor="credit") == []
    assert "CreditReviewDue" in app.settings.overdue_event_names  # published on the overdue topic


def test_broken_promise_early_warning_is_raised_once_and_cleared_when_out_of_the_window(db, app):
    three_promises(app)
    build_clock(app, db, policy=POLICY).tick(D(2026, 3, 31))

    def warnings(as_of):
        found = app.credit.warnings(as_of, actor="credit")["recorded"]
        return [e for e in found if e["event"].startswith("EarlyWarning")]

    warnings(D(2026, 3, 5))  # the other rules (concentration: one customer is the whole book) settle first
    assert warnings(D(2026, 3, 12)) == [{"customer_id": "ACME", "event": "EarlyWarningRaised"}]
    raised = [e for e in facts(app, "EarlyWarningRaised") if e.rule == "broken_promise"]
    assert [(e.threshold, e.measured, e.as_of) for e in raised] == [("0", "1", D(2026, 3, 12))]
    assert warnings(D(2026, 3, 31)) == []  # two broken now: still the one warning
    assert app.ledger.account("ACME").state.credit.warnings["broken_promise"].measured == "1"
    warnings(D(2026, 6, 25))  # Mar 28 is within the 90 days ending Jun 25 ([Mar 28, Jun 25])
    assert "broken_promise" in app.ledger.account("ACME").state.credit.warnings
    warnings(D(2026, 6, 26))
    cleared = [e for e in facts(app, "EarlyWarningCleared") if e.rule == "broken_promise"]
    assert [(e.threshold, e.measured, e.as_of) for e in cleared] == [("0", "0", D(2026, 6, 26))]
    assert warnings(D(2026, 6, 26)) == []


def test_the_dunning_track_follows_the_grade_e_strict_a_gentle(db, app):
    x = app.ledger.execute
    for customer in ("GOOD", "BAD"):
        x(c.RegisterCustomer(customer_id=customer, name=customer, currency="EUR"), actor="t")
        x(c.IssueInvoice(customer_id=customer, invoice_number=f"{customer}-1", currency="EUR", amount_minor=1000,
                         issue_date=D(2026, 2, 1), due_date=D(2026, 3, 1)), actor="t")
    assert assess(app, "GOOD", GOOD) == "A"
    assert assess(app, "BAD", BAD, average_days_late=Decimal(60), share_paid_late=Decimal(1), broken_promises=5,
                  disputes=5, overdue_days=120) == "E"
    build_clock(app, db).tick(D(2026, 3, 10))  # the packaged dunning policy
    tracks = {(e.customer_id, e.track) for e in facts(app, "DunningStepDue")}
    assert tracks == {("GOOD", "gentle"), ("BAD", "strict")}
