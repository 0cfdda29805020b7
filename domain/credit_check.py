"""The order credit check: exposure against the limit and the policy of the grade. Pure.

exposure = open AR + open (uninvoiced) orders + this order; net exposure subtracts the
insurance and guarantees valid on the check date. Each rule that fails gives a reason with
the measured value and the threshold; the decision is the strictest outcome among them
(reject > hold > approve). The rules:

=========================  =======  ========================================================
code                       outcome  when
=========================  =======  ========================================================
PREPAYMENT_REQUIRED        reject   the grade's policy requires prepayment
OVER_LIMIT                 hold     net exposure above the limit (measured: by how much)
OVER_LIMIT                 reject   ... by more than ``reject_over_limit_pct`` of the limit
NO_CREDIT_LIMIT            hold     no limit was ever set
OVERDUE_BEYOND_POLICY      hold     oldest overdue item older than the grade's max days
GUARANTEE_REQUIRED         hold     the grade requires a guarantee and none covers the account
CUSTOMER_ON_HOLD           hold     the account is on credit hold (each cause listed)
=========================  =======  ========================================================
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from domain.credit_events import CheckFigures, CheckReason, Decision
from domain.scorecard import CreditPolicy

_RANK: dict[Decision, int] = {"approve": 0, "hold": 1, "reject": 2}


def figures(*, currency: str, open_ar_minor: int, open_orders_minor: int, order_minor: int, covered_minor: int,
            limit_minor: int | None, days_overdue: int, grade: str) -> CheckFigures:
    exposure = open_ar_minor + open_orders_minor + order_minor
    return CheckFigures(
        currency=currency, open_ar_minor=open_ar_minor, open_orders_minor=open_orders_minor, order_minor=order_minor,
        exposure_minor=exposure, covered_minor=covered_minor, net_exposure_minor=max(0, exposure - covered_minor),
        limit_minor=limit_minor, days_overdue=days_overdue, grade=grade,
    )


def check(policy: CreditPolicy, f: CheckFigures, holds: dict[str, str]) -> tuple[Decision, tuple[CheckReason, ...]]:
    """Decide on one order. ``holds`` maps each active credit-hold cause to its reason."""
    grade = policy.grade_policy(f.grade)
    reasons: list[CheckReason] = []
    if grade.prepayment_required:
        reasons.append(CheckReason(code="PREPAYMENT_REQUIRED", outcome="reject", message=f"grade {f.grade} requires prepayment"))
    if f.limit_minor is None:
        reasons.append(CheckReason(code="NO_CREDIT_LIMIT", outcome="hold", message="no credit limit has been set", measured=f.net_exposure_minor))
    elif f.net_exposure_minor > f.limit_minor:
        over = f.net_exposure_minor - f.limit_minor
        reject_above = (Decimal(f.limit_minor) * policy.checks.reject_over_limit_pct / 100).quantize(Decimal(1), ROUND_HALF_EVEN)
        outcome: Decision = "reject" if over > reject_above else "hold"
        reasons.append(CheckReason(
            code="OVER_LIMIT", outcome=outcome, measured=over, threshold=f.limit_minor,
            message=f"net exposure {f.net_exposure_minor} is over the limit {f.limit_minor} by {over}",
        ))
    if f.days_overdue > grade.max_overdue_days:
        reasons.append(CheckReason(
            code="OVERDUE_BEYOND_POLICY", outcome="hold", measured=f.days_overdue, threshold=grade.max_overdue_days,
            message=f"oldest item is {f.days_overdue} days overdue, grade {f.grade} allows {grade.max_overdue_days}",
        ))
    if grade.guarantee_required and f.covered_minor == 0:
        reasons.append(CheckReason(code="GUARANTEE_REQUIRED", outcome="hold", message=f"grade {f.grade} requires a guarantee or credit insurance"))
    for cause, why in sorted(holds.items()):
        reasons.append(CheckReason(code="CUSTOMER_ON_HOLD", outcome="hold", message=f"credit hold ({cause}): {why}"))
    decision: Decision = max((r.outcome for r in reasons), key=_RANK.__getitem__, default="approve")
    return decision, tuple(reasons)
