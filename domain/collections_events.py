"""Collections events: what time caused (the clock) and what collectors did.

Two families, both on the public contract (``arledger schema``, the Kafka relay):

* **Time-caused facts** (:class:`TimeCausedEvent`): an invoice fell overdue, entered an
  aging bucket, a dunning step became due, a promise was kept or broken. Nobody
  commands them; the clock records them for a business date. Each is its own tiny
  aggregate at version 1 whose id is derived from (kind, invoice, installment,
  threshold) - so recording the same fact twice collides on the store's unique key,
  which is what makes ``arledger clock tick`` idempotent. ``business_date`` is the day
  the threshold was crossed, even when a late tick catches up on missed days.
* **Collector facts** (contacts, promises, exemptions, escalation, costs): recorded on
  the customer account by commands (``domain/collections_commands.py``).

All carry ``customer_id`` (``AccountEvent``), the Kafka key of the relay, so one
customer's events stay in order on one partition.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import msgspec

from domain.events import AccountEvent, Currency

Channel = Literal["email", "sms", "letter", "phone_call", "visit", "formal_demand", "lawyer_letter", "agency", "litigation"]
NonNegativeMinor = Annotated[int, msgspec.Meta(ge=0, description="Amount in minor units, >= 0")]


class TimeCausedEvent(AccountEvent, frozen=True, kw_only=True):
    """Base of facts caused by the passing of time, each with its own business date."""

    business_date: date


# --- time-caused (the clock) ----------------------------------------------------------------


class InvoiceFellOverdue(TimeCausedEvent, frozen=True, kw_only=True):
    """The day after the installment's due date passed with an open amount."""

    invoice_number: str
    installment: int
    due_date: date
    currency: Currency
    open_minor: NonNegativeMinor


class AgingBucketEntered(TimeCausedEvent, frozen=True, kw_only=True):
    """The installment crossed a bucket edge (``previous_bucket`` "current" = not yet due)."""

    invoice_number: str
    installment: int
    due_date: date
    previous_bucket: str
    bucket: str
    days_past_due: int
    currency: Currency
    open_minor: NonNegativeMinor
    rule_version: str


class DunningStepDue(TimeCausedEvent, frozen=True, kw_only=True):
    """A step of the customer's dunning track is due for one installment. Downstream
    services (mailers, SMS gateways, letter shops, agencies) act on it and report back
    by logging the contact (:class:`CollectionContactLogged`)."""

    invoice_number: str
    installment: int
    due_date: date
    track: str
    step: str
    channel: Channel
    template: str
    offset_days: int  # days relative to the due date (negative = before due)
    currency: Currency
    open_minor: NonNegativeMinor
    policy_version: str = ""
    action: str = ""  # what the step asks beyond the contact: "credit_hold", "legal_escalation", "assign_agency", ...


class PromiseToPayKept(TimeCausedEvent, frozen=True, kw_only=True):
    """Payments received since the promise reached the promised amount in time."""

    promise_id: str
    promised_minor: int
    paid_minor: int
    currency: Currency
    promised_date: date


class PromiseToPayBroken(TimeCausedEvent, frozen=True, kw_only=True):
    """The promised date plus the tolerance passed without the promised amount paid;
    ``business_date`` is the first day after the tolerance."""

    promise_id: str
    promised_minor: int
    paid_minor: int
    currency: Currency
    promised_date: date
    tolerance_days: int


# --- collector facts (commands on the account) ----------------------------------------------


class CollectionContactLogged(AccountEvent, frozen=True, kw_only=True):
    contact_id: str
    contacted_on: date
    channel: Channel
    outcome: str
    collector: str
    contact_person: str = ""
    next_action_date: date | None = None
    notes: str = ""
    invoice_numbers: tuple[str, ...] = ()
    dunning_event_id: str | None = None  # the DunningStepDue this contact answers, if any


class PromiseToPayMade(AccountEvent, frozen=True, kw_only=True):
    promise_id: str
    made_on: date
    promised_date: date
    currency: Currency
    amount_minor: Annotated[int, msgspec.Meta(gt=0)]
    tolerance_days: int
    collector: str = ""
    invoice_numbers: tuple[str, ...] = ()


class DunningExemptionGranted(AccountEvent, frozen=True, kw_only=True):
    invoice_number: str
    granted_on: date
    reason: str


class DunningExemptionRevoked(AccountEvent, frozen=True, kw_only=True):
    invoice_number: str
    revoked_on: date
    reason: str


class CollectorAssigned(AccountEvent, frozen=True, kw_only=True):
    """Who works this customer's collections (worklists); empty = round-robin default."""

    collector: str


class EscalatedToLegal(AccountEvent, frozen=True, kw_only=True):
    case_id: str
    escalated_on: date
    law_firm: str = ""
    invoice_numbers: tuple[str, ...] = ()
    reason: str = ""


class AssignedToAgency(AccountEvent, frozen=True, kw_only=True):
    case_id: str
    assigned_on: date
    agency: str
    invoice_numbers: tuple[str, ...] = ()
    reason: str = ""


class CollectionCaseClosed(AccountEvent, frozen=True, kw_only=True):
    case_id: str
    closed_on: date
    outcome: str


class CollectionCostIncurred(AccountEvent, frozen=True, kw_only=True):
    """Agency fees, legal costs, postage: recovery is measured net of these."""

    cost_id: str
    incurred_on: date
    currency: Currency
    amount_minor: Annotated[int, msgspec.Meta(gt=0)]
    kind: str
    case_id: str | None = None
    collector: str = ""
    channel: Channel | None = None
