"""Credit management rules on concrete numbers: pure, on the account aggregate."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from importlib import resources

from domain import credit as cr
from domain import credit_events as ce
from domain.account import CommandContext, CustomerAccount, project_account, take_snapshot
from domain.credit_monitoring import herfindahl, reconcile_warnings, record_review, review_due
from domain.errors import RuleViolation
from domain.scorecard import decode_policy

POLICY = decode_policy(resources.files("services").joinpath("credit_policy.toml").read_bytes())


def ctx(actor: str = "alice") -> CommandContext:
    return CommandContext(actor=actor, recorded_at=datetime(2026, 1, 1, tzinfo=UTC), correlation_id=uuid.uuid4(), causation_id=uuid.uuid4())


def good() -> tuple[ce.FinancialIndicators, ce.PaymentBehaviour]:
    return (ce.FinancialIndicators(current_ratio=Decimal("2.5"), debt_ratio=Decimal("0.2"), profitability=Decimal("0.12"), years_trading=20, external_rating="AA"),
            ce.PaymentBehaviour())


@pytest.fixture
def account() -> CustomerAccount:
    """Grade A (score 100), limit 10,000.00, one open invoice of 3,000.00 due 2026-01-31."""
    acc = CustomerAccount.register(ctx(), customer_id="C1", name="Acme", currency="EUR", payment_terms_days=30)
    financial, behaviour = good()
    cr.assess(acc, ctx(), POLICY, assessed_on=date(2026, 1, 1), financial=financial, operating_state="normal", behaviour=behaviour)
    cr.set_limit(acc, ctx(), POLICY, limit_minor=1_000_000, reason="opening limit")
    acc.issue_invoice(ctx(), invoice_number="INV-1", currency="EUR", amount_minor=300_000, issue_date=date(2026, 1, 1))
    acc.collect_events()
    return acc


def last(acc: CustomerAccount) -> ce.OrderCreditChecked:
    return next(e for e in reversed(acc.pending) if isinstance(e, ce.OrderCreditChecked))


def refused(call, field: str, rule: str, acc: CustomerAccount) -> RuleViolation:
    before = (acc.version, len(acc.pending))
    with pytest.raises(RuleViolation) as err:
        call()
    assert (err.value.field, err.value.rule) == (field, rule), err.value
    assert (acc.version, len(acc.pending)) == before
    return err.value


def test_assessment_scores_grades_and_explains():
    acc = CustomerAccount.register(ctx(), customer_id="C2", name="Beta", currency="EUR")
    financial = ce.FinancialIndicators(current_ratio=Decimal("1.4"), debt_ratio=Decimal("0.6"), years_trading=5)
    behaviour = ce.PaymentBehaviour(average_days_late=Decimal(15), share_paid_late=Decimal("0.325"), broken_promises=1, disputes=2, overdue_days=45)
    event = cr.assess(acc, ctx(), POLICY, assessed_on=date(2026, 3, 1), financial=financial, operating_state="watch", behaviour=behaviour)
    # current ratio 6, debt 5, profitability missing 5, years 3.5556, rating missing 5, state 5,
    # days late 6, share late 4, promises 5.3333, disputes 2, overdue 4  -> 50.8889 -> 51
    assert (event.score, event.grade, event.model_version) == (51, "C", "arledger-scorecard-1")
    assert event.reason_codes[:3] == ("AVERAGE_DAYS_LATE_WEAK", "CURRENT_RATIO_WEAK", "DEBT_RATIO_WEAK")
    assert {f.factor: f.points for f in event.factors}["years_trading"] == 4
    assert acc.state.credit.grade == "C"


def test_order_within_limit_is_approved_with_figures(account):
    cr.place_order(account, ctx(), order_id="SO-1", currency="EUR", amount_minor=500_000, ordered_on=date(2026, 1, 10))
    checked = cr.check_order(account, ctx(), POLICY, order_id="SO-1", checked_on=date(2026, 1, 10))
    f = checked.figures
    assert (checked.decision, checked.reasons) == ("approve", ())
    assert (f.open_ar_minor, f.open_orders_minor, f.order_minor, f.exposure_minor, f.net_exposure_minor) == (300_000, 0, 500_000, 800_000, 800_000)


def test_exposure_counts_open_orders_and_an_invoiced_order_once(account):
    cr.set_limit(account, ctx(), POLICY, limit_minor=0, reason="reset")  # decreases never need approval
    cr.set_limit(account, ctx(), POLICY, limit_minor=900_000, reason="small")
    cr.place_order(account, ctx(), order_id="SO-1", currency="EUR", amount_minor=400_000, ordered_on=date(2026, 1, 10))
    cr.place_order(account, ctx(), order_id="SO-2", currency="EUR", amount_minor=200_000, ordered_on=date(2026, 1, 10))
    f = cr.check_order(account, ctx(), POLICY, order_id="SO-2", checked_on=date(2026, 1, 10)).figures
    assert (f.open_ar_minor, f.open_orders_minor, f.exposure_minor) == (300_000, 400_000, 900_000)
    assert cr.check_order(account, ctx(), POLICY, order_id="SO-1", checked_on=date(2026, 1, 10)).decision == "approve"
    cr.invoice_order(account, ctx(), order_id="SO-1", invoice_number="INV-2", issue_date=date(2026, 1, 12))
    f = cr.check_order(account, ctx(), POLICY, order_id="SO-2", checked_on=date(2026, 1, 12)).figures
    assert (f.open_ar_minor, f.open_orders_minor, f.exposure_minor) == (700_000, 0, 900_000)


def test_over_limit_holds_and_far_over_rejects_with_how_much(account):
    cr.place_order(account, ctx(), order_id="SO-1", currency="EUR", amount_minor=800_000, ordered_on=date(2026, 1, 10))
    checked = cr.check_order(account, ctx(), POLICY, order_id="SO-1", checked_on=date(2026, 1, 10))
    assert checked.decision == "hold"  # 300,000 + 800,000 is over 1,000,000 by 100,000
    assert [(r.code, r.outcome, r.measured, r.threshold) for r in checked.reasons] == [("OVER_LIMIT", "hold", 100_000, 1_000_000)]
    cr.place_order(account, ctx(), order_id="SO-2", currency="EUR", amount_minor=2_000_000, ordered_on=date(2026, 1, 10))
    checked = cr.check_order(account, ctx(), POLICY, order_id="SO-2", checked_on=date(2026, 1, 10))
    # 300,000 + 800,000 (held, still counts) + 2,000,000: over by 2,100,000 > 50 % of the limit
    assert checked.decision == "reject" and (checked.reasons[0].code, checked.reasons[0].measured) == ("OVER_LIMIT", 2_100_000)


def test_insurance_and_guarantee_reduce_net_exposure(account):
    cr.record_cover(account, ctx(), kind="insurance", cover_id="INS-1", provider="Coface", currency="EUR", covered_minor=200_000,
                    valid_from=date(2026, 1, 1), valid_until=date(2026, 6, 30))
    cr.record_cover(account, ctx(), kind="guarantee", cover_id="G-1", provider="Bank", currency="EUR", covered_minor=150_000, valid_from=date(2026, 1, 1))
    cr.place_order(account, ctx(), order_id="SO-1", currency="EUR", amount_minor=1_000_000, ordered_on=date(2026, 1, 10))
    checked = cr.check_order(account, ctx(), POLICY, order_id="SO-1", checked_on=date(2026, 1, 10))
    assert (checked.figures.covered_minor, checked.figures.net_exposure_minor, checked.decision) == (350_000, 950_000, "approve")
    checked = cr.check_order(account, ctx(), POLICY, order_id="SO-1", checked_on=date(2026, 7, 1))  # insurance expired
    assert checked.figures.covered_minor == 150_000 and "OVER_LIMIT" in [r.code for r in checked.reasons]


def test_overdue_beyond_grade_days_holds(account):
    cr.place_order(account, ctx(), order_id="SO-1", currency="EUR", amount_minor=100, ordered_on=date(2026, 3, 20))
    checked = cr.check_order(account, ctx(), POLICY, order_id="SO-1", checked_on=date(2026, 3, 20))  # due 01-31: 48 days
    assert checked.decision == "hold"
    assert [(r.code, r.measured, r.threshold) for r in checked.reasons] == [("OVERDUE_BEYOND_POLICY", 48, 45)]


def test_grade_e_requires_prepayment_and_is_on_automatic_hold():
    acc = CustomerAccount.register(ctx(), customer_id="C3", name="Gamma", currency="EUR")
    bad = ce.FinancialIndicators(current_ratio=Decimal("0.5"), debt_ratio=Decimal("0.95"), profitability=Decimal("-0.2"), years_trading=1, external_rating="CCC")
    cr.assess(acc, ctx(), POLICY, assessed_on=date(2026, 1, 1), financial=bad, operating_state="distressed",
              behaviour=ce.PaymentBehaviour(average_days_late=Decimal(40), share_paid_late=Decimal(1), broken_promises=4, disputes=5, overdue_days=120))
    placed = [e for e in acc.pending if isinstance(e, ce.CreditHoldPlaced)]
    assert acc.state.credit.grade == "E" and [(e.cause, e.automatic) for e in placed] == [("grade", True)]
    cr.place_order(acc, ctx(), order_id="SO-9", currency="EUR", amount_minor=1_000, ordered_on=date(2026, 1, 2))
    checked = cr.check_order(acc, ctx(), POLICY, order_id="SO-9", checked_on=date(2026, 1, 2))
    assert checked.decision == "reject"
    assert [r.code for r in checked.reasons] == ["PREPAYMENT_REQUIRED", "NO_CREDIT_LIMIT", "CUSTOMER_ON_HOLD"]
    assert acc.state.credit.orders["SO-9"].status == "rejected" and acc.state.credit.open_orders_minor == 0


def test_grade_d_requires_a_guarantee(account):
    account.state.credit.grade = "D"  # as if assessed D; the limit 10,000.00 is D's cap
    cr.place_order(account, ctx(), order_id="SO-1", currency="EUR", amount_minor=100, ordered_on=date(2026, 1, 5))
    checked = cr.check_order(account, ctx(), POLICY, order_id="SO-1", checked_on=date(2026, 1, 5))
    assert [(r.code, r.outcome) for r in checked.reasons] == [("GUARANTEE_REQUIRED", "hold")]


def test_automatic_overdue_hold_is_placed_and_released_when_paid(account):
    cr.place_order(account, ctx(), order_id="SO-1", currency="EUR", amount_minor=100, ordered_on=date(2026, 4, 15))
    checked = cr.check_order(account, ctx(), POLICY, order_id="SO-1", checked_on=date(2026, 4, 15))  # 74 days > 60
    holds = [e for e in account.pending if isinstance(e, ce.CreditHoldPlaced)]
    assert [(h.cause, h.measured, h.threshold) for h in holds] == [("overdue", 74, 60)]
    assert "CUSTOMER_ON_HOLD" in [r.code for r in checked.reasons]
    account.receive_payment(ctx(), payment_id="P1", currency="EUR", amount_minor=300_000, value_date=date(2026, 4, 16))
    account.allocate_payment(ctx(), payment_id="P1")
    assert cr.open_ar(account.state) == 0
    checked = cr.check_order(account, ctx(), POLICY, order_id="SO-1", checked_on=date(2026, 4, 16))
    released = [e for e in account.pending if isinstance(e, ce.CreditHoldReleased)]
    assert [(r.cause, r.automatic) for r in released] == [("overdue", True)] and checked.decision == "approve"


def test_manual_hold_and_release_with_reason(account):
    cr.place_hold(account, ctx(), reason="insolvency rumours", placed_on=date(2026, 1, 5))
    refused(lambda: cr.place_hold(account, ctx(), reason="again", placed_on=date(2026, 1, 5)), "customer_id", "not_on_manual_hold", account)
    cr.place_order(account, ctx(), order_id="SO-1", currency="EUR", amount_minor=100, ordered_on=date(2026, 1, 5))
    checked = cr.check_order(account, ctx(), POLICY, order_id="SO-1", checked_on=date(2026, 1, 5))
    assert checked.decision == "hold" and checked.reasons[0].message == "credit hold (manual): insolvency rumours"
    cr.release_hold(account, ctx(), reason="rumours false", released_on=date(2026, 1, 6))
    assert account.state.credit.holds == {}


def test_limit_increase_above_threshold_needs_a_second_actor(account):
    event = cr.set_limit(account, ctx("alice"), POLICY, limit_minor=2_500_000, reason="growth")  # +1,500,000 > 1,000,000
    assert isinstance(event, ce.CreditLimitIncreaseRequested) and account.state.credit.limit_minor == 1_000_000
    refused(lambda: cr.approve_limit(account, ctx("alice"), POLICY, request_id=event.request_id), "actor", "four_eyes", account)
    cr.approve_limit(account, ctx("bob"), POLICY, request_id=event.request_id)
    assert account.state.credit.limit_minor == 2_500_000
    assert account.pending[-1].approved_by == "bob"
    refused(lambda: cr.approve_limit(account, ctx("carol"), POLICY, request_id=event.request_id), "request_id", "is_pending", account)


def test_limit_above_grade_cap_and_terms_above_grade_maximum_are_refused(account):
    refused(lambda: cr.set_limit(account, ctx(), POLICY, limit_minor=50_000_001, reason="x"), "limit_minor", "within_grade_cap", account)
    refused(lambda: cr.set_terms(account, ctx(), lambda: POLICY, payment_terms_days=61), "payment_terms_days", "within_grade_maximum", account)
    cr.set_terms(account, ctx(), lambda: POLICY, payment_terms_days=60)
    assert account.state.payment_terms_days == 60
    never_assessed = CustomerAccount.register(ctx(), customer_id="C9", name="New", currency="EUR")
    cr.set_terms(never_assessed, ctx(), lambda: POLICY, payment_terms_days=90)  # no grade, no grade maximum
    assert never_assessed.state.payment_terms_days == 90


def test_held_order_released_only_by_someone_else(account):
    cr.place_order(account, ctx("sales"), order_id="SO-1", currency="EUR", amount_minor=800_000, ordered_on=date(2026, 1, 10))
    cr.check_order(account, ctx("sales"), POLICY, order_id="SO-1", checked_on=date(2026, 1, 10))
    refused(lambda: cr.release_order(account, ctx("sales"), POLICY, order_id="SO-1", reason="ok"), "actor", "four_eyes", account)
    cr.release_order(account, ctx("manager"), POLICY, order_id="SO-1", reason="known customer")
    assert account.state.credit.orders["SO-1"].status == "approved"
    refused(lambda: cr.reject_order(account, ctx("manager"), POLICY, order_id="SO-1", reason="no"), "order_id", "is_held", account)


def test_running_open_ar_matches_the_invoices_and_survives_snapshots(account):
    account.issue_credit_note(ctx(), credit_note_number="CN-1", currency="EUR", amount_minor=100_000, issue_date=date(2026, 1, 2), invoice_number="INV-1")
    account.receive_payment(ctx(), payment_id="P1", currency="EUR", amount_minor=500_000, value_date=date(2026, 1, 3))
    account.allocate_payment(ctx(), payment_id="P1")
    account.reverse_payment(ctx(), payment_id="P1", reversed_on=date(2026, 1, 4), reason="bounced")
    derived = sum(i.open_minor for i in account.state.invoices.values())
    assert cr.open_ar(account.state) == derived == 200_000
    rebuilt = project_account(None, [take_snapshot(account)])
    assert cr.open_ar(rebuilt.state) == 200_000
    rebuilt.state.credit.ar_synced = False  # a snapshot from before credit management
    assert cr.open_ar(rebuilt.state) == 200_000


def test_review_due_periodically(account):
    account.receive_payment(ctx(), payment_id="P1", currency="EUR", amount_minor=300_000, value_date=date(2026, 1, 20))
    account.allocate_payment(ctx(), payment_id="P1")
    assert review_due(account.state, POLICY, date(2026, 12, 31)) is None  # grade A: yearly
    assert review_due(account.state, POLICY, date(2027, 1, 1)) == (date(2027, 1, 1), "periodic")


def test_review_brought_forward_by_a_dispute(account):
    account.dispute_invoice(ctx(), invoice_number="INV-1", disputed_on=date(2026, 2, 10), reason="damaged")
    event = record_review(account, ctx(), POLICY, date(2026, 2, 11))
    assert (event.due_on, event.trigger, event.review_id) == (date(2026, 2, 10), "dispute", "2026-02-10:dispute")
    assert record_review(account, ctx(), POLICY, date(2026, 2, 12)) is None  # idempotent


def test_review_brought_forward_by_a_bucket_crossed(account):
    due = review_due(account.state, POLICY, date(2026, 3, 10))  # due 01-31: 38 days, crossed 30 on 03-03
    assert due == (date(2026, 3, 3), "bucket_crossed_30")


def test_review_brought_forward_by_a_broken_promise_after_the_assessment(account):
    # assessed 2026-01-01 (grade A); promises broken 2025-12-20 (before: no signal) and 2026-02-05
    broken = (date(2025, 12, 20), date(2026, 2, 5))
    assert review_due(account.state, POLICY, date(2026, 2, 4), broken) is None
    event = record_review(account, ctx(), POLICY, date(2026, 2, 6), broken)
    assert (event.due_on, event.trigger, event.review_id) == (date(2026, 2, 5), "broken_promise", "2026-02-05:broken_promise")
    assert record_review(account, ctx(), POLICY, date(2026, 2, 7), broken) is None  # idempotent


def test_broken_promise_warning_names_threshold_and_count(account):
    raised = reconcile_warnings(account, ctx(), POLICY, date(2026, 1, 20), book_ar_minor=0, broken_promises=2)
    assert [(e.rule, e.threshold, e.measured) for e in raised] == [("broken_promise", "0", "2")]
    assert reconcile_warnings(account, ctx(), POLICY, date(2026, 1, 21), book_ar_minor=0, broken_promises=3) == []
    cleared = reconcile_warnings(account, ctx(), POLICY, date(2026, 5, 1), book_ar_minor=0, broken_promises=0)
    assert [(e.rule, e.threshold, e.measured) for e in cleared if e.rule == "broken_promise"] == [("broken_promise", "0", "0")]


def test_early_warnings_raise_and_clear_idempotently(account):
    cr.place_order(account, ctx(), order_id="SO-1", currency="EUR", amount_minor=900_000, ordered_on=date(2026, 3, 1))
    raised = reconcile_warnings(account, ctx(), POLICY, date(2026, 3, 15), book_ar_minor=1_000_000)
    assert {(e.rule, e.threshold, e.measured) for e in raised} == {
        ("exposure_over_limit", "1000000", "1200000"), ("days_overdue_above", "30", "43"), ("concentration_above", "20", "30.00"),
    }
    assert reconcile_warnings(account, ctx(), POLICY, date(2026, 3, 15), book_ar_minor=1_000_000) == []
    cleared = reconcile_warnings(account, ctx(), POLICY, date(2026, 3, 15), book_ar_minor=10_000_000)
    assert [(e.rule, e.measured) for e in cleared] == [("concentration_above", "3.00")]


def test_grade_downgrade_warning(account):
    cr.assess(account, ctx(), POLICY, assessed_on=date(2026, 6, 1), financial=ce.FinancialIndicators(), operating_state="watch",
              behaviour=ce.PaymentBehaviour(average_days_late=Decimal(20)))
    assert (account.state.credit.previous_grade, account.state.credit.grade) == ("A", "C")
    raised = reconcile_warnings(account, ctx(), POLICY, date(2026, 1, 2), book_ar_minor=0)
    assert [(e.rule, e.threshold, e.measured) for e in raised] == [("grade_downgrade", "A", "C")]


def test_herfindahl_index():
    assert herfindahl([50, 50]) == Decimal("0.5000")
    assert herfindahl([70, 20, 10]) == Decimal("0.5400")
    assert herfindahl([]) == Decimal(0)


def test_cancelled_and_rejected_orders_leave_exposure(account):
    cr.place_order(account, ctx("sales"), order_id="SO-1", currency="EUR", amount_minor=800_000, ordered_on=date(2026, 1, 10))
    cr.place_order(account, ctx("sales"), order_id="SO-2", currency="EUR", amount_minor=150_000, ordered_on=date(2026, 1, 10))
    assert account.state.credit.open_orders_minor == 950_000
    cr.cancel_order(account, ctx("sales"), order_id="SO-2", cancelled_on=date(2026, 1, 11), reason="customer changed mind")
    assert account.state.credit.open_orders_minor == 800_000
    assert cr.check_order(account, ctx("sales"), POLICY, order_id="SO-1", checked_on=date(2026, 1, 11)).decision == "hold"
    cr.reject_order(account, ctx("manager"), POLICY, order_id="SO-1", reason="too much for now")
    assert account.state.credit.open_orders_minor == 0 and account.state.credit.orders["SO-1"].status == "rejected"
    refused(lambda: cr.cancel_order(account, ctx(), order_id="SO-1", cancelled_on=date(2026, 1, 12), reason="x"), "order_id", "is_open", account)
    refused(lambda: cr.check_order(account, ctx(), POLICY, order_id="SO-1", checked_on=date(2026, 1, 12)), "order_id", "is_open", account)


def test_only_approved_orders_are_invoiced(account):
    cr.place_order(account, ctx(), order_id="SO-1", currency="EUR", amount_minor=100_000, ordered_on=date(2026, 1, 10))
    refused(lambda: cr.invoice_order(account, ctx(), order_id="SO-1", invoice_number="INV-9", issue_date=date(2026, 1, 10)), "order_id", "is_approved", account)


def test_credit_managers_listed_in_the_policy_decide_holds(account):
    import msgspec

    policy = msgspec.structs.replace(POLICY, checks=msgspec.structs.replace(POLICY.checks, credit_managers=("carol",)))
    cr.place_order(account, ctx("sales"), order_id="SO-1", currency="EUR", amount_minor=800_000, ordered_on=date(2026, 1, 10))
    cr.check_order(account, ctx("sales"), policy, order_id="SO-1", checked_on=date(2026, 1, 10))
    refused(lambda: cr.release_order(account, ctx("bob"), policy, order_id="SO-1", reason="ok"), "actor", "credit_manager", account)
    cr.release_order(account, ctx("carol"), policy, order_id="SO-1", reason="ok")


def test_order_and_cover_input_rules(account):
    refused(lambda: cr.place_order(account, ctx(), order_id="SO-1", currency="USD", amount_minor=100, ordered_on=date(2026, 1, 1)), "currency", "currency_match", account)
    refused(lambda: cr.place_order(account, ctx(), order_id="SO-1", currency="EUR", amount_minor=0, ordered_on=date(2026, 1, 1)), "amount_minor", "positive", account)
    refused(lambda: cr.record_cover(account, ctx(), kind="guarantee", cover_id="G", provider="Bank", currency="EUR", covered_minor=100,
                                    valid_from=date(2026, 2, 1), valid_until=date(2026, 1, 1)), "valid_until", "not_before_valid_from", account)
    refused(lambda: cr.set_limit(account, ctx(), POLICY, limit_minor=-1, reason="x"), "limit_minor", "non_negative_minor", account)


def test_limit_increase_rejected_keeps_the_old_limit(account):
    request = cr.set_limit(account, ctx("alice"), POLICY, limit_minor=3_000_000, reason="big order")
    cr.reject_limit(account, ctx("bob"), request_id=request.request_id, reason="accounts too thin")
    assert account.state.credit.limit_minor == 1_000_000
    assert account.state.credit.limit_requests[request.request_id].status == "rejected"


def test_payment_behaviour_inputs_are_checked(account):
    refused(lambda: cr.assess(account, ctx(), POLICY, assessed_on=date(2026, 2, 1), financial=ce.FinancialIndicators(), operating_state="normal",
                              behaviour=ce.PaymentBehaviour(share_paid_late=Decimal("1.5"))), "behaviour.share_paid_late", "share", account)
