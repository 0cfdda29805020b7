"""Credit management on the customer account: the rules (functions that check, then
record through the account) and the appliers that keep ``AccountState.credit``.

Importing this module registers the appliers, so that every account load, snapshot
and cache copy carries the credit state. Decisions that need the ledger-wide policy take
it as an argument: the domain never reads configuration itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from domain import credit_events as ce
from domain import events as ev
from domain.account import AccountState, CommandContext, CustomerAccount, _text, chain_applier, register_applier
from domain.credit_check import check, figures
from domain.credit_state import CoverState, HoldState, LimitRequestState, OrderState, Signal, WarningState
from domain.errors import AlreadyExists, NotFound, RuleViolation
from domain.money import check_currency, check_positive_amount
from domain.risk import RiskProfile
from domain.scorecard import CreditPolicy, Indicators, score

# ---- figures read from the account ----------------------------------------------------------


def open_ar(state: AccountState) -> int:
    """Open AR in the account's currency: the running total, derived once if a snapshot
    from before credit management did not carry it."""
    credit = state.credit
    if not credit.ar_synced:
        credit.open_ar_minor = sum(i.open_minor for i in state.invoices.values() if i.currency == state.currency)
        credit.ar_synced = True
    return credit.open_ar_minor


def overdue(state: AccountState, as_of: date) -> tuple[int, int]:
    """(days past due of the oldest open installment, amount past due) on ``as_of``."""
    days, amount = 0, 0
    for invoice in state.invoices.values():
        for inst in invoice.installments:
            if inst.due_date < as_of and inst.open_minor > 0:
                days = max(days, (as_of - inst.due_date).days)
                amount += inst.open_minor
    return days, amount


def account_exposure(state: AccountState, as_of: date, excluding: str | None = None) -> tuple[int, int]:
    """(exposure, net exposure): open AR + open orders (but ``excluding``), less covers."""
    orders = state.credit.open_orders_minor
    if excluding is not None and excluding in state.credit.orders and state.credit.orders[excluding].counts_in_exposure:
        orders -= state.credit.orders[excluding].open_minor
    exposure = open_ar(state) + orders
    return exposure, max(0, exposure - state.credit.covered_on(as_of))


def indicators_of(financial: ce.FinancialIndicators, operating_state: str, behaviour: ce.PaymentBehaviour) -> Indicators:
    def dec(value: int | None) -> Decimal | None:
        return None if value is None else Decimal(value)

    return Indicators(
        current_ratio=financial.current_ratio, debt_ratio=financial.debt_ratio, profitability=financial.profitability,
        years_trading=dec(financial.years_trading), external_rating=financial.external_rating, operating_state=operating_state,
        average_days_late=behaviour.average_days_late, share_paid_late=behaviour.share_paid_late,
        broken_promises=dec(behaviour.broken_promises), disputes=dec(behaviour.disputes), overdue_days=dec(behaviour.overdue_days),
    )


def behaviour_from_profile(profile: RiskProfile, *, broken_promises: int | None = None) -> ce.PaymentBehaviour:
    """The payment-behaviour inputs of an assessment, read off a customer's risk profile
    (broken promises: the profile's count of collections' verdicts, unless given)."""
    oldest = profile.oldest_overdue
    return ce.PaymentBehaviour(
        average_days_late=profile.payment.average_days_late or Decimal(0),
        share_paid_late=profile.payment.share_invoices_late or Decimal(0),
        broken_promises=profile.promises.broken if broken_promises is None else broken_promises,
        disputes=profile.open_disputes_count,
        overdue_minor=profile.overdue_minor,
        overdue_days=oldest.days_past_due if oldest is not None else 0,
    )


# ---- assessments, limits, terms, covers -----------------------------------------------------


def assess(account: CustomerAccount, ctx: CommandContext, policy: CreditPolicy, *, assessed_on: date,
           financial: ce.FinancialIndicators, operating_state: str, behaviour: ce.PaymentBehaviour) -> ce.CreditAssessed:
    _text(operating_state, "operating_state", max_len=64)
    if behaviour.average_days_late < 0:
        raise RuleViolation("behaviour.average_days_late", "non_negative", "must be 0 or more")
    if not 0 <= behaviour.share_paid_late <= 1:
        raise RuleViolation("behaviour.share_paid_late", "share", "must be a share from 0 to 1 (0.25 = 25 %)")
    result = score(policy.scorecard, indicators_of(financial, operating_state, behaviour))
    event = account._record(
        ctx, ce.CreditAssessed, assessed_on=assessed_on, financial=financial, operating_state=operating_state, behaviour=behaviour,
        model_version=result.model_version, score=result.score, grade=result.grade, previous_grade=account.state.credit.grade,
        reason_codes=result.reason_codes, factors=result.factors,
    )
    reconcile_holds(account, ctx, policy, assessed_on)
    return event


def set_limit(account: CustomerAccount, ctx: CommandContext, policy: CreditPolicy, *, limit_minor: int, reason: str,
              request_id: str | None = None) -> ce.CreditLimitSet | ce.CreditLimitIncreaseRequested:
    credit = account.state.credit
    if isinstance(limit_minor, bool) or not isinstance(limit_minor, int) or limit_minor < 0:
        raise RuleViolation("limit_minor", "non_negative_minor", "must be a whole number of minor units, 0 or more")
    _text(reason, "reason")
    _within_grade_cap(account.state, policy, limit_minor)
    increase = limit_minor - (credit.limit_minor or 0)
    threshold = policy.limits.approval_threshold_minor
    if increase > threshold:
        request_id = request_id or f"LR-{account.version + 1}"
        _text(request_id, "request_id", max_len=64)
        if request_id in credit.limit_requests:
            raise AlreadyExists("request_id", request_id, "limit request")
        return account._record(
            ctx, ce.CreditLimitIncreaseRequested, request_id=request_id, currency=account.state.currency, limit_minor=limit_minor,
            previous_limit_minor=credit.limit_minor, threshold_minor=threshold, reason=reason,
        )
    return account._record(
        ctx, ce.CreditLimitSet, currency=account.state.currency, limit_minor=limit_minor, previous_limit_minor=credit.limit_minor, reason=reason,
    )


def _within_grade_cap(state: AccountState, policy: CreditPolicy, limit_minor: int) -> None:
    grade = state.credit.grade or policy.unassessed_grade
    cap = policy.grade_policy(grade).max_limit_minor
    if limit_minor > cap:
        raise RuleViolation("limit_minor", "within_grade_cap", f"{limit_minor} is above grade {grade}'s maximum limit {cap}")


def _pending_request(state: AccountState, request_id: str) -> LimitRequestState:
    request = state.credit.limit_requests.get(request_id)
    if request is None:
        raise NotFound("request_id", request_id, "limit request")
    if request.status != "requested":
        raise RuleViolation("request_id", "is_pending", f"limit request {request_id!r} was already {request.status}")
    return request


def approve_limit(account: CustomerAccount, ctx: CommandContext, policy: CreditPolicy, *, request_id: str) -> ce.CreditLimitSet:
    request = _pending_request(account.state, request_id)
    if ctx.actor == request.requested_by:
        raise RuleViolation("actor", "four_eyes", f"{ctx.actor!r} requested this increase and cannot also approve it")
    _within_grade_cap(account.state, policy, request.limit_minor)
    account._record(ctx, ce.CreditLimitIncreaseApproved, request_id=request_id, limit_minor=request.limit_minor, requested_by=request.requested_by)
    return account._record(
        ctx, ce.CreditLimitSet, currency=account.state.currency, limit_minor=request.limit_minor,
        previous_limit_minor=account.state.credit.limit_minor, reason=f"increase {request_id} approved", request_id=request_id, approved_by=ctx.actor,
    )


def reject_limit(account: CustomerAccount, ctx: CommandContext, *, request_id: str, reason: str) -> ce.CreditLimitIncreaseRejected:
    request = _pending_request(account.state, request_id)
    _text(reason, "reason")
    return account._record(ctx, ce.CreditLimitIncreaseRejected, request_id=request_id, requested_by=request.requested_by, reason=reason)


def set_terms(account: CustomerAccount, ctx: CommandContext, policy: Callable[[], CreditPolicy], *, payment_terms_days: int, reason: str = "") -> None:
    """Payment terms of an assessed customer are bounded by the grade's maximum (a customer
    never assessed keeps the ledger's own rule, 0-365 days). ``policy`` is only read then."""
    grade = account.state.credit.grade
    if grade is not None and isinstance(payment_terms_days, int):
        maximum = policy().grade_policy(grade).max_terms_days
        if payment_terms_days > maximum:
            raise RuleViolation("payment_terms_days", "within_grade_maximum", f"{payment_terms_days} days is above grade {grade}'s maximum of {maximum}")
    account.set_payment_terms(ctx, payment_terms_days, reason)


def record_cover(account: CustomerAccount, ctx: CommandContext, *, kind: str, cover_id: str, provider: str, currency: str,
                 covered_minor: int, valid_from: date, valid_until: date | None = None) -> ce.Event:
    _text(cover_id, "cover_id", max_len=64)
    if cover_id in account.state.credit.covers:
        raise AlreadyExists("cover_id", cover_id, "cover")
    _text(provider, "insurer" if kind == "insurance" else "guarantor")
    check_currency(currency)
    if currency != account.state.currency:
        raise RuleViolation("currency", "currency_match", f"{currency} does not match the account currency {account.state.currency}")
    check_positive_amount(covered_minor, "covered_minor")
    if valid_until is not None and valid_until < valid_from:
        raise RuleViolation("valid_until", "not_before_valid_from", f"{valid_until} is before {valid_from}")
    cls, provider_field = (ce.CreditInsuranceRecorded, "insurer") if kind == "insurance" else (ce.GuaranteeRecorded, "guarantor")
    return account._record(ctx, cls, cover_id=cover_id, currency=currency, covered_minor=covered_minor, valid_from=valid_from,
                           valid_until=valid_until, **{provider_field: provider})


# ---- sales orders and the credit check ------------------------------------------------------


def order(state: AccountState, order_id: str) -> OrderState:
    found = state.credit.orders.get(order_id)
    if found is None:
        raise NotFound("order_id", order_id, "sales order")
    return found


def place_order(account: CustomerAccount, ctx: CommandContext, *, order_id: str, currency: str, amount_minor: int,
                ordered_on: date, description: str = "") -> ce.SalesOrderPlaced:
    _text(order_id, "order_id", max_len=64)
    if order_id in account.state.credit.orders:
        raise AlreadyExists("order_id", order_id, "sales order")
    check_currency(currency)
    if currency != account.state.currency:
        raise RuleViolation("currency", "currency_match", f"{currency} does not match the account currency {account.state.currency}")
    check_positive_amount(amount_minor)
    return account._record(ctx, ce.SalesOrderPlaced, order_id=order_id, currency=currency, amount_minor=amount_minor,
                           ordered_on=ordered_on, description=description)


def check_order(account: CustomerAccount, ctx: CommandContext, policy: CreditPolicy, *, order_id: str, checked_on: date,
                policy_version: int = 0) -> ce.OrderCreditChecked:
    """Reconcile the automatic holds, then decide on the order and record the decision."""
    state = account.state
    the_order = order(state, order_id)
    if the_order.status not in ("placed", "held", "approved"):
        raise RuleViolation("order_id", "is_open", f"order {order_id!r} is {the_order.status}")
    reconcile_holds(account, ctx, policy, checked_on, excluding=order_id)
    f = order_figures(state, policy, the_order, checked_on)
    decision, reasons = check(policy, f, {cause: hold.reason for cause, hold in state.credit.holds.items()})
    return account._record(ctx, ce.OrderCreditChecked, order_id=order_id, checked_on=checked_on, decision=decision,
                           reasons=reasons, figures=f, policy_version=policy_version)


def order_figures(state: AccountState, policy: CreditPolicy, the_order: OrderState, day: date) -> ce.CheckFigures:
    credit = state.credit
    others = credit.open_orders_minor - (the_order.open_minor if the_order.counts_in_exposure else 0)
    return figures(
        currency=state.currency, open_ar_minor=open_ar(state), open_orders_minor=others, order_minor=the_order.open_minor,
        covered_minor=credit.covered_on(day), limit_minor=credit.limit_minor, days_overdue=overdue(state, day)[0],
        grade=credit.grade or policy.unassessed_grade,
    )


def _credit_manager(policy: CreditPolicy, ctx: CommandContext, placed_by: str) -> None:
    managers = policy.checks.credit_managers
    if managers and ctx.actor not in managers:
        raise RuleViolation("actor", "credit_manager", f"{ctx.actor!r} is not a credit manager")
    if not managers and ctx.actor == placed_by:
        raise RuleViolation("actor", "four_eyes", f"{ctx.actor!r} placed this order and cannot also decide its hold")


def _held(state: AccountState, order_id: str) -> OrderState:
    the_order = order(state, order_id)
    if the_order.status != "held":
        raise RuleViolation("order_id", "is_held", f"order {order_id!r} is {the_order.status}, not held")
    return the_order


def release_order(account: CustomerAccount, ctx: CommandContext, policy: CreditPolicy, *, order_id: str, reason: str) -> ce.HeldOrderReleased:
    the_order = _held(account.state, order_id)
    _text(reason, "reason")
    _credit_manager(policy, ctx, the_order.placed_by)
    return account._record(ctx, ce.HeldOrderReleased, order_id=order_id, reason=reason)


def reject_order(account: CustomerAccount, ctx: CommandContext, policy: CreditPolicy, *, order_id: str, reason: str) -> ce.HeldOrderRejected:
    the_order = _held(account.state, order_id)
    _text(reason, "reason")
    _credit_manager(policy, ctx, the_order.placed_by)
    return account._record(ctx, ce.HeldOrderRejected, order_id=order_id, reason=reason)


def cancel_order(account: CustomerAccount, ctx: CommandContext, *, order_id: str, cancelled_on: date, reason: str) -> ce.SalesOrderCancelled:
    the_order = order(account.state, order_id)
    if not the_order.counts_in_exposure:
        raise RuleViolation("order_id", "is_open", f"order {order_id!r} is {the_order.status}")
    _text(reason, "reason")
    return account._record(ctx, ce.SalesOrderCancelled, order_id=order_id, cancelled_on=cancelled_on, reason=reason)


def invoice_order(account: CustomerAccount, ctx: CommandContext, *, order_id: str, invoice_number: str, issue_date: date,
                  amount_minor: int | None = None, due_date: date | None = None) -> ce.SalesOrderInvoiced:
    """Issue the order's invoice (carrying ``sales_order_id``) and close the order, in one
    save: the amount moves from open orders to open AR, never counted twice."""
    the_order = order(account.state, order_id)
    if the_order.status != "approved":
        raise RuleViolation("order_id", "is_approved", f"order {order_id!r} is {the_order.status}; only approved orders are invoiced")
    amount = the_order.open_minor if amount_minor is None else amount_minor
    account.issue_invoice(ctx, invoice_number=invoice_number, currency=account.state.currency, amount_minor=amount,
                          issue_date=issue_date, due_date=due_date, sales_order_id=order_id)
    return account._record(ctx, ce.SalesOrderInvoiced, order_id=order_id, invoice_number=invoice_number, invoiced_minor=amount)


# ---- credit holds ----------------------------------------------------------------------------


def place_hold(account: CustomerAccount, ctx: CommandContext, *, reason: str, placed_on: date) -> ce.CreditHoldPlaced:
    _text(reason, "reason")
    if "manual" in account.state.credit.holds:
        raise RuleViolation("customer_id", "not_on_manual_hold", "the customer is already on a manual credit hold")
    return account._record(ctx, ce.CreditHoldPlaced, cause="manual", automatic=False, reason=reason, placed_on=placed_on)


def release_hold(account: CustomerAccount, ctx: CommandContext, *, reason: str, released_on: date, cause: str = "manual") -> ce.CreditHoldReleased:
    _text(reason, "reason")
    hold = account.state.credit.holds.get(cause)
    if hold is None:
        raise NotFound("cause", cause, "credit hold")
    return account._record(ctx, ce.CreditHoldReleased, cause=cause, automatic=False, reason=reason, released_on=released_on)


def automatic_hold_causes(state: AccountState, policy: CreditPolicy, day: date, excluding: str | None = None) -> dict[str, tuple[int, int, str]]:
    """Causes of an automatic hold that hold on ``day``: cause -> (measured, threshold, reason)."""
    causes: dict[str, tuple[int, int, str]] = {}
    days, _ = overdue(state, day)
    if days > policy.holds.overdue_days:
        causes["overdue"] = (days, policy.holds.overdue_days, f"oldest item {days} days overdue (policy: {policy.holds.overdue_days})")
    limit = state.credit.limit_minor
    if policy.holds.over_limit and limit is not None:
        _, net = account_exposure(state, day, excluding)
        if net > limit:
            causes["over_limit"] = (net, limit, f"net exposure {net} over the limit {limit}")
    grade = state.credit.grade
    if grade is not None and policy.grade_policy(grade).credit_hold:
        causes["grade"] = (policy.grade_rank(grade), policy.grade_rank(grade), f"grade {grade} is on credit hold by policy")
    return causes


def reconcile_holds(account: CustomerAccount, ctx: CommandContext, policy: CreditPolicy, day: date, excluding: str | None = None) -> list[ev.Event]:
    """Place automatic holds whose cause holds and release those whose cause cleared."""
    causes = automatic_hold_causes(account.state, policy, day, excluding)
    recorded: list[ev.Event] = []
    for cause, hold in sorted(account.state.credit.holds.items()):
        if hold.automatic and cause not in causes:
            recorded.append(account._record(ctx, ce.CreditHoldReleased, cause=cause, automatic=True, reason="cause cleared", released_on=day))
    for cause, (measured, threshold, why) in sorted(causes.items()):
        if cause not in account.state.credit.holds:
            recorded.append(account._record(ctx, ce.CreditHoldPlaced, cause=cause, automatic=True, reason=why, placed_on=day,
                                            measured=measured, threshold=threshold))
    return recorded


# ---- appliers ---------------------------------------------------------------------------------


def _ar(state: AccountState, currency: str, delta: int) -> None:
    if state.credit.ar_synced and currency == state.currency:
        state.credit.open_ar_minor += delta


def _line_currency(state: AccountState, line: ev.AllocationLine) -> str:
    return state.invoices[line.invoice_number].currency


def _lines(state: AccountState, lines: Any, sign: int) -> None:
    for line in lines:
        _ar(state, _line_currency(state, line), sign * line.amount_minor)


def _registered(s: AccountState, e: ev.CustomerRegistered) -> None:
    s.credit.ar_synced = True


def _invoice_issued(s: AccountState, e: ev.InvoiceIssued) -> None:
    _ar(s, e.currency, e.amount_minor)
    the_order = s.credit.orders.get(e.sales_order_id) if e.sales_order_id else None
    if the_order is not None and the_order.counts_in_exposure:
        taken = min(the_order.open_minor, e.amount_minor)
        the_order.open_minor -= taken
        s.credit.open_orders_minor -= taken


def _payment_allocated(s: AccountState, e: ev.PaymentAllocated) -> None:
    _ar(s, e.currency, -e.amount_minor)
    inst = s.invoices[e.invoice_number].installments[e.installment - 1]
    if e.value_date > inst.due_date:
        s.credit.signals.append(Signal(kind="late_payment", on=e.value_date))


def _disputed(s: AccountState, e: ev.InvoiceDisputed) -> None:
    s.credit.signals.append(Signal(kind="dispute", on=e.disputed_on))


def _assessed(s: AccountState, e: ce.CreditAssessed) -> None:
    c = s.credit
    c.previous_grade, c.grade, c.score, c.assessed_on = e.previous_grade, e.grade, e.score, e.assessed_on
    c.assessed_overdue_days, c.signals = e.behaviour.overdue_days, []


def _limit_requested(s: AccountState, e: ce.CreditLimitIncreaseRequested) -> None:
    s.credit.limit_requests[e.request_id] = LimitRequestState(request_id=e.request_id, limit_minor=e.limit_minor, requested_by=e.actor)


def _limit_decided(status: str) -> Any:
    def apply(s: AccountState, e: Any) -> None:
        s.credit.limit_requests[e.request_id].status = status
    return apply


def _limit_set(s: AccountState, e: ce.CreditLimitSet) -> None:
    s.credit.limit_minor = e.limit_minor


def _covered(s: AccountState, e: ce.CreditInsuranceRecorded | ce.GuaranteeRecorded) -> None:
    kind, provider = ("insurance", e.insurer) if isinstance(e, ce.CreditInsuranceRecorded) else ("guarantee", e.guarantor)
    s.credit.covers[e.cover_id] = CoverState(kind=kind, provider=provider, covered_minor=e.covered_minor, valid_from=e.valid_from, valid_until=e.valid_until)


def _order_placed(s: AccountState, e: ce.SalesOrderPlaced) -> None:
    s.credit.orders[e.order_id] = OrderState(order_id=e.order_id, amount_minor=e.amount_minor, open_minor=e.amount_minor, ordered_on=e.ordered_on, placed_by=e.actor)
    s.credit.open_orders_minor += e.amount_minor


def _close_order(s: AccountState, order_id: str, status: str) -> None:
    the_order = s.credit.orders[order_id]
    if the_order.counts_in_exposure:
        s.credit.open_orders_minor -= the_order.open_minor
    the_order.status = status


def _order_checked(s: AccountState, e: ce.OrderCreditChecked) -> None:
    the_order = s.credit.orders[e.order_id]
    the_order.decision = e.decision
    if e.decision == "reject":
        _close_order(s, e.order_id, "rejected")
    else:
        the_order.status = "approved" if e.decision == "approve" else "held"


def _hold_placed(s: AccountState, e: ce.CreditHoldPlaced) -> None:
    s.credit.holds[e.cause] = HoldState(cause=e.cause, automatic=e.automatic, reason=e.reason, placed_on=e.placed_on)


def _hold_released(s: AccountState, e: ce.CreditHoldReleased) -> None:
    s.credit.holds.pop(e.cause, None)


def _review_due(s: AccountState, e: ce.CreditReviewDue) -> None:
    s.credit.last_review_id = e.review_id


def _warning_raised(s: AccountState, e: ce.EarlyWarningRaised) -> None:
    s.credit.warnings[e.rule] = WarningState(threshold=e.threshold, measured=e.measured, raised_on=e.as_of)


def _warning_cleared(s: AccountState, e: ce.EarlyWarningCleared) -> None:
    s.credit.warnings.pop(e.rule, None)


def register_signal(event_type: type[ev.Event], kind: str, day_of: Any) -> None:
    """Let another context's event *on the account* bring a review forward. (Collections'
    PromiseToPayBroken is a fact of its own, outside the account: the review sweep reads
    the broken promises from the ``ar_items`` view instead, see ``ReviewCredit``.)"""
    chain_applier(event_type, lambda s, e: s.credit.signals.append(Signal(kind=kind, on=day_of(e))))


chain_applier(ev.CustomerRegistered, _registered)
chain_applier(ev.InvoiceIssued, _invoice_issued)
chain_applier(ev.CreditNoteIssued, lambda s, e: _lines(s, e.applied, -1))
chain_applier(ev.PaymentAllocated, _payment_allocated)
chain_applier(ev.PaymentReversed, lambda s, e: _lines(s, e.unallocated, +1))
chain_applier(ev.WriteOffApproved, lambda s, e: _lines(s, e.applied, -1))
chain_applier(ev.InvoiceDisputed, _disputed)
for _type, _applier in {
    ce.CreditAssessed: _assessed,
    ce.CreditLimitIncreaseRequested: _limit_requested,
    ce.CreditLimitIncreaseApproved: _limit_decided("approved"),
    ce.CreditLimitIncreaseRejected: _limit_decided("rejected"),
    ce.CreditLimitSet: _limit_set,
    ce.CreditInsuranceRecorded: _covered,
    ce.GuaranteeRecorded: _covered,
    ce.SalesOrderPlaced: _order_placed,
    ce.SalesOrderCancelled: lambda s, e: _close_order(s, e.order_id, "cancelled"),
    ce.SalesOrderInvoiced: lambda s, e: _close_order(s, e.order_id, "invoiced"),
    ce.OrderCreditChecked: _order_checked,
    ce.HeldOrderReleased: lambda s, e: setattr(s.credit.orders[e.order_id], "status", "approved"),
    ce.HeldOrderRejected: lambda s, e: _close_order(s, e.order_id, "rejected"),
    ce.CreditHoldPlaced: _hold_placed,
    ce.CreditHoldReleased: _hold_released,
    ce.CreditReviewDue: _review_due,
    ce.EarlyWarningRaised: _warning_raised,
    ce.EarlyWarningCleared: _warning_cleared,
}.items():
    register_applier(_type, _applier)
