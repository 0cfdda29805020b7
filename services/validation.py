"""Decode untrusted input into command Structs, with errors that name field and rule.

msgspec reports ``Expected `int` >= 1 - at `$.amount_minor```; people and API clients
need ``{"field": "amount_minor", "rule": "range", "message": ...}``. The CLI, the
HTTP API and the CSV import all go through here so the wording is the same everywhere.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from domain.errors import RuleViolation

T = TypeVar("T")

_RULES: tuple[tuple[str, str], ...] = (
    (r"missing required field", "required"),
    (r"unknown field", "unknown_field"),
    (r"[<>]=?\s*-?\d", "range"),
    (r"length", "length"),
    (r"pattern", "pattern"),
    (r"invalid", "format"),
    (r"expected `", "type"),
)


def rule_for(message: str) -> str:
    """The rule a msgspec validation message describes (``range``, ``type``, ...)."""
    return next((name for pattern, name in _RULES if re.search(pattern, message, re.IGNORECASE)), "schema")


def validation_to_rule(exc: msgspec.ValidationError | msgspec.DecodeError) -> RuleViolation:
    text = str(exc)
    where = re.search(r"at `\$\.?([^`]*)`", text)
    field = where.group(1) if where else ""
    message = re.sub(r" - at `[^`]*`", "", text)
    rule = rule_for(message)
    if rule in ("required", "unknown_field"):
        named = re.search(r"`([^`]+)`", message)
        if named:
            field = f"{field}.{named.group(1)}" if field else named.group(1)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        rule = "json"
    return RuleViolation(field or "body", rule, message)


def convert(raw: Any, cls: type[T], *, strict: bool = False) -> T:
    """Validate already-parsed data (CLI flags, CSV cells: strings allowed when not strict)."""
    try:
        return msgspec.convert(raw, cls, strict=strict)
    except msgspec.ValidationError as exc:
        raise validation_to_rule(exc) from None


def decode_json(body: bytes, cls: type[T]) -> T:
    """Validate a JSON body strictly (the HTTP API)."""
    try:
        return msgspec.json.decode(body, type=cls)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise validation_to_rule(exc) from None
