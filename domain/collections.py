"""Pure rules of the collections clock: aging buckets, the calendar thresholds of an
installment, and when a promise to pay is kept or broken.

The bucket edges live here, once: the clock's AgingBucketEntered events and the aging
report must put an installment in the same bucket on the same day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from functools import cache

import msgspec

from domain.errors import RuleViolation

#: First day past due of each overdue bucket: 1-30, 31-60, 61-90, 91+ (DESIGN.md).
DEFAULT_BUCKET_EDGES: tuple[int, ...] = (1, 31, 61, 91)
CURRENT = "current"


class AgingRule(msgspec.Struct, frozen=True, kw_only=True):
    """Bucket edges (first day past due of each bucket, ascending, the first >= 1)."""

    edges: tuple[int, ...] = DEFAULT_BUCKET_EDGES

    def __post_init__(self) -> None:
        check_edges(self.edges)

    @property
    def version(self) -> str:
        """Names the rule in every AgingBucketEntered, so a change of edges is visible."""
        return "buckets:" + ",".join(str(e) for e in self.edges)

    def labels(self) -> tuple[str, ...]:
        return bucket_labels(self.edges)

    def bucket(self, days_past_due: int) -> str:
        return bucket_for(days_past_due, self.edges)


def check_edges(edges: Sequence[int]) -> None:
    if not edges:
        raise RuleViolation("aging.edges", "not_empty", "needs at least one bucket edge")
    if edges[0] < 1:
        raise RuleViolation("aging.edges", "positive", "the first overdue bucket starts at 1 day past due or later")
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise RuleViolation("aging.edges", "ascending", "bucket edges must be strictly ascending")


def bucket_labels(edges: Sequence[int]) -> tuple[str, ...]:
    """``(1, 31, 61, 91)`` -> ``("1-30", "31-60", "61-90", "91+")``."""
    labels = [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:], strict=False)]
    return (*labels, f"{edges[-1]}+")


def bucket_for(days_past_due: int, edges: Sequence[int] = DEFAULT_BUCKET_EDGES) -> str:
    if days_past_due < edges[0]:
        return CURRENT
    labels = bucket_labels(edges)
    for index in range(len(edges) - 1, -1, -1):
        if days_past_due >= edges[index]:
            return labels[index]
    return CURRENT  # pragma: no cover - unreachable


def days_past_due(due_date: date, on: date) -> int:
    return max((on - due_date).days, 0)


class CalendarThreshold(msgspec.Struct, frozen=True):
    """One calendar fact of an installment: falls overdue, or enters a bucket."""

    offset_days: int  # days after the due date on which it is crossed
    kind: str  # "overdue" | "bucket"
    previous_bucket: str = ""
    bucket: str = ""

    @property
    def key(self) -> str:
        return self.kind if self.kind == "overdue" else f"bucket:{self.bucket}"


@cache
def calendar_schedule(rule: AgingRule) -> tuple[CalendarThreshold, ...]:
    """Thresholds in crossing order: overdue on the day after due, then each bucket edge."""
    out = [CalendarThreshold(1, "overdue")]
    labels = rule.labels()
    previous = CURRENT
    for edge, label in zip(rule.edges, labels, strict=True):
        out.append(CalendarThreshold(edge, "bucket", previous, label))
        previous = label
    out.sort(key=lambda t: t.offset_days)  # stable: overdue before a bucket entered the same day
    return tuple(out)


def threshold_date(due_date: date, offset_days: int, shift_days: int = 0) -> date:
    return due_date + timedelta(days=offset_days + shift_days)


# --- promises to pay ---------------------------------------------------------------------------


class PromiseVerdict(msgspec.Struct, frozen=True):
    kept: bool
    on: date  # the business date of the verdict
    paid_minor: int


def judge_promise(made_on: date, promised_date: date, tolerance_days: int, amount_minor: int,
                  payments: Iterable[tuple[date, int]], today: date) -> PromiseVerdict | None:
    """Kept on the day the payments received from ``made_on`` reach the amount, if that
    is within the promised date plus the tolerance; broken on the first day after the
    tolerance otherwise; ``None`` while undecided on ``today``."""
    deadline = promised_date + timedelta(days=tolerance_days)
    paid = 0
    for value_date, amount in sorted(payments):
        if value_date < made_on or value_date > deadline or value_date > today:
            continue
        paid += amount
        if paid >= amount_minor:
            return PromiseVerdict(True, value_date, paid)
    broken_on = deadline + timedelta(days=1)
    if today >= broken_on:
        return PromiseVerdict(False, broken_on, paid)
    return None


def promise_expires_on(promised_date: date, tolerance_days: int) -> date:
    """Last day a promise shields its invoices from dunning steps."""
    return promised_date + timedelta(days=tolerance_days)


# --- walking an installment's thresholds -------------------------------------------------------

FIRE, SKIP, PAUSE = "fire", "skip", "pause"


class Walk(msgspec.Struct):
    fired: list[tuple[int, int, int]]  # (threshold index, day number of the business date, open amount then)
    index: int  # the next threshold not yet passed
    parked: bool  # nothing can fire until the installment changes (settled, or disputed)


def walk(days: Sequence[int], index: int, today: int, open_at: Callable[[int], int],
         hold: Callable[[int], str | None], closed_from: int | None) -> Walk:
    """Pass every threshold dated on or before ``today``, oldest first, from ``index``.

    Dates are day numbers (``date.toordinal()``): the clock walks millions of them.

    A threshold fires when the installment is open on its date and nothing holds it;
    ``hold`` answers SKIP (exempted, under a promise: passes silently) or PAUSE (disputed:
    stop here). When it is not open on a date from which it stays closed
    (``closed_from``, None while open now), the walk parks instead of passing the rest.
    """
    fired: list[tuple[int, int, int]] = []
    while index < len(days) and days[index] <= today:
        on = days[index]
        held = hold(on)
        if held == PAUSE:
            return Walk(fired, index, True)
        amount = open_at(on)
        if amount <= 0 and closed_from is not None and on >= closed_from:
            return Walk(fired, index, True)
        if amount > 0 and held is None:
            fired.append((index, on, amount))
        index += 1
    return Walk(fired, index, False)


def never_held(on: int) -> str | None:
    return None


# --- collections state kept on the customer account -------------------------------------------


class Promise(msgspec.Struct, kw_only=True):
    promise_id: str
    made_on: date
    promised_date: date
    tolerance_days: int
    amount_minor: int
    invoice_numbers: tuple[str, ...] = ()


class CollectionsState(msgspec.Struct, kw_only=True):
    """What the account remembers of collections to check commands (ids unique, one
    exemption per invoice, cases open before closing)."""

    collector: str = ""
    contacts: set[str] = msgspec.field(default_factory=set)
    promises: dict[str, Promise] = msgspec.field(default_factory=dict)
    exemptions: dict[str, str] = msgspec.field(default_factory=dict)  # invoice -> reason
    open_cases: dict[str, str] = msgspec.field(default_factory=dict)  # case id -> "legal" | "agency"
    closed_cases: set[str] = msgspec.field(default_factory=set)
    costs: set[str] = msgspec.field(default_factory=set)
