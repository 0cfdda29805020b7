"""Errors as RFC 9457 problem details (``application/problem+json``).

Every refusal names the ``field`` and the ``rule`` it broke (the same pair the CLI
prints), so a client can point a person at what to fix. Status codes:

* 400 malformed JSON, 401 no or bad key, 403 role not allowed, 404 unknown id or route,
  405 method, 409 already exists or concurrent change (retry), 413 body too large,
  422 a field or business rule refused (idempotency key reused with another body too),
  500 a bug: logged with the correlation id, no detail leaked.

Nothing is recorded in any of these cases: commands are validated before the ledger
saves, and the ledger saves atomically.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from domain.errors import AlreadyExists, NotFound, RuleViolation
from services.ledger import ConcurrencyConflict, IdempotencyKeyReused
from services.validation import rule_for

log = structlog.get_logger("arledger.api")

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:arledger:problem:"
RETRY_AFTER_SECONDS = "1"
#: Litestar names a header parameter by its Python name; clients know the header.
HEADER_FIELDS = {"idempotency_key": "Idempotency-Key"}


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details, extended with the field and rule that were broken."""

    type: str
    title: str
    status: int
    detail: str = ""
    field: str = ""
    rule: str = ""
    correlation_id: str = ""


def problem(status: int, rule: str, detail: str, *, field: str = "", request: Request | None = None, headers: dict[str, str] | None = None) -> Response[Problem]:
    body = Problem(
        type=TYPE_BASE + (rule or "error"), title=HTTPStatus(status).phrase, status=status, detail=detail, field=field, rule=rule,
        correlation_id=str(request.scope.get("state", {}).get("correlation_id", "")) if request is not None else "",
    )
    return Response(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _status_of(exc: RuleViolation) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, AlreadyExists):
        return 409
    return 422  # IdempotencyKeyReused included: the request cannot be processed as sent


def on_rule_violation(request: Request, exc: RuleViolation) -> Response[Problem]:
    status = 400 if exc.rule == "json" else _status_of(exc)
    return problem(status, exc.rule, exc.message, field=exc.field, request=request)


def on_conflict(request: Request, exc: ConcurrencyConflict) -> Response[Problem]:
    return problem(409, "concurrent_change", f"{exc}; it is safe to retry with the same Idempotency-Key", request=request,
                   headers={"Retry-After": RETRY_AFTER_SECONDS})


def on_validation(request: Request, exc: ValidationException) -> Response[Problem]:
    """Litestar's own parameter checks (query, path, headers, and body types)."""
    errors: list[dict[str, Any]] = exc.extra if isinstance(exc.extra, list) else []
    first = errors[0] if errors else {}
    message = str(first.get("message") or exc.detail)
    field = str(first.get("key") or "")
    field = HEADER_FIELDS.get(field, field)
    return problem(422 if errors else 400, rule_for(message) if errors else "request", message, field=field, request=request)


def on_http(request: Request, exc: HTTPException) -> Response[Problem]:
    rule = re.sub(r"[^a-z0-9]+", "_", HTTPStatus(exc.status_code).phrase.lower()).strip("_")
    headers = dict(exc.headers or {})
    return problem(exc.status_code, rule, str(exc.detail), request=request, headers=headers or None)


def on_unexpected(request: Request, exc: Exception) -> Response[Problem]:
    log.exception("unhandled_error", path=request.url.path, error=type(exc).__name__)
    return problem(500, "internal_error", "an unexpected error occurred; quote the correlation id when reporting it", request=request)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    IdempotencyKeyReused: on_rule_violation,
    RuleViolation: on_rule_violation,
    ConcurrencyConflict: on_conflict,
    ValidationException: on_validation,
    HTTPException: on_http,
    Exception: on_unexpected,
}
