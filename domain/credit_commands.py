"""Credit management commands (imperative), validated like the ledger's commands.

Commands about an order or a limit request name the order (``order_id``, claimed
ledger-wide when the order is placed) so the service finds the customer itself.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar

import msgspec

from domain.commands import Code, Command, Currency, Minor, Reason, Text
from domain.credit_events import FinancialIndicators, PaymentBehaviour

NonNegativeMinor = Annotated[int, msgspec.Meta(ge=0, le=10**15, description="Amount in minor units, 0 or more")]


class AssessCredit(Command, frozen=True, kw_only=True):
    """Score the customer with the policy's scorecard and record grade and reasons."""

    customer_id: Code
    assessed_on: date
    financial: FinancialIndicators = FinancialIndicators()
    operating_state: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "normal"
    behaviour: PaymentBehaviour = PaymentBehaviour()


class SetCreditLimit(Command, frozen=True, kw_only=True):
    """Set the limit; an increase above the policy's threshold becomes a request that a
    second, different actor approves."""

    customer_id: Code
    limit_minor: NonNegativeMinor
    reason: Reason
    request_id: Code | None = None


class ApproveCreditLimitIncrease(Command, frozen=True, kw_only=True):
    customer_id: Code
    request_id: Code


class RejectCreditLimitIncrease(Command, frozen=True, kw_only=True):
    customer_id: Code
    request_id: Code
    reason: Reason


class RecordCover(Command, frozen=True, kw_only=True):
    """Base of the two covers; the covered amount reduces net exposure while valid."""

    customer_id: Code
    cover_id: Code
    currency: Currency
    covered_minor: Minor
    valid_from: date
    valid_until: date | None = None


class RecordCreditInsurance(RecordCover, frozen=True, kw_only=True):
    insurer: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class RecordGuarantee(RecordCover, frozen=True, kw_only=True):
    guarantor: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class PlaceSalesOrder(Command, frozen=True, kw_only=True):
    """Place an order; with ``check`` (default) it is credit-checked in the same save."""

    creates: ClassVar[tuple[str, str] | None] = ("sales_order", "order_id")
    customer_id: Code
    order_id: Code
    currency: Currency
    amount_minor: Minor
    ordered_on: date
    description: Text = ""
    check: bool = True


class CheckOrderCredit(Command, frozen=True, kw_only=True):
    """Check (or re-check) an order. Naming the customer saves the look-up of the order."""

    targets: ClassVar[tuple[str, str] | None] = ("sales_order", "order_id")
    order_id: Code
    checked_on: date
    customer_id: Code | None = None


class ReleaseHeldOrder(Command, frozen=True, kw_only=True):
    targets: ClassVar[tuple[str, str] | None] = ("sales_order", "order_id")
    order_id: Code
    reason: Reason


class RejectHeldOrder(Command, frozen=True, kw_only=True):
    targets: ClassVar[tuple[str, str] | None] = ("sales_order", "order_id")
    order_id: Code
    reason: Reason


class CancelSalesOrder(Command, frozen=True, kw_only=True):
    targets: ClassVar[tuple[str, str] | None] = ("sales_order", "order_id")
    order_id: Code
    cancelled_on: date
    reason: Reason


class InvoiceSalesOrder(Command, frozen=True, kw_only=True):
    """Invoice an approved order (the whole open amount unless ``amount_minor``)."""

    targets: ClassVar[tuple[str, str] | None] = ("sales_order", "order_id")
    creates: ClassVar[tuple[str, str] | None] = ("invoice", "invoice_number")
    order_id: Code
    invoice_number: Code
    issue_date: date
    amount_minor: Minor | None = None
    due_date: date | None = None


class PlaceCreditHold(Command, frozen=True, kw_only=True):
    customer_id: Code
    reason: Reason
    placed_on: date


class ReleaseCreditHold(Command, frozen=True, kw_only=True):
    """Release a hold; ``cause`` manual (default) or an automatic cause, overridden."""

    customer_id: Code
    reason: Reason
    released_on: date
    cause: Annotated[str, msgspec.Meta(pattern="^(manual|overdue|over_limit|grade)$")] = "manual"


class ReviewCredit(Command, frozen=True, kw_only=True):
    """Sweep step: record CreditReviewDue for the customer if a review is due on ``as_of``.
    ``broken_promises_on``: the days the customer broke promises to pay (collections' facts,
    not on the account; the sweep reads them from the view), each a review signal."""

    customer_id: Code
    as_of: date
    broken_promises_on: tuple[date, ...] = ()


class EvaluateEarlyWarnings(Command, frozen=True, kw_only=True):
    """Sweep step: raise or clear the customer's early warnings (and automatic holds) on
    ``as_of``; ``book_ar_minor`` is the whole book's open AR in the account's currency."""

    customer_id: Code
    as_of: date
    book_ar_minor: NonNegativeMinor = 0
    #: promises broken within the policy's ``warnings.broken_promises_window_days`` up to ``as_of``
    broken_promises: Annotated[int, msgspec.Meta(ge=0)] = 0


CREDIT_COMMANDS: tuple[type[Command], ...] = (
    AssessCredit, SetCreditLimit, ApproveCreditLimitIncrease, RejectCreditLimitIncrease, RecordCreditInsurance, RecordGuarantee,
    PlaceSalesOrder, CheckOrderCredit, ReleaseHeldOrder, RejectHeldOrder, CancelSalesOrder, InvoiceSalesOrder,
    PlaceCreditHold, ReleaseCreditHold, ReviewCredit, EvaluateEarlyWarnings,
)
