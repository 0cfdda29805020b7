"""Pure arithmetic of collector worklists and collection results.

* **Priority** of a customer on a worklist: overdue amount, weighted up by how late it
  is and by the customer's risk - broken promises, plus the credit grade's rank (0 for
  the best grade) when credit management grades customers:
  ``overdue_minor x (30 + days_past_due) / 30 x (1 + broken_promises + grade_rank)``.
* **Attribution** of recovered money to dunning steps: last touch - a payment
  applied to an installment counts for the latest step that fired for that installment
  on or before the payment's value date.
* Ratios are computed in integers and rounded once, half-even, to 4 places.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

import msgspec

PLACES = Decimal("0.0001")


def ratio(numerator: int, denominator: int) -> Decimal | None:
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(PLACES, ROUND_HALF_EVEN)


def priority(overdue_minor: int, days_past_due: int, broken_promises: int, grade_rank: int = 0) -> int:
    return overdue_minor * (30 + max(days_past_due, 0)) * (1 + broken_promises + grade_rank) // 30


class StepOutcome(msgspec.Struct, kw_only=True):
    """What followed one dunning step: money recovered and its days after the step."""

    open_minor: int
    recovered_minor: int = 0
    recovered_day_minor: int = 0  # sum of amount x days after the step (for the weighted mean)


def attribute(step_days: Sequence[int], step_open: Sequence[int], payments: Sequence[tuple[int, int]]) -> list[StepOutcome]:
    """Steps of one installment (day numbers, ascending) and its payments (day, amount):
    each payment goes to the latest step on or before its day; earlier payments to none."""
    outcomes = [StepOutcome(open_minor=o) for o in step_open]
    for day, amount in payments:
        index = bisect.bisect_right(step_days, day) - 1
        if index < 0 or amount <= 0:
            continue
        outcomes[index].recovered_minor += amount
        outcomes[index].recovered_day_minor += amount * (day - step_days[index])
    return outcomes


class ResultRow(msgspec.Struct, kw_only=True):
    key: str
    steps: int = 0
    open_at_step_minor: int = 0
    recovered_minor: int = 0
    recovered_day_minor: int = 0
    cost_minor: int | None = None  # None where costs cannot be attributed (tracks, steps)

    def add(self, outcome: StepOutcome) -> None:
        self.steps += 1
        self.open_at_step_minor += outcome.open_minor
        self.recovered_minor += outcome.recovered_minor
        self.recovered_day_minor += outcome.recovered_day_minor

    def as_dict(self) -> dict[str, object]:
        days = ratio(self.recovered_day_minor, self.recovered_minor)
        return {
            "key": self.key, "steps": self.steps, "open_at_step_minor": self.open_at_step_minor,
            "recovered_minor": self.recovered_minor, "recovery_rate": ratio(self.recovered_minor, self.open_at_step_minor),
            "days_to_collect": days, "cost_minor": self.cost_minor,
            "cost_per_unit_recovered": None if self.cost_minor is None else ratio(self.cost_minor, self.recovered_minor),
            "net_recovered_minor": None if self.cost_minor is None else self.recovered_minor - self.cost_minor,
        }
