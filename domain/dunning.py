"""Dunning policies: ordered steps per track, and which track a customer follows.

A policy is data (a TOML or JSON file, ``services/config/dunning.toml`` by default,
``ARLEDGER_DUNNING_POLICY`` to choose another); this module decodes and checks it and
answers the questions the clock asks. Decoding is strict: an unknown key, a wrong type,
an unknown channel, steps out of order or a grade pointing at a missing track is refused
with a :class:`RuleViolation` whose ``field`` is the key's path, e.g.
``tracks.strict.steps[2].channel``.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from domain.collections import AgingRule
from domain.collections_events import Channel
from domain.errors import RuleViolation

Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Step(_Strict, frozen=True, kw_only=True):
    """One step: on due date + ``offset_days`` (negative = before due), via ``channel``."""

    name: Name
    offset_days: Annotated[int, msgspec.Meta(ge=-365, le=3650)]
    channel: Channel
    template: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    action: str = ""  # e.g. "credit_hold", "legal_escalation": what the downstream owner does beyond the contact


class Track(_Strict, frozen=True, kw_only=True):
    description: str = ""
    steps: tuple[Step, ...]


class DunningPolicy(_Strict, frozen=True, kw_only=True):
    version: Annotated[str, msgspec.Meta(min_length=1)]
    default_track: Name
    tracks: dict[Name, Track]
    grades: dict[str, Name] = {}
    promise_tolerance_days: Annotated[int, msgspec.Meta(ge=0, le=60)] = 3
    aging: AgingRule = AgingRule()

    def track(self, name: str) -> Track:
        try:
            return self.tracks[name]
        except KeyError:
            raise RuleViolation("track", "known_track", f"no dunning track {name!r}; known: {', '.join(sorted(self.tracks))}") from None

    def track_for_grade(self, grade: str | None) -> str:
        """The track a credit grade follows; the default track without a grade."""
        if grade is None:
            return self.default_track
        return self.grades.get(grade, self.default_track)


def _check(policy: DunningPolicy) -> DunningPolicy:
    if policy.default_track not in policy.tracks:
        raise RuleViolation("default_track", "known_track", f"{policy.default_track!r} is not one of the tracks {sorted(policy.tracks)}")
    for grade, track in policy.grades.items():
        if track not in policy.tracks:
            raise RuleViolation(f"grades.{grade}", "known_track", f"{track!r} is not one of the tracks {sorted(policy.tracks)}")
    for name, track in policy.tracks.items():
        if not track.steps:
            raise RuleViolation(f"tracks.{name}.steps", "not_empty", "a track needs at least one step")
        seen: set[str] = set()
        for i, step in enumerate(track.steps):
            if step.name in seen:
                raise RuleViolation(f"tracks.{name}.steps[{i}].name", "unique", f"step name {step.name!r} repeats")
            seen.add(step.name)
            if i and step.offset_days < track.steps[i - 1].offset_days:
                raise RuleViolation(f"tracks.{name}.steps[{i}].offset_days", "ascending", "steps must be ordered by offset_days")
    return policy


_PATH = re.compile(r"at `\$(?P<path>[^`]*)`")
_NAMED = re.compile(r"(missing required|unknown) field `(?P<name>[^`]+)`")


def _convert(raw: Any, cls: type, prefix: str) -> Any:
    """msgspec.convert, with errors turned into a RuleViolation naming the key's path."""
    try:
        return msgspec.convert(raw, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH.search(text)
        path = prefix + (match.group("path") if match else "")
        message = _PATH.sub("", text).strip(" -")
        named = _NAMED.search(message)
        if named:
            path = f"{path}.{named.group('name')}"
        raise RuleViolation(path.lstrip(".") or "policy", "dunning_policy", message) from None


def policy_from_dict(raw: Any) -> DunningPolicy:
    if not isinstance(raw, dict):
        raise RuleViolation("policy", "dunning_policy", "a policy is a table of keys")
    tracks = raw.get("tracks")
    if isinstance(tracks, dict):  # convert track by track so an error names the track
        raw = {**raw, "tracks": {name: msgspec.to_builtins(_convert(t, Track, f".tracks.{name}")) for name, t in tracks.items()}}
    return _check(_convert(raw, DunningPolicy, ""))


def parse_policy(text: str, fmt: str = "toml") -> DunningPolicy:
    """Decode a policy document (``fmt`` "toml" or "json")."""
    try:
        raw = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise RuleViolation("policy", f"valid_{fmt}", str(exc)) from None
    return policy_from_dict(raw)


#: A source of credit grades (credit management plugs one in); ``None`` = not graded.
GradeSource = Callable[[str], str | None]


def no_grades(customer_id: str) -> str | None:
    return None


def track_selector(policy: DunningPolicy, grades: GradeSource = no_grades) -> Callable[[str], str]:
    """customer_id -> track name: the track of the customer's grade, or the default."""
    return lambda customer_id: policy.track_for_grade(grades(customer_id))
