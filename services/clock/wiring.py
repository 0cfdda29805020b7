"""Build a :class:`Clock` for an app: the view database, the runner of the read models
the clock depends on, the dunning policy from settings, and the track hook."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from domain.dunning import DunningPolicy, GradeSource, no_grades, track_selector
from domain.errors import NotFound
from projections.db import ViewDatabase
from services.bootstrap import App
from services.clock.policy import load_policy
from services.clock.tick import ACTOR, Clock, TickSweep, TimeRule

#: Another source of grades (customer_id -> grade or None) may be plugged in here; by
#: default the track comes from credit management's grade table (``dunning_track``).
_grade_source: list[GradeSource] = [no_grades]


def set_grade_source(source: GradeSource) -> None:
    _grade_source[0] = source


#: Time rules of other contexts, run by every tick (credit management adds CreditReviewDue).
_time_rules: list[TimeRule] = []


def register_time_rule(rule: TimeRule) -> None:
    if rule not in _time_rules:
        _time_rules.append(rule)


def credit_track_selector(app: App, policy: DunningPolicy) -> Callable[[str], str]:
    """customer_id -> track from credit management: the ``dunning_track`` of the customer's
    grade in the active credit policy (the unassessed grade's when never assessed), if
    this dunning policy has such a track; the dunning policy's own grade map otherwise."""
    credit = app.credit
    assert credit is not None

    def track(customer_id: str) -> str:
        try:
            grade = app.ledger.account(customer_id).state.credit.grade
        except NotFound:
            return policy.default_track
        wanted = credit.active_policy()[0].grade_policy(grade).dunning_track
        return wanted if wanted in policy.tracks else policy.track_for_grade(grade)

    return track


def credit_review_sweep(app: App) -> TickSweep:
    """CreditReviewDue by the tick: credit management's own review sweep (periodic by
    grade, brought forward by late payments, disputes, buckets crossed and broken promises)
    over the customers ever assessed, recorded on their accounts with the clock as actor;
    idempotent like ``arledger credit reviews``, which records the same reviews (whichever
    runs first) and also the first review of customers never assessed."""
    credit = app.credit
    assert credit is not None

    def sweep(db: ViewDatabase, day: date) -> dict[str, int]:
        recorded = credit.reviews(day, actor=ACTOR, db=db, assessed_only=True)
        return {"CreditReviewDue": len(recorded)} if recorded else {}

    return sweep


def _default_selector(app: App, policy: DunningPolicy) -> Callable[[str], str]:
    if _grade_source[0] is no_grades and app.credit is not None:
        return credit_track_selector(app, policy)
    return track_selector(policy, _grade_source[0])


def build_clock(app: App, db: ViewDatabase | None = None, *, policy: DunningPolicy | None = None,
                track_of: Callable[[str], str] | None = None) -> Clock:
    db = db or ViewDatabase(app.settings.resolved_database_url)
    policy = policy or load_policy(app.settings.dunning_policy)
    sweeps = (credit_review_sweep(app),) if app.credit is not None else ()
    clock = Clock(app.store, db, policy, track_of=track_of or _default_selector(app, policy),
                  now=app.ledger.clock, rules=tuple(_time_rules), sweeps=sweeps)
    clock.setup()
    return clock
