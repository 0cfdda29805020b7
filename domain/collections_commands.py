"""Collections commands on the customer account, their rules, and the appliers that keep
:class:`CollectionsState` on the account.

They act on the account (the aggregate that knows the customer's invoices), so rules
such as "the promise's currency is the account's", "the invoice exists", "an exemption
needs a reason", "a case is closed once" are checked where the facts live.
:func:`register` plugs them into the ledger service and the account.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec

from domain import collections_events as ce
from domain.account import AccountState, CommandContext, CustomerAccount
from domain.collections import Promise
from domain.commands import Code, Command, Currency, Minor, Reason, Text
from domain.errors import AlreadyExists, NotFound, RuleViolation

Invoices = Annotated[list[Code], msgspec.Meta(max_length=200)]
Tolerance = Annotated[int, msgspec.Meta(ge=0, le=60)]


class LogCollectionContact(Command, frozen=True, kw_only=True):
    """A collector (or a downstream mailer/SMS/letter service) reports a contact."""

    customer_id: Code
    contact_id: Code
    contacted_on: date
    channel: ce.Channel
    outcome: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    collector: Code
    contact_person: Text = ""
    next_action_date: date | None = None
    notes: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    invoice_numbers: Invoices = []
    dunning_event_id: Text | None = None


class MakePromiseToPay(Command, frozen=True, kw_only=True):
    customer_id: Code
    promise_id: Code
    made_on: date
    promised_date: date
    currency: Currency
    amount_minor: Minor
    tolerance_days: Tolerance | None = None  # None: the dunning policy's promise_tolerance_days
    collector: Text = ""
    invoice_numbers: Invoices = []


class GrantDunningExemption(Command, frozen=True, kw_only=True):
    customer_id: Code
    invoice_number: Code
    granted_on: date
    reason: Reason


class RevokeDunningExemption(Command, frozen=True, kw_only=True):
    customer_id: Code
    invoice_number: Code
    revoked_on: date
    reason: Reason


class AssignCollector(Command, frozen=True, kw_only=True):
    customer_id: Code
    collector: Code


class EscalateToLegal(Command, frozen=True, kw_only=True):
    customer_id: Code
    case_id: Code
    escalated_on: date
    law_firm: Text = ""
    invoice_numbers: Invoices = []
    reason: Text = ""


class AssignToAgency(Command, frozen=True, kw_only=True):
    customer_id: Code
    case_id: Code
    assigned_on: date
    agency: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    invoice_numbers: Invoices = []
    reason: Text = ""


class CloseCollectionCase(Command, frozen=True, kw_only=True):
    customer_id: Code
    case_id: Code
    closed_on: date
    outcome: Reason


class IncurCollectionCost(Command, frozen=True, kw_only=True):
    customer_id: Code
    cost_id: Code
    incurred_on: date
    currency: Currency
    amount_minor: Minor
    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    case_id: Code | None = None
    collector: Text = ""
    channel: ce.Channel | None = None


COLLECTIONS_COMMANDS: tuple[type[Command], ...] = (
    LogCollectionContact, MakePromiseToPay, GrantDunningExemption, RevokeDunningExemption, AssignCollector,
    EscalateToLegal, AssignToAgency, CloseCollectionCase, IncurCollectionCost,
)


# ---- rules -------------------------------------------------------------------------------------


def _invoices(account: CustomerAccount, numbers: list[str], field: str = "invoice_numbers") -> tuple[str, ...]:
    for number in numbers:
        if number not in account.state.invoices:
            raise NotFound(field, number, "invoice of this customer")
    return tuple(numbers)


def _fields(command: Command, *drop: str) -> dict[str, Any]:
    out = msgspec.structs.asdict(command)
    for name in ("customer_id", *drop):
        out.pop(name, None)
    return out


def log_contact(account: CustomerAccount, ctx: CommandContext, c: LogCollectionContact) -> None:
    if c.contact_id in account.state.collections.contacts:
        raise AlreadyExists("contact_id", c.contact_id, "contact")
    if c.next_action_date is not None and c.next_action_date < c.contacted_on:
        raise RuleViolation("next_action_date", "not_before_contact", "the next action cannot be before the contact")
    fields = _fields(c) | {"invoice_numbers": _invoices(account, c.invoice_numbers)}
    account._record(ctx, ce.CollectionContactLogged, **fields)


def make_promise(default_tolerance: int) -> Any:
    def handler(account: CustomerAccount, ctx: CommandContext, c: MakePromiseToPay) -> None:
        if c.promise_id in account.state.collections.promises:
            raise AlreadyExists("promise_id", c.promise_id, "promise to pay")
        if c.currency != account.state.currency:
            raise RuleViolation("currency", "currency_match", f"{c.currency} does not match the account currency {account.state.currency}")
        if c.promised_date < c.made_on:
            raise RuleViolation("promised_date", "not_before_made_on", "a promise cannot be due before it was made")
        tolerance = default_tolerance if c.tolerance_days is None else c.tolerance_days
        fields = _fields(c) | {"tolerance_days": tolerance, "invoice_numbers": _invoices(account, c.invoice_numbers)}
        account._record(ctx, ce.PromiseToPayMade, **fields)
    return handler


def grant_exemption(account: CustomerAccount, ctx: CommandContext, c: GrantDunningExemption) -> None:
    _invoices(account, [c.invoice_number], "invoice_number")
    if c.invoice_number in account.state.collections.exemptions:
        raise RuleViolation("invoice_number", "not_exempted", f"invoice {c.invoice_number!r} is already exempted from dunning")
    account._record(ctx, ce.DunningExemptionGranted, **_fields(c))


def revoke_exemption(account: CustomerAccount, ctx: CommandContext, c: RevokeDunningExemption) -> None:
    if c.invoice_number not in account.state.collections.exemptions:
        raise RuleViolation("invoice_number", "is_exempted", f"invoice {c.invoice_number!r} has no dunning exemption")
    account._record(ctx, ce.DunningExemptionRevoked, **_fields(c))


def assign_collector(account: CustomerAccount, ctx: CommandContext, c: AssignCollector) -> None:
    if account.state.collections.collector == c.collector:
        raise RuleViolation("collector", "no_change", f"{c.collector!r} already works this customer")
    account._record(ctx, ce.CollectorAssigned, collector=c.collector)


def _new_case(account: CustomerAccount, case_id: str) -> None:
    cases = account.state.collections
    if case_id in cases.open_cases or case_id in cases.closed_cases:
        raise AlreadyExists("case_id", case_id, "collection case")


def escalate(account: CustomerAccount, ctx: CommandContext, c: EscalateToLegal) -> None:
    _new_case(account, c.case_id)
    account._record(ctx, ce.EscalatedToLegal, **_fields(c) | {"invoice_numbers": _invoices(account, c.invoice_numbers)})


def to_agency(account: CustomerAccount, ctx: CommandContext, c: AssignToAgency) -> None:
    _new_case(account, c.case_id)
    account._record(ctx, ce.AssignedToAgency, **_fields(c) | {"invoice_numbers": _invoices(account, c.invoice_numbers)})


def close_case(account: CustomerAccount, ctx: CommandContext, c: CloseCollectionCase) -> None:
    if c.case_id not in account.state.collections.open_cases:
        raise NotFound("case_id", c.case_id, "open collection case")
    account._record(ctx, ce.CollectionCaseClosed, **_fields(c))


def incur_cost(account: CustomerAccount, ctx: CommandContext, c: IncurCollectionCost) -> None:
    state = account.state.collections
    if c.cost_id in state.costs:
        raise AlreadyExists("cost_id", c.cost_id, "collection cost")
    if c.currency != account.state.currency:
        raise RuleViolation("currency", "currency_match", f"{c.currency} does not match the account currency {account.state.currency}")
    if c.case_id is not None and c.case_id not in state.open_cases and c.case_id not in state.closed_cases:
        raise NotFound("case_id", c.case_id, "collection case")
    account._record(ctx, ce.CollectionCostIncurred, **_fields(c))


# ---- appliers ----------------------------------------------------------------------------------


def _applied_contact(s: AccountState, e: ce.CollectionContactLogged) -> None:
    s.collections.contacts.add(e.contact_id)


def _applied_promise(s: AccountState, e: ce.PromiseToPayMade) -> None:
    s.collections.promises[e.promise_id] = Promise(
        promise_id=e.promise_id, made_on=e.made_on, promised_date=e.promised_date, tolerance_days=e.tolerance_days,
        amount_minor=e.amount_minor, invoice_numbers=e.invoice_numbers,
    )


def _applied_exemption(s: AccountState, e: ce.DunningExemptionGranted) -> None:
    s.collections.exemptions[e.invoice_number] = e.reason


def _applied_revocation(s: AccountState, e: ce.DunningExemptionRevoked) -> None:
    s.collections.exemptions.pop(e.invoice_number, None)


def _applied_collector(s: AccountState, e: ce.CollectorAssigned) -> None:
    s.collections.collector = e.collector


def _applied_case(s: AccountState, e: ce.EscalatedToLegal | ce.AssignedToAgency) -> None:
    s.collections.open_cases[e.case_id] = "legal" if isinstance(e, ce.EscalatedToLegal) else "agency"


def _applied_close(s: AccountState, e: ce.CollectionCaseClosed) -> None:
    s.collections.open_cases.pop(e.case_id, None)
    s.collections.closed_cases.add(e.case_id)


def _applied_cost(s: AccountState, e: ce.CollectionCostIncurred) -> None:
    s.collections.costs.add(e.cost_id)


APPLIERS = {
    ce.CollectionContactLogged: _applied_contact,
    ce.PromiseToPayMade: _applied_promise,
    ce.DunningExemptionGranted: _applied_exemption,
    ce.DunningExemptionRevoked: _applied_revocation,
    ce.CollectorAssigned: _applied_collector,
    ce.EscalatedToLegal: _applied_case,
    ce.AssignedToAgency: _applied_case,
    ce.CollectionCaseClosed: _applied_close,
    ce.CollectionCostIncurred: _applied_cost,
}


def handlers(default_tolerance: int) -> dict[type[Command], Any]:
    return {
        LogCollectionContact: log_contact,
        MakePromiseToPay: make_promise(default_tolerance),
        GrantDunningExemption: grant_exemption,
        RevokeDunningExemption: revoke_exemption,
        AssignCollector: assign_collector,
        EscalateToLegal: escalate,
        AssignToAgency: to_agency,
        CloseCollectionCase: close_case,
        IncurCollectionCost: incur_cost,
    }
