"""The ledger's events: the public contract.

Each event is a frozen msgspec Struct named in the past tense for a business fact.
Kafka subscribers, auditors and the projections read exactly these shapes, and the
JSON Schema that ``arledger schema`` prints is generated from them.

Contract rules (see DESIGN.md): once released an event never changes shape. New
fields get defaults; a breaking change becomes a new class (``InvoiceIssuedV2``).

Every event carries:

* ``originator_id`` / ``originator_version`` - the aggregate (a customer account, or a
  registry entry) and the event's place in its sequence;
* ``event_id`` - stable id of this event, derived from the two above, so a re-send
  (Kafka relay, export) always carries the same id;
* ``recorded_at`` - when the ledger recorded it (UTC), the "as known at" axis;
* ``actor`` - who caused it; ``correlation_id`` and ``causation_id`` - which request
  and which command it came from.

Business dates (``issue_date``, ``value_date``, ...) are plain dates, the "as of" axis.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, ClassVar
from uuid import UUID

import msgspec

PositiveMinor = Annotated[int, msgspec.Meta(gt=0, description="Amount in minor units of the currency (cents), > 0")]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", description="ISO 4217 currency code")]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True):
    """Base of every stored event. ``type`` (the class name) tags it in JSON."""

    originator_id: UUID
    originator_version: int
    event_id: UUID
    recorded_at: datetime
    actor: str
    correlation_id: UUID
    causation_id: UUID

    #: Internal events (registries, idempotency records) are stored and replayed but
    #: are not part of the published contract: not in ``arledger schema``, not relayed.
    public: ClassVar[bool] = True
    schema_version: ClassVar[int] = 1


class AccountEvent(Event, frozen=True, kw_only=True):
    """An event of one customer account; ``customer_id`` is its external code."""

    customer_id: str


# --- customers ----------------------------------------------------------------------------


class CustomerRegistered(AccountEvent, frozen=True, kw_only=True):
    name: str
    currency: Currency
    payment_terms_days: int = 30
    region: str = ""
    industry: str = ""
    salesperson: str = ""
    country: str = ""
    email: str = ""


class CustomerUpdated(AccountEvent, frozen=True, kw_only=True):
    """Only the fields that changed are set; ``None`` means unchanged."""

    name: str | None = None
    region: str | None = None
    industry: str | None = None
    salesperson: str | None = None
    country: str | None = None
    email: str | None = None


class PaymentTermsSet(AccountEvent, frozen=True, kw_only=True):
    payment_terms_days: int
    reason: str = ""


# --- invoices -----------------------------------------------------------------------------


class AllocationLine(msgspec.Struct, frozen=True, kw_only=True):
    """An amount applied to (or taken back from) one installment of an invoice."""

    invoice_number: str
    installment: int
    amount_minor: PositiveMinor


class Installment(msgspec.Struct, frozen=True, kw_only=True):
    """One due date and amount of an invoice's schedule (1-based ``number``)."""

    number: int
    due_date: date
    amount_minor: PositiveMinor


class InvoiceIssued(AccountEvent, frozen=True, kw_only=True):
    """A credit sale. ``installments`` always holds the schedule (one entry when the
    invoice has a single due date); ``due_date`` is the last installment's due date."""

    invoice_number: str
    currency: Currency
    amount_minor: PositiveMinor
    issue_date: date
    due_date: date
    installments: tuple[Installment, ...]
    description: str = ""
    sales_order_id: str | None = None


class CreditNoteIssued(AccountEvent, frozen=True, kw_only=True):
    """A credit: against an invoice (reduces its open amount, oldest installment first),
    or standalone (``invoice_number`` None) as an open credit on the account."""

    credit_note_number: str
    currency: Currency
    amount_minor: PositiveMinor
    issue_date: date
    invoice_number: str | None = None
    applied: tuple[AllocationLine, ...] = ()
    reason: str = ""


class InvoiceDisputed(AccountEvent, frozen=True, kw_only=True):
    invoice_number: str
    disputed_on: date
    reason: str
    amount_minor: int | None = None


class InvoiceDisputeResolved(AccountEvent, frozen=True, kw_only=True):
    invoice_number: str
    resolved_on: date
    resolution: str


# --- cash ---------------------------------------------------------------------------------


class PaymentReceived(AccountEvent, frozen=True, kw_only=True):
    """Cash received; it stays unallocated (unapplied cash) until allocated."""

    payment_id: str
    currency: Currency
    amount_minor: PositiveMinor
    value_date: date
    method: str = ""
    reference: str = ""


class PaymentAllocated(AccountEvent, frozen=True, kw_only=True):
    """Part of a payment applied to one installment of an invoice. ``value_date`` is the
    payment's value date: the allocation reduces the open amount from that date."""

    payment_id: str
    invoice_number: str
    installment: int
    currency: Currency
    amount_minor: PositiveMinor
    value_date: date


class PaymentReversed(AccountEvent, frozen=True, kw_only=True):
    """A payment bounced. Every allocation in ``unallocated`` is undone from
    ``reversed_on``; the cash no longer exists."""

    payment_id: str
    currency: Currency
    amount_minor: PositiveMinor
    reversed_on: date
    reason: str
    unallocated: tuple[AllocationLine, ...] = ()


# --- bad debt -----------------------------------------------------------------------------


class WriteOffRequested(AccountEvent, frozen=True, kw_only=True):
    write_off_id: str
    invoice_number: str
    currency: Currency
    amount_minor: PositiveMinor
    reason: str


class WriteOffApproved(AccountEvent, frozen=True, kw_only=True):
    """Approved by ``actor``, who is never the requester. Effective from ``effective_date``;
    ``applied`` says which installments it reduced."""

    write_off_id: str
    invoice_number: str
    currency: Currency
    amount_minor: PositiveMinor
    effective_date: date
    requested_by: str
    applied: tuple[AllocationLine, ...] = ()


class WriteOffRejected(AccountEvent, frozen=True, kw_only=True):
    write_off_id: str
    invoice_number: str
    reason: str


class WrittenOffAmountRecovered(AccountEvent, frozen=True, kw_only=True):
    """Money received after a write-off; it does not reopen the invoice."""

    invoice_number: str
    currency: Currency
    amount_minor: PositiveMinor
    received_on: date
    reference: str = ""
