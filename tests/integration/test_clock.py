"""The clock on SQLite and PostgreSQL: invoices walked through whole dunning tracks with
a controlled business date - catch-up after missed days, pauses for disputes and
promises, a payment between two steps, and idempotent repeated ticks."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from domain import collections_commands as cc
from domain import commands as c
from domain.collections_events import TimeCausedEvent
from domain.dunning import parse_policy
from projections.db import ViewDatabase
from services.clock.wiring import build_clock

POLICY = parse_policy("""
version = "t1"
default_track = "std"
promise_tolerance_days = 2
[aging]
edges = [1, 31, 61]
[tracks.std]
steps = [
  { name = "reminder", offset_days = -3, channel = "email", template = "r" },
  { name = "notice", offset_days = 5, channel = "letter", template = "n" },
  { name = "call", offset_days = 20, channel = "phone_call", template = "c" },
  { name = "demand", offset_days = 40, channel = "formal_demand", template = "d" },
]
[tracks.hard]
steps = [{ name = "call", offset_days = 1, channel = "phone_call", template = "h", action = "credit_hold" }]
""")
DUE = date(2026, 3, 1)


@pytest.fixture
def ticker(app):
    db = ViewDatabase(app.settings.resolved_database_url)
    yield build_clock(app, db, policy=POLICY)
    db.close()


def facts(app, *types: str) -> list:
    out = []
    for n in app.store.recorder.select_notifications(start=0, limit=100000, inclusive_of_start=False):
        name = n.topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
        if name in types:
            out.append(app.store.mapper.to_domain_event(n))
    return out


def steps(app) -> list[tuple[str, str, date]]:
    return [(e.invoice_number, e.step, e.business_date) for e in facts(app, "DunningStepDue")]


def setup_ledger(app, *invoices: str) -> None:
    x = app.ledger.execute
    x(c.RegisterCustomer(customer_id="ACME", name="Acme", currency="EUR"), actor="t")
    for number in invoices:
        x(c.IssueInvoice(customer_id="ACME", invoice_number=number, currency="EUR", amount_minor=1000,
                         issue_date=date(2026, 2, 1), due_date=DUE), actor="t")


def test_catch_up_records_every_threshold_in_date_order_with_its_own_date(app, ticker):
    setup_ledger(app, "I1")
    report = ticker.tick(date(2026, 4, 15))  # first tick, 45 days past due: catches up everything
    events = facts(app, "InvoiceFellOverdue", "AgingBucketEntered", "DunningStepDue")
    assert [(type(e).__name__, e.business_date) for e in events] == [
        ("DunningStepDue", date(2026, 2, 26)),
        ("InvoiceFellOverdue", date(2026, 3, 2)),
        ("AgingBucketEntered", date(2026, 3, 2)),
        ("DunningStepDue", date(2026, 3, 6)),
        ("DunningStepDue", date(2026, 3, 21)),
        ("AgingBucketEntered", date(2026, 4, 1)),
        ("DunningStepDue", date(2026, 4, 10)),
    ]
    buckets = [(e.previous_bucket, e.bucket, e.days_past_due, e.rule_version) for e in facts(app, "AgingBucketEntered")]
    assert buckets == [("current", "1-30", 1, "buckets:1,31,61"), ("1-30", "31-60", 31, "buckets:1,31,61")]
    assert report.recorded == 7
    head = app.store.max_position()
    again = ticker.tick(date(2026, 4, 15))
    assert again.recorded == 0 and again.candidates == 0 and app.store.max_position() == head
    ticker.tick(date(2026, 5, 1))
    assert [(e.bucket, e.business_date) for e in facts(app, "AgingBucketEntered")][-1] == ("61+", date(2026, 5, 1))


def test_daily_ticks_and_one_late_tick_record_the_same_facts(app, ticker):
    setup_ledger(app, "I1")
    day = date(2026, 2, 20)
    while day <= date(2026, 4, 20):
        ticker.tick(day)
        day += timedelta(days=1)
    daily = [(type(e).__name__, e.business_date) for e in facts(app, "InvoiceFellOverdue", "AgingBucketEntered", "DunningStepDue")]
    assert len(daily) == 7 and daily == sorted(daily, key=lambda t: t[1])


def test_a_payment_between_two_steps_stops_the_later_steps(app, ticker):
    setup_ledger(app, "I1")
    ticker.tick(date(2026, 3, 10))
    x = app.ledger.execute
    x(c.ReceivePayment(customer_id="ACME", payment_id="P1", currency="EUR", amount_minor=1000, value_date=date(2026, 3, 12)), actor="t")
    x(c.AllocatePayment(payment_id="P1"), actor="t")
    ticker.tick(date(2026, 6, 1))
    assert steps(app) == [("I1", "reminder", date(2026, 2, 26)), ("I1", "notice", date(2026, 3, 6))]
    assert [e.bucket for e in facts(app, "AgingBucketEntered")] == ["1-30"]


def test_a_payment_recorded_late_does_not_undo_thresholds_crossed_before_its_value_date(app, ticker):
    setup_ledger(app, "I1")
    x = app.ledger.execute
    x(c.ReceivePayment(customer_id="ACME", payment_id="P1", currency="EUR", amount_minor=400, value_date=date(2026, 3, 10)), actor="t")
    x(c.AllocatePayment(payment_id="P1"), actor="t")
    x(c.ReceivePayment(customer_id="ACME", payment_id="P2", currency="EUR", amount_minor=600, value_date=date(2026, 3, 25)), actor="t")
    x(c.AllocatePayment(payment_id="P2"), actor="t")
    ticker.tick(date(2026, 6, 1))  # catch-up after everything was recorded
    assert [(s, d) for _, s, d in steps(app)] == [("reminder", date(2026, 2, 26)), ("notice", date(2026, 3, 6)), ("call", date(2026, 3, 21))]
    assert [e.open_minor for e in facts(app, "DunningStepDue")] == [1000, 1000, 600]


def test_a_dispute_pauses_the_dunning_clock_and_its_resolution_resumes_it_shifted(app, ticker):
    setup_ledger(app, "I1")
    ticker.tick(date(2026, 3, 10))
    app.ledger.execute(c.DisputeInvoice(invoice_number="I1", disputed_on=date(2026, 3, 15), reason="damaged"), actor="t")
    ticker.tick(date(2026, 4, 1))  # the call (Mar 21) is paused
    assert [s for _, s, _ in steps(app)] == ["reminder", "notice"]
    app.ledger.execute(c.ResolveDispute(invoice_number="I1", resolved_on=date(2026, 4, 4), resolution="rejected"), actor="t")
    ticker.tick(date(2026, 4, 30))
    # 20 days paused (Mar 15 - Apr 4): the call moves from Mar 21 to Apr 10, the demand from Apr 10 to Apr 30
    assert steps(app)[2:] == [("I1", "call", date(2026, 4, 10)), ("I1", "demand", date(2026, 4, 30))]
    assert [e.bucket for e in facts(app, "AgingBucketEntered")] == ["1-30", "31-60"]  # the invoice still ages


def test_exemption_and_unexpired_promise_hold_steps_and_promises_are_judged(app, ticker):
    setup_ledger(app, "I1", "I2", "I3")
    x = app.ledger.execute
    x(cc.GrantDunningExemption(customer_id="ACME", invoice_number="I1", granted_on=date(2026, 2, 1), reason="key account"), actor="t")
    x(cc.MakePromiseToPay(customer_id="ACME", promise_id="PR1", made_on=date(2026, 3, 4), promised_date=date(2026, 3, 20),
                          currency="EUR", amount_minor=500, invoice_numbers=["I2"], tolerance_days=2), actor="t")
    ticker.tick(date(2026, 3, 21))
    assert sorted({(i, s) for i, s, _ in steps(app)}) == [("I2", "reminder"), ("I3", "call"), ("I3", "notice"), ("I3", "reminder")]
    ticker.tick(date(2026, 3, 25))  # 20 + 2 days tolerance passed: broken on the 23rd, the call is due again later
    broken = facts(app, "PromiseToPayBroken")
    assert [(e.promise_id, e.business_date, e.paid_minor, e.tolerance_days) for e in broken] == [("PR1", date(2026, 3, 23), 0, 2)]
    x(cc.RevokeDunningExemption(customer_id="ACME", invoice_number="I1", revoked_on=date(2026, 3, 25), reason="no longer"), actor="t")
    ticker.tick(date(2026, 4, 12))
    assert ("I1", "demand", date(2026, 4, 10)) in steps(app) and ("I1", "call") not in {(i, s) for i, s, _ in steps(app)}
    assert ("I2", "demand", date(2026, 4, 10)) in steps(app)


def test_a_promise_paid_in_time_is_kept_on_the_day_it_was_paid(app, ticker):
    setup_ledger(app, "I1")
    x = app.ledger.execute
    x(cc.MakePromiseToPay(customer_id="ACME", promise_id="PR1", made_on=date(2026, 3, 4), promised_date=date(2026, 3, 20),
                          currency="EUR", amount_minor=1000, tolerance_days=0), actor="t")
    x(c.ReceivePayment(customer_id="ACME", payment_id="P1", currency="EUR", amount_minor=1000, value_date=date(2026, 3, 18)), actor="t")
    ticker.tick(date(2026, 3, 30))
    ticker.tick(date(2026, 3, 31))
    kept = facts(app, "PromiseToPayKept", "PromiseToPayBroken")
    assert [(type(e).__name__, e.business_date, e.paid_minor) for e in kept] == [("PromiseToPayKept", date(2026, 3, 18), 1000)]


def test_a_bounced_payment_reopens_the_installment_and_later_thresholds_fire(app, ticker):
    setup_ledger(app, "I1")
    x = app.ledger.execute
    x(c.ReceivePayment(customer_id="ACME", payment_id="P1", currency="EUR", amount_minor=1000, value_date=date(2026, 3, 3)), actor="t")
    x(c.AllocatePayment(payment_id="P1"), actor="t")
    ticker.tick(date(2026, 3, 25))
    assert [s for _, s, _ in steps(app)] == ["reminder"]
    x(c.ReversePayment(payment_id="P1", reversed_on=date(2026, 3, 26), reason="bounced"), actor="t")
    ticker.tick(date(2026, 4, 12))
    assert steps(app)[1:] == [("I1", "demand", date(2026, 4, 10))]
    assert [(e.bucket, e.business_date) for e in facts(app, "AgingBucketEntered")] == [("1-30", date(2026, 3, 2)), ("31-60", date(2026, 4, 1))]


def test_the_track_follows_the_hook(app):
    db = ViewDatabase(app.settings.resolved_database_url)
    try:
        ticker = build_clock(app, db, policy=POLICY, track_of=lambda customer: "hard")
        setup_ledger(app, "I1")
        ticker.tick(date(2026, 3, 5))
        assert [(e.track, e.step, e.channel, e.action, e.business_date) for e in facts(app, "DunningStepDue")] == [
            ("hard", "call", "phone_call", "credit_hold", date(2026, 3, 2))]
    finally:
        db.close()


def test_a_tick_that_crashed_before_moving_its_cursors_records_nothing_twice(app, ticker):
    setup_ledger(app, "I1", "I2")
    ticker.tick(date(2026, 4, 15))
    head = app.store.max_position()
    with ticker.db.transaction() as tx:  # the cursors as they were before the tick: its facts are stored, its moves lost
        tx.execute("UPDATE clock_items SET cal_index = 0, cal_next = '2026-03-02', dun_index = 0, dun_next = '2026-02-26', bucket = 'current'")
    again = ticker.tick(date(2026, 4, 15))
    assert again.candidates == 4 and again.recorded == 0 and again.by_type == {} and app.store.max_position() == head
    assert ticker.tick(date(2026, 4, 15)).candidates == 0


def test_installments_of_one_invoice_walk_their_own_due_dates(app, ticker):
    x = app.ledger.execute
    x(c.RegisterCustomer(customer_id="ACME", name="Acme", currency="EUR"), actor="t")
    x(c.IssueInvoice(customer_id="ACME", invoice_number="I1", currency="EUR", amount_minor=900, issue_date=date(2026, 2, 1),
                     installments=[c.InstallmentSpec(due_date=DUE, amount_minor=300),
                                   c.InstallmentSpec(due_date=date(2026, 4, 1), amount_minor=600)]), actor="t")
    ticker.tick(date(2026, 4, 2))
    overdue = [(e.installment, e.business_date, e.open_minor) for e in facts(app, "InvoiceFellOverdue")]
    assert overdue == [(1, date(2026, 3, 2), 300), (2, date(2026, 4, 2), 600)]


class ReviewDue(TimeCausedEvent, frozen=True, kw_only=True):
    """Stands in for credit management's CreditReviewDue in the test of the rule hook."""

    quarter: str


def test_other_contexts_add_time_rules_recorded_idempotently_in_date_order(app):
    def review_rule(db, day, make):
        rows = db.query("SELECT customer_id FROM ar_customers ORDER BY customer_id")
        return [make(ReviewDue, f"test-review:{customer}:2026Q1", customer_id=customer, business_date=date(2026, 1, 1), quarter="2026Q1")
                for (customer,) in rows]

    db = ViewDatabase(app.settings.resolved_database_url)
    try:
        setup_ledger(app, "I1")
        ticker = build_clock(app, db, policy=POLICY)
        ticker.rules = (review_rule,)
        first = ticker.tick(date(2026, 3, 5))
        assert first.recorded == 4 and first.by_type["ReviewDue"] == 1
        assert [type(e).__name__ for e in facts(app, "ReviewDue", "DunningStepDue")] == ["ReviewDue", "DunningStepDue"]
        assert ticker.tick(date(2026, 3, 5)).recorded == 0
    finally:
        db.close()


def test_the_track_follows_the_credit_grade(app):
    from domain.credit_commands import AssessCredit

    db = ViewDatabase(app.settings.resolved_database_url)
    try:
        setup_ledger(app, "I1")
        app.ledger.execute(AssessCredit(customer_id="ACME", assessed_on=date(2026, 2, 1)), actor="t")
        grade = app.ledger.account("ACME").state.credit.grade
        expected = app.credit.active_policy()[0].grade_policy(grade).dunning_track
        build_clock(app, db).tick(date(2026, 3, 10))  # the packaged dunning policy has gentle, standard, strict
        assert grade is not None and {e.track for e in facts(app, "DunningStepDue")} == {expected}
    finally:
        db.close()
