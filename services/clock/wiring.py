"""Build a :class:`Clock` for an app: the view database, the runner of the read models
the clock depends on, the dunning policy from settings, and the track hook."""

from __future__ import annotations

from collections.abc import Callable

from domain.dunning import DunningPolicy, GradeSource, no_grades, track_selector
from projections.db import ViewDatabase
from services.bootstrap import App
from services.clock.policy import load_policy
from services.clock.tick import Clock, TimeRule

#: Credit management plugs in its grades here (customer_id -> grade or None); until then
#: every customer follows the policy's default track.
_grade_source: list[GradeSource] = [no_grades]


def set_grade_source(source: GradeSource) -> None:
    _grade_source[0] = source


#: Time rules of other contexts, run by every tick (credit management adds CreditReviewDue).
_time_rules: list[TimeRule] = []


def register_time_rule(rule: TimeRule) -> None:
    if rule not in _time_rules:
        _time_rules.append(rule)


def build_clock(app: App, db: ViewDatabase | None = None, *, policy: DunningPolicy | None = None,
                track_of: Callable[[str], str] | None = None) -> Clock:
    db = db or ViewDatabase(app.settings.resolved_database_url)
    policy = policy or load_policy(app.settings.dunning_policy)
    clock = Clock(app.store, db, policy, track_of=track_of or track_selector(policy, _grade_source[0]),
                  now=app.ledger.clock, rules=tuple(_time_rules))
    clock.setup()
    return clock
