"""The import's planner builds its events directly (no command dispatch, only the
ledger's own appliers between rows); on generated ledgers, good rows and bad, it must
give exactly what the commands give: the same events, and the same bad rows with
the same rules. The oracle below is the straightforward path: every row through
:func:`services.ledger.decide` on the account, as LedgerService runs a command."""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import commands as c
from domain.account import CommandContext, CustomerAccount
from domain.errors import AlreadyExists, NotFound, RuleViolation
from domain.registry import claim
from services.importer.plan import ORDER, build_plan
from services.importer.rows import AUTO_ALLOCATION, ParsedFile, ParsedRow
from services.ledger import decide
from services.persistence import LedgerStore
from services.settings import Settings

CUSTOMERS = ("A", "B", "J")  # J keeps its books in JPY; "X" is never registered
CURRENCY = {"A": "EUR", "B": "EUR", "J": "JPY"}
INVOICES = ("I1", "I2", "I3", "I4")
DAY0 = date(2026, 1, 1)
RECORDED_AT = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def store():
    with tempfile.TemporaryDirectory() as tmp:
        store = LedgerStore(Settings.from_env({}, database_url=f"sqlite:///{Path(tmp) / 'empty.sqlite'}"))
        yield store
        store.close()


days = st.integers(min_value=0, max_value=60).map(lambda n: DAY0 + timedelta(days=n))
amounts = st.integers(min_value=1, max_value=5000)
customer_ids = st.sampled_from(("A", "A", "A", "A", "B", "J", "X"))


@st.composite
def currency_of(draw, customer_id: str) -> str:
    return draw(st.sampled_from([CURRENCY.get(customer_id, "EUR"), CURRENCY.get(customer_id, "EUR"), "USD"]))


@st.composite
def invoice_rows(draw) -> c.IssueInvoice:
    customer_id = draw(customer_ids)
    amount, issued = draw(amounts), draw(days)
    installments = []
    if draw(st.booleans()):
        parts = draw(st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=3))
        if draw(st.booleans()):  # the schedule adds up (or, drawn otherwise, it does not)
            amount = sum(parts)
        dues = sorted(draw(st.lists(days, min_size=len(parts), max_size=len(parts))))
        installments = [c.InstallmentSpec(due_date=d, amount_minor=a) for d, a in zip(dues, parts)]
    due = draw(st.none() | st.integers(min_value=-5, max_value=60).map(lambda n: issued + timedelta(days=n)))  # sometimes before issue
    return c.IssueInvoice(customer_id=customer_id, invoice_number=draw(st.sampled_from(INVOICES)), currency=draw(currency_of(customer_id)),
                          amount_minor=amount, issue_date=issued, due_date=due, installments=installments,
                          description=draw(st.sampled_from(["", "näh \"quoted\"\n"])), sales_order_id=draw(st.none() | st.just("SO-1")))


@st.composite
def credit_note_rows(draw) -> c.IssueCreditNote:
    customer_id = draw(customer_ids)
    return c.IssueCreditNote(customer_id=customer_id, credit_note_number=draw(st.sampled_from(("CN1", "CN2", "CN3"))), currency=draw(currency_of(customer_id)),
                             amount_minor=draw(amounts), issue_date=draw(days), invoice_number=draw(st.none() | st.sampled_from(INVOICES)),
                             reason=draw(st.sampled_from(["", "price"])))


@st.composite
def payment_rows(draw, invoices: list[c.IssueInvoice]) -> tuple[c.ReceivePayment, object]:
    customer_id = draw(customer_ids)
    # mostly the customer's own invoices, sometimes any number (unknown to this account)
    own = [i.invoice_number for i in invoices if i.customer_id == customer_id] or list(INVOICES)
    numbers = st.sampled_from(own) | st.sampled_from(own) | st.sampled_from(INVOICES)
    payment = c.ReceivePayment(customer_id=customer_id, payment_id=draw(st.sampled_from(("P1", "P2", "P3", "P4", "P5"))),
                               currency=draw(currency_of(customer_id)), amount_minor=draw(amounts), value_date=draw(days),
                               method=draw(st.sampled_from(["", "transfer"])))
    allocations = draw(st.none() | st.just(AUTO_ALLOCATION)
                       | st.lists(st.tuples(numbers, st.integers(min_value=1, max_value=1500)), min_size=1, max_size=3))
    return payment, allocations


@st.composite
def ledgers(draw) -> dict[str, list]:
    invoices = draw(st.lists(invoice_rows(), max_size=10))
    return {
        "customers": draw(st.sampled_from([CUSTOMERS, CUSTOMERS, CUSTOMERS, ("A", "B"), ("A", "A", "J")])),
        "invoices": invoices,
        "credit_notes": draw(st.lists(credit_note_rows(), max_size=4)),
        "payments": draw(st.lists(payment_rows(invoices), max_size=6)),
    }


def parsed_files(ledger: dict[str, list]) -> dict[str, ParsedFile]:
    files = {kind: ParsedFile(kind=kind, name=f"{kind}.csv") for kind in ORDER}
    for n, customer_id in enumerate(ledger["customers"], start=2):
        command = c.RegisterCustomer(customer_id=customer_id, name=f"Customer {customer_id}", currency=CURRENCY[customer_id], payment_terms_days=30)
        files["customers"].rows.append(ParsedRow(n, command))
    for kind in ("invoices", "credit_notes"):
        files[kind].rows += [ParsedRow(n, command) for n, command in enumerate(ledger[kind], start=2)]
    files["payments"].rows += [ParsedRow(n, command, allocations=allocations) for n, (command, allocations) in enumerate(ledger["payments"], start=2)]
    for parsed in files.values():
        parsed.total_rows = len(parsed.rows)
    return files


def through_commands(files: dict[str, ParsedFile], ctx: CommandContext) -> tuple[list, list[tuple[str, int, str]]]:
    """Every row as the commands it stands for, on accounts in memory."""
    accounts: dict[str, CustomerAccount] = {}
    claimed: set[tuple[str, str]] = set()
    events: list = []
    errors: list[tuple[str, int, str]] = []
    creates = {"invoices": ("invoice", "invoice_number"), "credit_notes": ("credit_note", "credit_note_number"), "payments": ("payment", "payment_id")}
    for kind, parsed in files.items():
        for row in parsed.rows:
            command, account = row.command, None
            try:
                if kind == "customers":
                    if command.customer_id in accounts:
                        raise AlreadyExists("customer_id", command.customer_id, "customer")
                    accounts[command.customer_id] = CustomerAccount.register(ctx, **{f: getattr(command, f) for f in command.__struct_fields__})
                    events += accounts[command.customer_id].collect_events()
                    continue
                if command.customer_id not in accounts:
                    raise NotFound("customer_id", command.customer_id, "customer")
                account = accounts[command.customer_id]
                registry, field = creates[kind]
                if (registry, getattr(command, field)) in claimed:
                    raise AlreadyExists(field, getattr(command, field), registry)
                decide(account, ctx, command)
                if kind == "payments" and row.allocations is not None:
                    allocations = [c.AllocatePayment(payment_id=command.payment_id)] if row.allocations == AUTO_ALLOCATION else [
                        c.AllocatePayment(payment_id=command.payment_id, invoice_number=number, amount_minor=amount) for number, amount in row.allocations]
                    try:
                        for allocation in allocations:
                            decide(account, ctx, allocation)
                    except RuleViolation as exc:
                        raise RuleViolation("allocations", exc.rule, exc.message) from None
                claimed.add((registry, getattr(command, field)))
                events += account.collect_events()
                events.append(claim(registry, getattr(command, field), command.customer_id, actor=ctx.actor, recorded_at=ctx.recorded_at,
                                    correlation_id=ctx.correlation_id, causation_id=ctx.causation_id))
            except RuleViolation as exc:
                if account is not None:
                    account.collect_events()  # a refused row records nothing
                errors.append((parsed.name, row.line, exc.rule))
    return events, errors


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ledgers())
def test_the_planner_gives_what_the_commands_give(store, ledger):
    files = parsed_files(ledger)
    correlation_id = uuid.uuid4()
    plan = build_plan(store, files, actor="migration", recorded_at=RECORDED_AT, correlation_id=correlation_id)
    causation_id = plan.events[0].causation_id if plan.events else uuid.uuid4()
    ctx = CommandContext(actor="migration", recorded_at=RECORDED_AT, correlation_id=correlation_id, causation_id=causation_id)
    events, errors = through_commands(files, ctx)
    assert [(e.file, e.line, e.rule) for e in plan.errors] == errors
    assert plan.events == events
    assert plan.reference_claims == sum(1 for e in events if type(e).__name__ == "ReferenceClaimed")
