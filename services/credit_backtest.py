"""Policy backtest: replay recorded history and decide every recorded order check again
under a candidate policy, recording nothing.

The stream is read once, in order; each customer account is rebuilt in memory exactly as
the ledger saw it. At each ``OrderCreditChecked`` inside [from, to] the account's state
is the state the real check saw (order placed, holds in force); the candidate policy
re-grades the customer's latest assessment inputs with its own scorecard, re-derives the
automatic holds, and decides again. Orders the candidate would have held or rejected but
were approved are followed to their invoices (``sales_order_id``): what was later written
off and what is still overdue on ``to`` is the loss the candidate would have avoided.
Decisions are compared one by one on recorded history; knock-on effects of a different
decision (an order never shipped) are not simulated.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any
from uuid import UUID

import msgspec

from domain import credit as cr
from domain import credit_events as ce
from domain import events as ev
from domain.account import CustomerAccount, project_account
from domain.credit_check import check
from domain.scorecard import CreditPolicy, score
from services.persistence import LedgerStore


class ChangedOrder(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    customer_id: str
    checked_on: date
    amount_minor: int
    recorded: str
    candidate: str
    candidate_grade: str
    reasons: tuple[str, ...]
    written_off_minor: int = 0
    overdue_minor: int = 0


class BacktestReport(msgspec.Struct, kw_only=True):
    date_from: date
    date_to: date
    checks: int = 0
    recorded: dict[str, int] = msgspec.field(default_factory=dict)
    candidate: dict[str, int] = msgspec.field(default_factory=dict)
    approved_exposure_recorded_minor: int = 0
    approved_exposure_candidate_minor: int = 0
    losses_avoided_written_off_minor: int = 0
    losses_avoided_overdue_minor: int = 0
    changed: list[ChangedOrder] = msgspec.field(default_factory=list)


def _candidate_decision(policy: CreditPolicy, account: CustomerAccount, assessed: ce.CreditAssessed | None, e: ce.OrderCreditChecked) -> tuple[str, str, tuple[str, ...]]:
    state = account.state
    grade = policy.unassessed_grade
    if assessed is not None:
        grade = score(policy.scorecard, cr.indicators_of(assessed.financial, assessed.operating_state, assessed.behaviour)).grade
    recorded_grade = state.credit.grade
    state.credit.grade = grade  # the candidate's view of this customer, for this decision only
    try:
        causes = cr.automatic_hold_causes(state, policy, e.checked_on, excluding=e.order_id)
        holds = {cause: hold.reason for cause, hold in state.credit.holds.items() if not hold.automatic}
        holds.update({cause: why for cause, (_, _, why) in causes.items()})
        figures = cr.order_figures(state, policy, state.credit.orders[e.order_id], e.checked_on)
        decision, reasons = check(policy, figures, holds)
    finally:
        state.credit.grade = recorded_grade
    return decision, grade, tuple(r.code for r in reasons)


def _events(store: LedgerStore) -> Any:
    last = None
    while True:
        batch = store.recorder.select_notifications(start=last, limit=1000, inclusive_of_start=last is None)
        if not batch:
            return
        for n in batch:
            yield store.mapper.to_domain_event(n)
        last = batch[-1].id


def backtest(store: LedgerStore, policy: CreditPolicy, date_from: date, date_to: date) -> BacktestReport:
    report = BacktestReport(date_from=date_from, date_to=date_to)
    accounts: dict[UUID, CustomerAccount] = {}
    assessments: dict[UUID, ce.CreditAssessed] = {}
    invoices_of_order: dict[str, list[tuple[UUID, str]]] = defaultdict(list)
    written_off: dict[str, int] = defaultdict(int)
    changed: list[tuple[UUID, ChangedOrder]] = []
    for event in _events(store):
        if not isinstance(event, ev.AccountEvent):
            continue
        if isinstance(event, ce.OrderCreditChecked) and date_from <= event.checked_on <= date_to:
            account = accounts[event.originator_id]
            amount = account.state.credit.orders[event.order_id].open_minor
            decision, grade, reasons = _candidate_decision(policy, account, assessments.get(event.originator_id), event)
            report.checks += 1
            report.recorded[event.decision] = report.recorded.get(event.decision, 0) + 1
            report.candidate[decision] = report.candidate.get(decision, 0) + 1
            report.approved_exposure_recorded_minor += amount if event.decision == "approve" else 0
            report.approved_exposure_candidate_minor += amount if decision == "approve" else 0
            if decision != event.decision:
                changed.append((event.originator_id, ChangedOrder(
                    order_id=event.order_id, customer_id=event.customer_id, checked_on=event.checked_on, amount_minor=amount,
                    recorded=event.decision, candidate=decision, candidate_grade=grade, reasons=reasons,
                )))
        if isinstance(event, ce.CreditAssessed):
            assessments[event.originator_id] = event
        elif isinstance(event, ev.InvoiceIssued) and event.sales_order_id:
            invoices_of_order[event.sales_order_id].append((event.originator_id, event.invoice_number))
        elif isinstance(event, ev.WriteOffApproved):
            written_off[event.invoice_number] += event.amount_minor
        accounts[event.originator_id] = project_account(accounts.get(event.originator_id), [event])  # type: ignore[assignment]
    for account_id, order in changed:
        if order.recorded == "approve":  # the candidate would have stopped it: follow its invoices
            numbers = [n for a, n in invoices_of_order.get(order.order_id, []) if a == account_id]
            state = accounts[account_id].state
            lost = sum(written_off.get(n, 0) for n in numbers)
            overdue = sum(i.open_minor for n in numbers for i in state.invoices[n].installments if i.due_date < date_to)
            order = msgspec.structs.replace(order, written_off_minor=lost, overdue_minor=overdue)
            report.losses_avoided_written_off_minor += lost
            report.losses_avoided_overdue_minor += overdue
        report.changed.append(order)
    return report
