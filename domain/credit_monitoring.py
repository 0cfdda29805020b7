"""Keep deciding as behaviour changes: review due dates and early-warning rules. Pure.

Reviews: a customer is due for review ``review_every_days`` (by grade) after the last
assessment; a signal since then (late payment, new dispute, broken promise, an aging bucket
crossed) brings the review forward to the signal's date. A customer never assessed is due
at once. One review is outstanding per assessment cycle: its id (customer, due date,
trigger) is deterministic, so recording it twice records nothing new.

Early warnings (including ``broken_promise``: more promises to pay broken within a window
than the threshold): each rule of the policy is either active (measured value beyond the
threshold) or not; the account remembers which are raised, so a sweep raises new ones,
clears those that went away, and records nothing when nothing changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from domain import credit_events as ce
from domain.account import AccountState, CommandContext, CustomerAccount
from domain.credit import account_exposure, automatic_hold_causes, open_ar, overdue
from domain.scorecard import CreditPolicy

PCT = Decimal("0.01")


def bucket_index(days: int, edges: Iterable[int]) -> int:
    return sum(1 for edge in edges if days > edge)


def review_due(state: AccountState, policy: CreditPolicy, as_of: date,
               broken_promises_on: Iterable[date] = ()) -> tuple[date, str] | None:
    """(due date, trigger) of the review due by ``as_of``, or None. ``broken_promises_on``:
    days the customer broke promises to pay (collections' facts live outside the account);
    those after the last assessment are signals."""
    credit = state.credit
    if credit.assessed_on is None:
        return as_of, "never_assessed"
    grade = policy.grade_policy(credit.grade)
    candidates = [(credit.assessed_on + timedelta(days=grade.review_every_days), "periodic")]
    candidates += [(signal.on, signal.kind) for signal in credit.signals]
    candidates += [(day, "broken_promise") for day in broken_promises_on if credit.assessed_on < day <= as_of]
    days, _ = overdue(state, as_of)
    edges = sorted(policy.reviews.bucket_edges)
    if bucket_index(days, edges) > bucket_index(credit.assessed_overdue_days, edges):
        edge = max(e for e in edges if days > e)
        candidates.append((as_of - timedelta(days=days - edge - 1), f"bucket_crossed_{edge}"))
    due_on, trigger = min(candidates)
    return (due_on, trigger) if due_on <= as_of else None


def pending_review(state: AccountState, policy: CreditPolicy, as_of: date,
                   broken_promises_on: Iterable[date] = ()) -> tuple[str, date, str] | None:
    """(review id, due date, trigger) of a due review not yet recorded, or None."""
    due = review_due(state, policy, as_of, broken_promises_on)
    if due is None:
        return None
    due_on, trigger = due
    review_id = "never_assessed" if trigger == "never_assessed" else f"{due_on.isoformat()}:{trigger}"
    return None if state.credit.last_review_id == review_id else (review_id, due_on, trigger)


def record_review(account: CustomerAccount, ctx: CommandContext, policy: CreditPolicy, as_of: date,
                  broken_promises_on: Iterable[date] = ()) -> ce.CreditReviewDue | None:
    pending = pending_review(account.state, policy, as_of, broken_promises_on)
    if pending is None:
        return None
    review_id, due_on, trigger = pending
    credit = account.state.credit
    return account._record(ctx, ce.CreditReviewDue, review_id=review_id, due_on=due_on, trigger=trigger,
                           grade=credit.grade, last_assessed_on=credit.assessed_on)


def share_pct(part: int, whole: int) -> Decimal:
    return (Decimal(part) * 100 / Decimal(whole)).quantize(PCT, ROUND_HALF_EVEN) if whole else Decimal(0)


def active_warnings(state: AccountState, policy: CreditPolicy, as_of: date, book_ar_minor: int,
                    broken_promises: int = 0) -> dict[str, tuple[str, str]]:
    """rule -> (threshold, measured) for every warning rule that fires on ``as_of``;
    ``broken_promises``: promises broken within the rule's window (read by the sweep)."""
    rules = policy.warnings
    active: dict[str, tuple[str, str]] = {}
    limit = state.credit.limit_minor
    if rules.exposure_over_limit and limit is not None:
        _, net = account_exposure(state, as_of)
        if net > limit:
            active["exposure_over_limit"] = (str(limit), str(net))
    ar = open_ar(state)
    if rules.ar_above_minor is not None and ar > rules.ar_above_minor:
        active["ar_above"] = (str(rules.ar_above_minor), str(ar))
    days, _ = overdue(state, as_of)
    if rules.days_overdue_above is not None and days > rules.days_overdue_above:
        active["days_overdue_above"] = (str(rules.days_overdue_above), str(days))
    if rules.concentration_above_pct is not None and book_ar_minor > 0:
        share = share_pct(ar, book_ar_minor)
        if share > rules.concentration_above_pct:
            active["concentration_above"] = (str(rules.concentration_above_pct), str(share))
    grade, previous = state.credit.grade, state.credit.previous_grade
    if rules.grade_downgrade and grade and previous and policy.grade_rank(grade) > policy.grade_rank(previous):
        active["grade_downgrade"] = (previous, grade)
    if rules.broken_promises_above is not None and broken_promises > rules.broken_promises_above:
        active["broken_promise"] = (str(rules.broken_promises_above), str(broken_promises))
    return active


def needs_update(state: AccountState, policy: CreditPolicy, as_of: date, book_ar_minor: int, broken_promises: int = 0) -> bool:
    """Would the warnings sweep record anything for this account (a warning or an
    automatic hold to raise or clear)?"""
    warnings = set(active_warnings(state, policy, as_of, book_ar_minor, broken_promises))
    holds = set(automatic_hold_causes(state, policy, as_of))
    automatic = {cause for cause, hold in state.credit.holds.items() if hold.automatic}
    manual_blocks = holds & (set(state.credit.holds) - automatic)  # a cause held manually is not placed again
    return warnings != set(state.credit.warnings) or (holds - manual_blocks) != automatic


def reconcile_warnings(account: CustomerAccount, ctx: CommandContext, policy: CreditPolicy, as_of: date, book_ar_minor: int,
                       broken_promises: int = 0) -> list[ce.Event]:
    active = active_warnings(account.state, policy, as_of, book_ar_minor, broken_promises)
    raised = account.state.credit.warnings
    recorded: list[ce.Event] = []
    for rule, state in sorted(raised.items()):
        if rule not in active:
            measured = str(broken_promises) if rule == "broken_promise" else _measured_now(account.state, rule, as_of, book_ar_minor, policy)
            recorded.append(account._record(ctx, ce.EarlyWarningCleared, rule=rule, threshold=state.threshold, measured=measured, as_of=as_of))
    for rule, (threshold, measured) in sorted(active.items()):
        if rule not in raised:
            recorded.append(account._record(ctx, ce.EarlyWarningRaised, rule=rule, threshold=threshold, measured=measured, as_of=as_of))
    return recorded


def _measured_now(state: AccountState, rule: str, as_of: date, book_ar_minor: int, policy: CreditPolicy) -> str:
    if rule == "exposure_over_limit":
        return str(account_exposure(state, as_of)[1])
    if rule == "ar_above":
        return str(open_ar(state))
    if rule == "days_overdue_above":
        return str(overdue(state, as_of)[0])
    if rule == "concentration_above":
        return str(share_pct(open_ar(state), book_ar_minor))
    return state.credit.grade or ""


def herfindahl(amounts: Iterable[int]) -> Decimal:
    """Herfindahl-Hirschman index of the book: sum of squared shares, 0..1 (1 = one customer)."""
    values = [a for a in amounts if a > 0]
    total = sum(values)
    if not total:
        return Decimal(0)
    return (sum(Decimal(a) * a for a in values) / (Decimal(total) * total)).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
