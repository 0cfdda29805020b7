"""Commands: what a person or system asks the ledger to do (imperative names).

They are msgspec Structs so that the HTTP API, the CLI and the CSV import decode and
validate input the same way: unknown fields are refused, types are strict, and the
constraints below name the field in the error. Business rules that need state
(open amounts, duplicates, four eyes) are checked by the account aggregate.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar

import msgspec

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/#-]*$", description="Identifier: letters, digits and . _ : / # -")]
Text = Annotated[str, msgspec.Meta(max_length=200)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", description="ISO 4217 currency code")]
Minor = Annotated[int, msgspec.Meta(gt=0, le=10**15, description="Amount in minor units (cents), > 0")]
TermsDays = Annotated[int, msgspec.Meta(ge=0, le=365)]


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of commands. ``kind`` names the document a command creates, if any, so the
    service can claim its reference ledger-wide in the same atomic save."""

    creates: ClassVar[tuple[str, str] | None] = None  # (registry kind, field name)
    targets: ClassVar[tuple[str, str] | None] = None  # (registry kind, field) used to find the customer


class RegisterCustomer(Command, frozen=True, kw_only=True):
    customer_id: Code
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    currency: Currency
    payment_terms_days: TermsDays = 30
    region: Text = ""
    industry: Text = ""
    salesperson: Text = ""
    country: Text = ""
    email: Text = ""


class UpdateCustomer(Command, frozen=True, kw_only=True):
    customer_id: Code
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    region: Text | None = None
    industry: Text | None = None
    salesperson: Text | None = None
    country: Text | None = None
    email: Text | None = None


class SetPaymentTerms(Command, frozen=True, kw_only=True):
    customer_id: Code
    payment_terms_days: TermsDays
    reason: Text = ""


class InstallmentSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    due_date: date
    amount_minor: Minor


class IssueInvoice(Command, frozen=True, kw_only=True):
    creates: ClassVar[tuple[str, str] | None] = ("invoice", "invoice_number")
    customer_id: Code
    invoice_number: Code
    currency: Currency
    amount_minor: Minor
    issue_date: date
    due_date: date | None = None
    installments: Annotated[list[InstallmentSpec], msgspec.Meta(max_length=120)] = []
    description: Text = ""
    sales_order_id: Code | None = None


class IssueCreditNote(Command, frozen=True, kw_only=True):
    creates: ClassVar[tuple[str, str] | None] = ("credit_note", "credit_note_number")
    customer_id: Code
    credit_note_number: Code
    currency: Currency
    amount_minor: Minor
    issue_date: date
    invoice_number: Code | None = None
    reason: Text = ""


class ReceivePayment(Command, frozen=True, kw_only=True):
    creates: ClassVar[tuple[str, str] | None] = ("payment", "payment_id")
    customer_id: Code
    payment_id: Code
    currency: Currency
    amount_minor: Minor
    value_date: date
    method: Text = ""
    reference: Text = ""


class AllocatePayment(Command, frozen=True, kw_only=True):
    """Apply a payment's unallocated cash. Name an invoice (and installment) or let the
    ledger apply it to the oldest due items first; omit the amount to apply all it can."""

    targets: ClassVar[tuple[str, str] | None] = ("payment", "payment_id")
    payment_id: Code
    invoice_number: Code | None = None
    installment: Annotated[int, msgspec.Meta(ge=1, le=120)] | None = None
    amount_minor: Minor | None = None


class ReversePayment(Command, frozen=True, kw_only=True):
    targets: ClassVar[tuple[str, str] | None] = ("payment", "payment_id")
    payment_id: Code
    reversed_on: date
    reason: Reason


class DisputeInvoice(Command, frozen=True, kw_only=True):
    targets: ClassVar[tuple[str, str] | None] = ("invoice", "invoice_number")
    invoice_number: Code
    disputed_on: date
    reason: Reason
    amount_minor: Minor | None = None


class ResolveDispute(Command, frozen=True, kw_only=True):
    targets: ClassVar[tuple[str, str] | None] = ("invoice", "invoice_number")
    invoice_number: Code
    resolved_on: date
    resolution: Reason


class RequestWriteOff(Command, frozen=True, kw_only=True):
    targets: ClassVar[tuple[str, str] | None] = ("invoice", "invoice_number")
    creates: ClassVar[tuple[str, str] | None] = ("write_off", "write_off_id")
    write_off_id: Code
    invoice_number: Code
    amount_minor: Minor
    reason: Reason


class ApproveWriteOff(Command, frozen=True, kw_only=True):
    targets: ClassVar[tuple[str, str] | None] = ("write_off", "write_off_id")
    write_off_id: Code
    effective_date: date


class RejectWriteOff(Command, frozen=True, kw_only=True):
    targets: ClassVar[tuple[str, str] | None] = ("write_off", "write_off_id")
    write_off_id: Code
    reason: Reason


class RecordRecovery(Command, frozen=True, kw_only=True):
    targets: ClassVar[tuple[str, str] | None] = ("invoice", "invoice_number")
    invoice_number: Code
    amount_minor: Minor
    received_on: date
    reference: Text = ""


LEDGER_COMMANDS: tuple[type[Command], ...] = (
    RegisterCustomer, UpdateCustomer, SetPaymentTerms, IssueInvoice, IssueCreditNote, ReceivePayment,
    AllocatePayment, ReversePayment, DisputeInvoice, ResolveDispute, RequestWriteOff, ApproveWriteOff,
    RejectWriteOff, RecordRecovery,
)
