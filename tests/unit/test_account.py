"""The account aggregate's rules, on concrete numbers. Pure: no store, no clock."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from domain import events as ev
from domain.account import CommandContext, CustomerAccount, project_account, take_snapshot
from domain.errors import AlreadyExists, NotFound, RuleViolation


def ctx(actor: str = "alice") -> CommandContext:
    return CommandContext(actor=actor, recorded_at=datetime(2026, 1, 1, tzinfo=UTC), correlation_id=uuid.uuid4(), causation_id=uuid.uuid4())


@pytest.fixture
def account() -> CustomerAccount:
    acc = CustomerAccount.register(ctx(), customer_id="C1", name="Acme", currency="EUR", payment_terms_days=30)
    acc.issue_invoice(ctx(), invoice_number="INV-1", currency="EUR", amount_minor=10_000, issue_date=date(2026, 1, 1))
    acc.issue_invoice(ctx(), invoice_number="INV-2", currency="EUR", amount_minor=5_000, issue_date=date(2026, 1, 10), due_date=date(2026, 1, 20))
    acc.receive_payment(ctx(), payment_id="P1", currency="EUR", amount_minor=12_000, value_date=date(2026, 2, 1))
    acc.collect_events()
    return acc


def refused(call, field: str, rule: str, account: CustomerAccount | None = None) -> RuleViolation:
    before = (account.version, len(account.pending)) if account else None
    with pytest.raises(RuleViolation) as err:
        call()
    assert (err.value.field, err.value.rule) == (field, rule), err.value
    if account is not None:
        assert (account.version, len(account.pending)) == before, "a refused command must record nothing"
    return err.value


def test_invoice_due_date_defaults_to_terms(account):
    assert account.state.invoices["INV-1"].due_date == date(2026, 1, 31)


def test_due_date_before_issue_date_is_refused(account):
    refused(lambda: account.issue_invoice(ctx(), invoice_number="INV-3", currency="EUR", amount_minor=1, issue_date=date(2026, 3, 1), due_date=date(2026, 2, 1)), "due_date", "not_before_issue_date", account)


def test_duplicate_invoice_number_is_refused(account):
    with pytest.raises(AlreadyExists) as err:
        account.issue_invoice(ctx(), invoice_number="INV-1", currency="EUR", amount_minor=1, issue_date=date(2026, 3, 1))
    assert err.value.field == "invoice_number"


@pytest.mark.parametrize("amount", [0, -5, 1.5, True])
def test_amount_must_be_positive_integer(account, amount):
    with pytest.raises(RuleViolation) as err:
        account.issue_invoice(ctx(), invoice_number="INV-9", currency="EUR", amount_minor=amount, issue_date=date(2026, 3, 1))
    assert err.value.field == "amount_minor"
    assert account.pending == []


def test_installment_schedule_must_add_up_and_increase(account):
    refused(lambda: account.issue_invoice(ctx(), invoice_number="I", currency="EUR", amount_minor=300, issue_date=date(2026, 1, 1), installments=[(date(2026, 2, 1), 100), (date(2026, 3, 1), 100)]), "installments", "sum_equals_amount", account)
    refused(lambda: account.issue_invoice(ctx(), invoice_number="I", currency="EUR", amount_minor=200, issue_date=date(2026, 1, 1), installments=[(date(2026, 3, 1), 100), (date(2026, 2, 1), 100)]), "installments[1].due_date", "increasing", account)
    refused(lambda: account.issue_invoice(ctx(), invoice_number="I", currency="EUR", amount_minor=200, issue_date=date(2026, 1, 1), installments=[(date(2025, 12, 1), 100), (date(2026, 2, 1), 100)]), "installments[0].due_date", "not_before_issue_date", account)


def test_allocation_without_invoice_goes_oldest_due_first(account):
    allocated = account.allocate_payment(ctx(), payment_id="P1")
    # INV-2 is due 2026-01-20, INV-1 on 2026-01-31: INV-2 first, then 7,000 of INV-1.
    assert [(a.invoice_number, a.amount_minor) for a in allocated] == [("INV-2", 5_000), ("INV-1", 7_000)]
    assert account.state.invoices["INV-1"].open_minor == 3_000
    assert account.state.payments["P1"].unallocated_minor == 0


def test_allocation_above_unallocated_cash_is_refused(account):
    refused(lambda: account.allocate_payment(ctx(), payment_id="P1", invoice_number="INV-1", amount_minor=12_001), "amount_minor", "not_above_unallocated", account)


def test_allocation_above_open_amount_is_refused(account):
    refused(lambda: account.allocate_payment(ctx(), payment_id="P1", invoice_number="INV-2", amount_minor=5_001), "amount_minor", "not_above_open_amount", account)


def test_allocation_currency_mismatch_is_refused(account):
    account.receive_payment(ctx(), payment_id="P-USD", currency="USD", amount_minor=100, value_date=date(2026, 2, 1))
    refused(lambda: account.allocate_payment(ctx(), payment_id="P-USD", invoice_number="INV-1"), "payment_id", "currency_match", account)


def test_allocation_to_unknown_invoice_or_payment(account):
    with pytest.raises(NotFound):
        account.allocate_payment(ctx(), payment_id="P1", invoice_number="NOPE")
    with pytest.raises(NotFound):
        account.allocate_payment(ctx(), payment_id="NOPE")


def test_installments_are_paid_oldest_first_and_can_be_named(account):
    account.issue_invoice(ctx(), invoice_number="INV-3", currency="EUR", amount_minor=900, issue_date=date(2026, 1, 1), installments=[(date(2026, 2, 1), 300), (date(2026, 3, 1), 300), (date(2026, 4, 1), 300)])
    account.receive_payment(ctx(), payment_id="P2", currency="EUR", amount_minor=500, value_date=date(2026, 2, 1))
    named = account.allocate_payment(ctx(), payment_id="P2", invoice_number="INV-3", installment=3, amount_minor=100)
    assert [(a.installment, a.amount_minor) for a in named] == [(3, 100)]
    rest = account.allocate_payment(ctx(), payment_id="P2", invoice_number="INV-3")
    assert [(a.installment, a.amount_minor) for a in rest] == [(1, 300), (2, 100)]


def test_reversing_a_payment_unallocates_it(account):
    account.allocate_payment(ctx(), payment_id="P1")
    reversed_ = account.reverse_payment(ctx(), payment_id="P1", reversed_on=date(2026, 2, 3), reason="cheque bounced")
    assert sum(line.amount_minor for line in reversed_.unallocated) == 12_000
    assert account.state.invoices["INV-1"].open_minor == 10_000
    assert account.state.invoices["INV-2"].open_minor == 5_000
    refused(lambda: account.allocate_payment(ctx(), payment_id="P1"), "payment_id", "not_reversed", account)


def test_credit_note_against_invoice_and_standalone(account):
    refused(lambda: account.issue_credit_note(ctx(), credit_note_number="CN-1", currency="EUR", amount_minor=5_001, issue_date=date(2026, 1, 15), invoice_number="INV-2"), "amount_minor", "not_above_open_amount", account)
    refused(lambda: account.issue_credit_note(ctx(), credit_note_number="CN-1", currency="USD", amount_minor=1, issue_date=date(2026, 1, 15), invoice_number="INV-2"), "currency", "currency_match", account)
    account.issue_credit_note(ctx(), credit_note_number="CN-1", currency="EUR", amount_minor=1_000, issue_date=date(2026, 1, 15), invoice_number="INV-2")
    assert account.state.invoices["INV-2"].open_minor == 4_000
    account.issue_credit_note(ctx(), credit_note_number="CN-2", currency="EUR", amount_minor=700, issue_date=date(2026, 1, 15))
    assert account.state.credit_notes["CN-2"] == 700


def test_write_off_needs_a_second_actor(account):
    account.request_write_off(ctx("alice"), write_off_id="W1", invoice_number="INV-1", amount_minor=4_000, reason="insolvent")
    refused(lambda: account.approve_write_off(ctx("alice"), write_off_id="W1", effective_date=date(2026, 6, 1)), "actor", "four_eyes", account)
    approved = account.approve_write_off(ctx("bob"), write_off_id="W1", effective_date=date(2026, 6, 1))
    assert approved.requested_by == "alice" and approved.actor == "bob"
    assert account.state.invoices["INV-1"].open_minor == 6_000
    refused(lambda: account.approve_write_off(ctx("carol"), write_off_id="W1", effective_date=date(2026, 6, 1)), "write_off_id", "is_pending", account)
    account.record_recovery(ctx(), invoice_number="INV-1", amount_minor=1_000, received_on=date(2026, 7, 1))
    refused(lambda: account.record_recovery(ctx(), invoice_number="INV-1", amount_minor=3_001, received_on=date(2026, 7, 1)), "amount_minor", "not_above_written_off", account)


def test_write_off_requests_cannot_exceed_open_amount(account):
    account.request_write_off(ctx(), write_off_id="W1", invoice_number="INV-2", amount_minor=3_000, reason="r")
    refused(lambda: account.request_write_off(ctx(), write_off_id="W2", invoice_number="INV-2", amount_minor=2_001, reason="r"), "amount_minor", "not_above_open_amount", account)


def test_disputes_open_and_resolve(account):
    account.dispute_invoice(ctx(), invoice_number="INV-1", disputed_on=date(2026, 1, 5), reason="damaged goods")
    refused(lambda: account.dispute_invoice(ctx(), invoice_number="INV-1", disputed_on=date(2026, 1, 5), reason="again"), "invoice_number", "not_disputed", account)
    # Disputed invoices are skipped when cash is applied oldest-first.
    allocated = account.allocate_payment(ctx(), payment_id="P1")
    assert {a.invoice_number for a in allocated} == {"INV-2"}
    account.resolve_dispute(ctx(), invoice_number="INV-1", resolved_on=date(2026, 1, 9), resolution="customer accepted")
    refused(lambda: account.resolve_dispute(ctx(), invoice_number="INV-1", resolved_on=date(2026, 1, 9), resolution="x"), "invoice_number", "is_disputed", account)


def test_events_carry_metadata_and_stable_ids(account):
    c = ctx("bob")
    issued = account.issue_invoice(c, invoice_number="INV-7", currency="EUR", amount_minor=1, issue_date=date(2026, 1, 1))
    assert issued.actor == "bob" and issued.correlation_id == c.correlation_id and issued.causation_id == c.causation_id
    assert issued.originator_version == account.version and issued.customer_id == "C1"
    assert issued.event_id == uuid.uuid5(account.id, str(issued.originator_version))


def test_replay_and_snapshot_rebuild_the_same_state(account):
    history = list(account_history())
    rebuilt = project_account(None, history)
    snap = take_snapshot(rebuilt)
    from_snapshot = project_account(None, [snap])
    assert rebuilt.state == from_snapshot.state and rebuilt.version == from_snapshot.version


def account_history():
    acc = CustomerAccount.register(ctx(), customer_id="C9", name="Z", currency="EUR")
    acc.issue_invoice(ctx(), invoice_number="Z1", currency="EUR", amount_minor=100, issue_date=date(2026, 1, 1))
    acc.receive_payment(ctx(), payment_id="ZP", currency="EUR", amount_minor=60, value_date=date(2026, 1, 2))
    acc.allocate_payment(ctx(), payment_id="ZP")
    yield from acc.collect_events()


def test_event_json_round_trip_is_lossless():
    import msgspec

    for event in account_history():
        data = msgspec.json.encode(event)
        assert msgspec.json.decode(data, type=type(event)) == event
        assert isinstance(event, ev.AccountEvent)
