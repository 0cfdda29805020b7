"""Pure collections rules: bucket edges, the calendar schedule, walking thresholds,
judging promises, the fast uuid5 and decoding dunning policies."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.collections import (
    PAUSE, SKIP, AgingRule, bucket_for, bucket_labels, calendar_schedule, judge_promise, never_held, walk,
)
from domain.dunning import parse_policy, track_selector
from domain.errors import RuleViolation
from services.clock.ids import uuid5
from services.clock.policy import default_policy_text, load_policy


def test_default_buckets_follow_the_design():
    assert bucket_labels((1, 31, 61, 91)) == ("1-30", "31-60", "61-90", "91+")
    assert [bucket_for(d) for d in (0, 1, 30, 31, 60, 61, 90, 91, 400)] == [
        "current", "1-30", "1-30", "31-60", "31-60", "61-90", "61-90", "91+", "91+"]


def test_the_calendar_schedule_puts_overdue_before_the_first_bucket():
    schedule = calendar_schedule(AgingRule(edges=(1, 15)))
    assert [(t.offset_days, t.key, t.previous_bucket) for t in schedule] == [
        (1, "overdue", ""), (1, "bucket:1-14", "current"), (15, "bucket:15+", "1-14")]


@pytest.mark.parametrize("edges", [(), (0, 30), (30, 30), (31, 1)])
def test_bad_bucket_edges_are_refused(edges):
    with pytest.raises(RuleViolation) as err:
        AgingRule(edges=edges)
    assert err.value.field == "aging.edges"


def test_walk_fires_in_order_skips_held_and_pauses():
    always_open = lambda on: 100  # noqa: E731
    assert walk([10, 20, 30], 0, 25, always_open, never_held, None).fired == [(0, 10, 100), (1, 20, 100)]
    skipped = walk([10, 20, 30], 0, 35, always_open, lambda on: SKIP if on == 20 else None, None)
    assert [f[0] for f in skipped.fired] == [0, 2] and skipped.index == 3 and not skipped.parked
    paused = walk([10, 20, 30], 0, 35, always_open, lambda on: PAUSE if on >= 15 else None, None)
    assert [f[0] for f in paused.fired] == [0] and paused.index == 1 and paused.parked


def test_walk_parks_once_settled_for_good_and_skips_while_settled_only_for_a_while():
    paid_on_15 = lambda on: 100 if on < 15 else 0  # noqa: E731
    parked = walk([10, 20, 30], 0, 35, paid_on_15, never_held, 15)
    assert [f[0] for f in parked.fired] == [0] and parked.index == 1 and parked.parked
    reopened_on_25 = lambda on: 0 if 15 <= on < 25 else 100  # noqa: E731
    resumed = walk([10, 20, 30], 0, 35, reopened_on_25, never_held, None)
    assert [f[0] for f in resumed.fired] == [0, 2]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 100), min_size=1, max_size=8).map(sorted), st.integers(0, 120), st.integers(0, 120))
def test_two_ticks_fire_what_one_late_tick_fires(days, first, second):
    """Catch-up: ticking day a then day b records the same as ticking only max(a, b)."""
    open_at = lambda on: 1  # noqa: E731
    a = walk(days, 0, first, open_at, never_held, None)
    b = walk(days, a.index, max(first, second), open_at, never_held, None)
    late = walk(days, 0, max(first, second), open_at, never_held, None)
    assert a.fired + b.fired == late.fired


def test_promises_are_kept_on_the_day_paid_or_broken_after_the_tolerance():
    made, promised = date(2026, 3, 1), date(2026, 3, 10)
    kept = judge_promise(made, promised, 2, 500, [(date(2026, 3, 5), 200), (date(2026, 3, 12), 300)], date(2026, 3, 20))
    assert kept is not None and kept.kept and kept.on == date(2026, 3, 12) and kept.paid_minor == 500
    assert judge_promise(made, promised, 2, 500, [], date(2026, 3, 12)) is None
    broken = judge_promise(made, promised, 2, 500, [(date(2026, 2, 27), 500), (date(2026, 3, 13), 500)], date(2026, 3, 13))
    assert broken is not None and not broken.kept and broken.on == date(2026, 3, 13) and broken.paid_minor == 0


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_fast_uuid5_equals_the_standard_library(name):
    namespace = uuid.UUID("6f1c3a52-4d1e-4bb0-9a57-2f0b1f6d8e11")
    fast = uuid5(namespace, name)
    assert fast == uuid.uuid5(namespace, name) and str(fast) == str(uuid.uuid5(namespace, name)) and hash(fast) == hash(uuid.uuid5(namespace, name))


def test_the_packaged_policy_has_gentle_and_strict_tracks_by_grade():
    policy = parse_policy(default_policy_text())
    assert policy.tracks["gentle"].steps[0].offset_days < 0
    assert {s.channel for s in policy.tracks["strict"].steps} >= {"phone_call", "visit", "lawyer_letter", "agency", "litigation"}
    select = track_selector(policy, {"K1": "A", "K2": "E"}.get)
    assert (select("K1"), select("K2"), select("unknown")) == ("gentle", "strict", policy.default_track)


BASE = 'version = "1"\ndefault_track = "t"\n'


@pytest.mark.parametrize(("text", "field"), [
    (BASE + '[tracks.t]\nsteps = [{name = "a", offset_days = 1, channel = "fax", template = "x"}]', "tracks.t.steps[0].channel"),
    (BASE + '[tracks.t]\nsteps = [{name = "a", offset_days = 1, channel = "sms", template = "x", colour = 1}]', "tracks.t.steps[0].colour"),
    (BASE + '[tracks.t]\nsteps = [{name = "a", offset_days = 9, channel = "sms", template = "x"},'
            ' {name = "b", offset_days = 1, channel = "sms", template = "x"}]', "tracks.t.steps[1].offset_days"),
    (BASE + '[grades]\nA = "nope"\n[tracks.t]\nsteps = [{name = "a", offset_days = 1, channel = "sms", template = "x"}]', "grades.A"),
    ('default_track = "t"\n[tracks.t]\nsteps = [{name = "a", offset_days = 1, channel = "sms", template = "x"}]', "version"),
    (BASE + '[tracks.t]\nsteps = []', "tracks.t.steps"),
    (BASE + "[tracks.t\n", "policy"),
])
def test_bad_policies_name_the_key(text, field):
    with pytest.raises(RuleViolation) as err:
        parse_policy(text)
    assert err.value.field == field


def test_a_policy_file_that_is_missing_or_json_is_read(tmp_path):
    with pytest.raises(RuleViolation) as err:
        load_policy(str(tmp_path / "none.toml"))
    assert err.value.field == "ARLEDGER_DUNNING_POLICY"
    path = tmp_path / "p.json"
    path.write_text('{"version": "j", "default_track": "t", "tracks": {"t": {"steps": [{"name": "a", "offset_days": 1, "channel": "sms", "template": "x"}]}}}')
    assert load_policy(str(path)).version == "j"


def test_the_daemon_sleeps_until_the_next_daily_tick():
    from datetime import UTC, datetime

    from services.cli.clock import seconds_to_next_day

    assert seconds_to_next_day(datetime(2026, 3, 1, 23, 0, tzinfo=UTC)) == 3600
    assert seconds_to_next_day(datetime(2026, 3, 1, 0, 0, tzinfo=UTC)) == 86400
    assert seconds_to_next_day(datetime(2026, 3, 1, 1, 30, tzinfo=UTC), at_hour=2) == 1800


def test_fact_ids_are_the_aggregate_id_and_the_ledgers_event_id():
    from domain.registry import NAMESPACE, event_id
    from services.clock.tick import fact_id

    oid, eid = fact_id("overdue:INV-1:1")
    assert oid == uuid.uuid5(NAMESPACE, "overdue:INV-1:1") and eid == event_id(oid, 1)


def test_collections_events_are_public_and_carry_the_customer_key():
    from domain.catalog import public_event_types
    from domain.collections_events import TimeCausedEvent
    from domain.events import AccountEvent

    named = {cls.__name__: cls for cls in public_event_types()}
    expected = {"InvoiceFellOverdue", "AgingBucketEntered", "DunningStepDue", "PromiseToPayKept", "PromiseToPayBroken",
                "CollectionContactLogged", "PromiseToPayMade", "DunningExemptionGranted", "DunningExemptionRevoked",
                "CollectorAssigned", "EscalatedToLegal", "AssignedToAgency", "CollectionCaseClosed", "CollectionCostIncurred"}
    assert expected <= set(named) and "TimeCausedEvent" not in named
    assert all(issubclass(named[n], AccountEvent) for n in expected)
    assert {n for n in expected if issubclass(named[n], TimeCausedEvent)} == {
        "InvoiceFellOverdue", "AgingBucketEntered", "DunningStepDue", "PromiseToPayKept", "PromiseToPayBroken"}
