"""Credit commands on a real store (SQLite and PostgreSQL): recorded events, four eyes,
idempotent sweeps, the policy as an event."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from domain import commands as c
from domain import credit_commands as cc
from domain.credit_events import FinancialIndicators
from domain.errors import RuleViolation
from services.credit import CreditService, default_policy


def types(result) -> list[str]:
    return [ref.type for ref in result.events]


@pytest.fixture
def credit(app) -> CreditService:
    service = CreditService(app.store, app.ledger)
    app.ledger.execute(c.RegisterCustomer(customer_id="C1", name="Acme", currency="EUR"), actor="alice")
    app.ledger.execute(c.IssueInvoice(customer_id="C1", invoice_number="INV-1", currency="EUR", amount_minor=300_000, issue_date=date(2026, 1, 1)), actor="alice")
    strong = FinancialIndicators(current_ratio=Decimal("2.5"), debt_ratio=Decimal("0.2"), profitability=Decimal("0.12"), years_trading=20, external_rating="AA")
    service.execute(cc.AssessCredit(customer_id="C1", assessed_on=date(2026, 1, 1), financial=strong), actor="alice")
    service.execute(cc.SetCreditLimit(customer_id="C1", limit_minor=1_000_000, reason="opening"), actor="alice")
    return service


def test_order_placed_checked_and_invoiced_once(app, credit):
    placed = credit.execute(cc.PlaceSalesOrder(customer_id="C1", order_id="SO-1", currency="EUR", amount_minor=500_000, ordered_on=date(2026, 1, 5)), actor="sales")
    assert types(placed) == ["SalesOrderPlaced", "OrderCreditChecked"]
    invoiced = credit.execute(cc.InvoiceSalesOrder(order_id="SO-1", invoice_number="INV-2", issue_date=date(2026, 1, 6)), actor="sales")
    assert types(invoiced) == ["InvoiceIssued", "SalesOrderInvoiced"]
    credit.execute(cc.PlaceSalesOrder(customer_id="C1", order_id="SO-2", currency="EUR", amount_minor=200_000, ordered_on=date(2026, 1, 7), check=False), actor="sales")
    credit.execute(cc.CheckOrderCredit(order_id="SO-2", checked_on=date(2026, 1, 7)), actor="sales")
    restarted = CreditService(app.store, app.ledger)  # state rebuilt from the store
    account = restarted.ledger.account("C1")
    checks = [e for e in app.store.events.get(account.id) if type(e).__name__ == "OrderCreditChecked"]
    f = checks[-1].figures
    assert (f.open_ar_minor, f.open_orders_minor, f.order_minor, f.exposure_minor, checks[-1].decision) == (800_000, 0, 200_000, 1_000_000, "approve")
    with pytest.raises(RuleViolation) as err:  # invoice numbers stay unique ledger-wide
        credit.execute(cc.InvoiceSalesOrder(order_id="SO-2", invoice_number="INV-2", issue_date=date(2026, 1, 8)), actor="sales")
    assert err.value.rule == "must_be_unique"


def test_limit_increase_four_eyes_on_the_store(app, credit):
    requested = credit.execute(cc.SetCreditLimit(customer_id="C1", limit_minor=2_500_000, reason="growth", request_id="LR-1"), actor="alice")
    assert types(requested) == ["CreditLimitIncreaseRequested"]
    before = app.store.max_position()
    with pytest.raises(RuleViolation) as err:
        credit.execute(cc.ApproveCreditLimitIncrease(customer_id="C1", request_id="LR-1"), actor="alice")
    assert (err.value.field, err.value.rule) == ("actor", "four_eyes") and app.store.max_position() == before
    approved = credit.execute(cc.ApproveCreditLimitIncrease(customer_id="C1", request_id="LR-1"), actor="bob")
    assert types(approved) == ["CreditLimitIncreaseApproved", "CreditLimitSet"]
    assert app.ledger.account("C1").state.credit.limit_minor == 2_500_000


def test_held_order_released_by_a_credit_manager_and_terms_bounded_by_grade(app, credit):
    held = credit.execute(cc.PlaceSalesOrder(customer_id="C1", order_id="SO-1", currency="EUR", amount_minor=800_000, ordered_on=date(2026, 1, 5)), actor="sales")
    check = next(e for e in app.store.events.get(app.ledger.account("C1").id) if type(e).__name__ == "OrderCreditChecked")
    assert check.decision == "hold" and check.reasons[0].code == "OVER_LIMIT" and check.reasons[0].measured == 100_000 and len(held.events) == 2
    with pytest.raises(RuleViolation):
        credit.execute(cc.ReleaseHeldOrder(order_id="SO-1", reason="fine"), actor="sales")
    assert types(credit.execute(cc.ReleaseHeldOrder(order_id="SO-1", reason="long-standing customer"), actor="manager")) == ["HeldOrderReleased"]
    with pytest.raises(RuleViolation) as err:  # the ledger's own SetPaymentTerms now respects the grade
        credit.execute(c.SetPaymentTerms(customer_id="C1", payment_terms_days=90), actor="alice")
    assert err.value.rule == "within_grade_maximum"


def test_policy_change_is_an_event_and_applies_to_the_next_check(app, credit):
    policy, version = credit.active_policy()
    assert version == 0
    import msgspec

    stricter = msgspec.structs.replace(policy, grades={**policy.grades, "A": msgspec.structs.replace(policy.grades["A"], max_limit_minor=500_000)})
    credit.change_policy(stricter, reason="tighten A", actor="cfo")
    assert credit.active_policy() == (stricter, 1)
    with pytest.raises(RuleViolation) as err:
        credit.execute(cc.SetCreditLimit(customer_id="C1", limit_minor=600_000, reason="x"), actor="alice")
    assert err.value.rule == "within_grade_cap"
    assert credit.active_policy()[0] != default_policy()


def test_sweeps_are_idempotent(app, credit):
    app.ledger.execute(c.RegisterCustomer(customer_id="C2", name="Beta", currency="EUR"), actor="alice")
    app.ledger.execute(c.IssueInvoice(customer_id="C2", invoice_number="INV-9", currency="EUR", amount_minor=100_000, issue_date=date(2026, 1, 1)), actor="alice")
    reviews = credit.reviews(date(2026, 3, 15), actor="clock")
    # C1 crossed the 30-day bucket on 2026-03-03; C2 was never assessed
    assert sorted((r["customer_id"], r["review_id"]) for r in reviews) == [("C1", "2026-03-03:bucket_crossed_30"), ("C2", "never_assessed")]
    position = app.store.max_position()
    assert credit.reviews(date(2026, 3, 15), actor="clock") == [] and app.store.max_position() == position
    report = credit.warnings(date(2026, 3, 15), actor="clock")
    assert sorted((r["customer_id"], r["event"]) for r in report["recorded"]) == [
        ("C1", "EarlyWarningRaised"), ("C1", "EarlyWarningRaised"), ("C2", "EarlyWarningRaised"), ("C2", "EarlyWarningRaised"),
    ]  # days overdue above 30 and concentration (75 % and 25 % of 400,000.00) for both
    assert report["concentration"]["EUR"]["herfindahl"] == "0.6250"
    position = app.store.max_position()
    assert credit.warnings(date(2026, 3, 15), actor="clock")["recorded"] == [] and app.store.max_position() == position


def test_scorecard_setting_names_the_policy_file(make_app, tmp_path):
    from importlib import resources

    path = tmp_path / "policy.toml"
    path.write_text(resources.files("services").joinpath("credit_policy.toml").read_text().replace("A = 80", "A = 85", 1))
    app = make_app(scorecard=str(path))
    policy, version = app.credit.active_policy()
    assert (policy.scorecard.cutoffs["A"], version) == (85, 0)


def test_covers_and_holds_are_recorded_and_drive_the_check(app, credit):
    insured = credit.execute(cc.RecordCreditInsurance(customer_id="C1", cover_id="INS-1", insurer="Coface", currency="EUR", covered_minor=200_000,
                                                      valid_from=date(2026, 1, 1)), actor="alice")
    assert types(insured) == ["CreditInsuranceRecorded"]
    approved = credit.execute(cc.PlaceSalesOrder(customer_id="C1", order_id="SO-1", currency="EUR", amount_minor=850_000, ordered_on=date(2026, 1, 5)), actor="sales")
    assert types(approved) == ["SalesOrderPlaced", "OrderCreditChecked"]  # 1,150,000 less 200,000 cover: within 1,000,000
    assert app.ledger.account("C1").state.credit.orders["SO-1"].status == "approved"
    credit.execute(cc.PlaceCreditHold(customer_id="C1", reason="insolvency rumours", placed_on=date(2026, 1, 6)), actor="alice")
    held = credit.execute(cc.PlaceSalesOrder(customer_id="C1", order_id="SO-2", currency="EUR", amount_minor=1, ordered_on=date(2026, 1, 6)), actor="sales")
    state = app.ledger.account("C1").state.credit
    assert state.orders["SO-2"].status == "held" and state.holds["manual"].reason == "insolvency rumours" and len(held.events) == 2
    released = credit.execute(cc.ReleaseCreditHold(customer_id="C1", reason="rumours false", released_on=date(2026, 1, 7)), actor="alice")
    assert types(released) == ["CreditHoldReleased"]
    checked = credit.execute(cc.CheckOrderCredit(order_id="SO-2", checked_on=date(2026, 1, 7), customer_id="C1"), actor="sales")
    assert types(checked) == ["OrderCreditChecked"] and app.ledger.account("C1").state.credit.orders["SO-2"].status == "approved"


def test_payment_behaviour_taken_from_the_risk_profile(app, credit):
    # INV-1 (300,000.00 due 2026-01-31) paid 10 days late; INV-2 open and overdue 20 days on 03-22
    app.ledger.execute(c.ReceivePayment(customer_id="C1", payment_id="P1", currency="EUR", amount_minor=300_000, value_date=date(2026, 2, 10)), actor="alice")
    app.ledger.execute(c.AllocatePayment(payment_id="P1"), actor="alice")
    app.ledger.execute(c.IssueInvoice(customer_id="C1", invoice_number="INV-2", currency="EUR", amount_minor=50_000, issue_date=date(2026, 1, 31)), actor="alice")
    behaviour = credit.behaviour_from_risk("C1", date(2026, 3, 22), broken_promises=2)
    assert (behaviour.average_days_late, behaviour.share_paid_late, behaviour.broken_promises) == (Decimal(10), Decimal(1), 2)
    assert (behaviour.overdue_minor, behaviour.overdue_days, behaviour.disputes) == (50_000, 20, 0)
