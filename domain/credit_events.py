"""Credit management events: assessments, limits, covers, sales orders and their
credit checks, holds, reviews and early warnings.

Customer-scoped facts are :class:`AccountEvent` s on the customer's account (the
consistency boundary that also knows the open AR the checks need); the policy table is
ledger-wide, an aggregate of its own (:data:`POLICY_ID`). Same contract rules as
``domain.events``: once released, a shape only gains optional fields.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID, uuid5

import msgspec

from domain.events import AccountEvent, Currency, Event, PositiveMinor
from domain.registry import NAMESPACE
from domain.scorecard import CreditPolicy, FactorScore

#: Aggregate id of the ledger-wide credit policy (its versions are CreditPolicyChanged).
POLICY_ID: UUID = uuid5(NAMESPACE, "credit-policy")

Decision = Literal["approve", "hold", "reject"]
Count = Annotated[int, msgspec.Meta(ge=0)]


class FinancialIndicators(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """From the customer's accounts or a credit agency; unknown ones stay ``None``."""

    current_ratio: Decimal | None = None
    debt_ratio: Decimal | None = None
    profitability: Decimal | None = None  # net margin, 0.05 = 5 %
    years_trading: Count | None = None
    external_rating: str | None = None


class PaymentBehaviour(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Indicators of the customer's risk profile (average days late, share paid late...)."""

    average_days_late: Decimal = Decimal(0)
    share_paid_late: Decimal = Decimal(0)  # 0.25 = a quarter of invoices settled late
    broken_promises: Count = 0
    disputes: Count = 0
    overdue_minor: Count = 0
    overdue_days: Count = 0  # days past due of the oldest overdue item now


class CreditAssessed(AccountEvent, frozen=True, kw_only=True):
    assessed_on: date
    financial: FinancialIndicators
    operating_state: str
    behaviour: PaymentBehaviour
    model_version: str
    score: int
    grade: str
    previous_grade: str | None = None
    reason_codes: tuple[str, ...] = ()
    factors: tuple[FactorScore, ...] = ()


class CreditPolicyChanged(Event, frozen=True, kw_only=True):
    """A new version of the ledger-wide policy (scorecard, grade table, rules)."""

    policy: CreditPolicy
    reason: str


class CreditLimitSet(AccountEvent, frozen=True, kw_only=True):
    currency: Currency
    limit_minor: int
    previous_limit_minor: int | None
    reason: str
    request_id: str | None = None
    approved_by: str | None = None


class CreditLimitIncreaseRequested(AccountEvent, frozen=True, kw_only=True):
    """An increase above the approval threshold waits for a second, different actor."""

    request_id: str
    currency: Currency
    limit_minor: int
    previous_limit_minor: int | None
    threshold_minor: int
    reason: str


class CreditLimitIncreaseApproved(AccountEvent, frozen=True, kw_only=True):
    request_id: str
    limit_minor: int
    requested_by: str


class CreditLimitIncreaseRejected(AccountEvent, frozen=True, kw_only=True):
    request_id: str
    requested_by: str
    reason: str


class CoverEvent(AccountEvent, frozen=True, kw_only=True):
    """Cover of the account's receivables (not itself an event type): while valid, the
    covered amount reduces net exposure."""

    cover_id: str
    currency: Currency
    covered_minor: PositiveMinor
    valid_from: date
    valid_until: date | None = None


class CreditInsuranceRecorded(CoverEvent, frozen=True, kw_only=True):
    insurer: str


class GuaranteeRecorded(CoverEvent, frozen=True, kw_only=True):
    guarantor: str


class SalesOrderPlaced(AccountEvent, frozen=True, kw_only=True):
    order_id: str
    currency: Currency
    amount_minor: PositiveMinor
    ordered_on: date
    description: str = ""


class SalesOrderCancelled(AccountEvent, frozen=True, kw_only=True):
    order_id: str
    cancelled_on: date
    reason: str


class SalesOrderInvoiced(AccountEvent, frozen=True, kw_only=True):
    """The order is invoiced (``InvoiceIssued`` carries its ``sales_order_id``) and
    closed: from now on it counts in exposure as open AR only, never twice."""

    order_id: str
    invoice_number: str
    invoiced_minor: int


class CheckReason(msgspec.Struct, frozen=True, kw_only=True):
    code: str  # OVER_LIMIT, NO_CREDIT_LIMIT, OVERDUE_BEYOND_POLICY, PREPAYMENT_REQUIRED, ...
    outcome: Decision
    message: str
    measured: int | None = None
    threshold: int | None = None


class CheckFigures(msgspec.Struct, frozen=True, kw_only=True):
    currency: str
    open_ar_minor: int
    open_orders_minor: int  # other uninvoiced orders, this one excluded
    order_minor: int
    exposure_minor: int  # open AR + open orders + this order
    covered_minor: int  # insurance and guarantees valid on the check date
    net_exposure_minor: int
    limit_minor: int | None
    days_overdue: int
    grade: str


class OrderCreditChecked(AccountEvent, frozen=True, kw_only=True):
    order_id: str
    checked_on: date
    decision: Decision
    reasons: tuple[CheckReason, ...]
    figures: CheckFigures
    policy_version: int = 0


class HeldOrderReleased(AccountEvent, frozen=True, kw_only=True):
    order_id: str
    reason: str


class HeldOrderRejected(AccountEvent, frozen=True, kw_only=True):
    order_id: str
    reason: str


HoldCause = Literal["manual", "overdue", "over_limit", "grade"]


class CreditHoldPlaced(AccountEvent, frozen=True, kw_only=True):
    """Automatic (``cause`` a policy rule, with the measured value and threshold) or
    manual (``cause`` "manual", with a reason)."""

    cause: HoldCause
    automatic: bool
    reason: str
    placed_on: date
    measured: int | None = None
    threshold: int | None = None


class CreditHoldReleased(AccountEvent, frozen=True, kw_only=True):
    cause: HoldCause
    automatic: bool
    reason: str
    released_on: date


class CreditReviewDue(AccountEvent, frozen=True, kw_only=True):
    """A customer must be re-assessed: periodically by grade, or brought forward by a
    signal (late payment, new dispute, aging bucket crossed, broken promise)."""

    review_id: str  # deterministic: customer, due date and trigger
    due_on: date
    trigger: str
    grade: str | None
    last_assessed_on: date | None


class EarlyWarningRaised(AccountEvent, frozen=True, kw_only=True):
    rule: str  # exposure_over_limit, ar_above, days_overdue_above, concentration_above, grade_downgrade, broken_promise
    threshold: str
    measured: str
    as_of: date


class EarlyWarningCleared(AccountEvent, frozen=True, kw_only=True):
    rule: str
    threshold: str
    measured: str
    as_of: date
