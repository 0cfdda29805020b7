"""The audit trail over HTTP, for auditors: the export (``arledger audit export``) with the
same filters and cut, as JSON lines (the file the CLI writes, checkable with
``arledger audit check-export``) or as paginated JSON; and the hash-chain verification
(``arledger audit verify``).

Like the CLI, both read the trail where the projection workers left it unless
``catch_up=true`` brings it to the head of the stream first."""

from __future__ import annotations

import io
import itertools
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.params import QueryParameter

from domain.errors import RuleViolation
from projections.audit_export import ExportError, ExportFilters, header, parse_time, position_known_at, rows, write_export
from projections.audit_store import StoredRows
from projections.audit_trail import AuditTrail
from projections.audit_verify import Anchor, Report, verify
from projections.db import ViewDatabase
from services.api.commands import QUERY_ERRORS
from services.api.readviews import views_of

TAGS = ["audit"]
JSONL = "application/x-ndjson"
Text = Annotated[str | None, QueryParameter(min_length=1, max_length=200)]
Time = Annotated[str | None, QueryParameter(min_length=1, max_length=40, description="ISO date or date-time (UTC when no offset)")]
Position = Annotated[int | None, QueryParameter(ge=0, le=2**53, description="Reproduce the export as computed at this stream position")]
Internal = Annotated[bool, QueryParameter(description="Also registry and idempotency records")]
CatchUp = Annotated[bool, QueryParameter(description="Bring the audit trail to the head of the stream first")]


class AuditPage(msgspec.Struct, kw_only=True):
    """One page of an export: its header (position, chain head, filters), rows, and the cursor."""

    header: dict[str, Any]
    items: list[dict[str, Any]]
    next_after: int | None = None


def _time(field: str, text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ExportError as exc:
        raise RuleViolation(field, "iso_datetime", str(exc)) from None


def _trail_position(db: ViewDatabase) -> int:
    return int((db.query("SELECT position FROM projection_positions WHERE name = ?", (AuditTrail.name,)) or [(0,)])[0][0])


def _position(db: ViewDatabase, stored: StoredRows, known_at: str | None, at_position: int | None) -> int:
    """The export's cut: ``at_position``, the position known at ``known_at``, or the trail's."""
    trail = _trail_position(db)
    if at_position is not None and known_at is not None:
        raise RuleViolation("known_at", "one_of", "give at_position or known_at, not both")
    if known_at is not None:
        return position_known_at(db, stored, _time("known_at", known_at) or "", trail)
    if at_position is not None and at_position > trail:
        raise RuleViolation("at_position", "within_trail", f"the audit trail is at position {trail}; it cannot state position {at_position} yet")
    return trail if at_position is None else at_position


def _export(request: Request, known_at: str | None, at_position: int | None, catch_up: bool, write: Any) -> Any:
    stored = StoredRows(request.app.state.ledger_app.store.recorder)
    with views_of(request).caught_up(AuditTrail(), catch_up=catch_up) as db:
        return write(db, stored, _position(db, stored, known_at, at_position))


def _filters(from_time: str | None, to_time: str | None, customer_id: str | None, invoice_number: str | None, actor: str | None,
             include_internal: bool) -> ExportFilters:
    return ExportFilters(from_time=_time("from_time", from_time), to_time=_time("to_time", to_time), customer_id=customer_id,
                         invoice_number=invoice_number, actor=actor, include_internal=include_internal)


@get("/events", operation_id="listAuditEvents", summary="The audit trail as paginated JSON (filters and cut of arledger audit export)",
     tags=TAGS, responses=QUERY_ERRORS, sync_to_thread=True)
def list_events(
    request: Request, from_time: Time = None, to_time: Time = None, customer_id: Text = None, invoice_number: Text = None,
    actor: Text = None, include_internal: Internal = False, at_position: Position = None, known_at: Time = None, catch_up: CatchUp = False,
    after: Annotated[int, QueryParameter(ge=0, le=2**53, description="next_after of the previous page")] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=1000, description="Page size")] = 100,
) -> AuditPage:
    wanted = _filters(from_time, to_time, customer_id, invoice_number, actor, include_internal)

    def page(db: ViewDatabase, stored: StoredRows, position: int) -> AuditPage:
        items = list(itertools.islice(rows(db, stored, wanted, position, page=limit + 1, after=after), limit + 1))
        more = len(items) > limit
        return AuditPage(header=header(db, wanted, position), items=items[:limit], next_after=items[limit - 1]["position"] if more else None)

    return _export(request, known_at, at_position, catch_up, page)


@get("/events.jsonl", operation_id="exportAuditEvents", summary="The export file of arledger audit export (JSON lines: header, rows, trailer)",
     tags=TAGS, responses=QUERY_ERRORS, sync_to_thread=True, media_type=JSONL)
def export_events(
    request: Request, from_time: Time = None, to_time: Time = None, customer_id: Text = None, invoice_number: Text = None,
    actor: Text = None, include_internal: Internal = False, at_position: Position = None, known_at: Time = None, catch_up: CatchUp = False,
) -> bytes:
    wanted = _filters(from_time, to_time, customer_id, invoice_number, actor, include_internal)

    def export(db: ViewDatabase, stored: StoredRows, position: int) -> bytes:
        out = io.BytesIO()
        write_export(db, stored, out, fmt="jsonl", filters=wanted, trail_position=position)
        return out.getvalue()

    return _export(request, known_at, at_position, catch_up, export)


@get("/verification", operation_id="verifyAuditTrail", summary="Check every stored event against the hash chain (as arledger audit verify)",
     tags=TAGS, responses=QUERY_ERRORS, sync_to_thread=True)
def verify_trail(
    request: Request, catch_up: CatchUp = False,
    fast: Annotated[bool, QueryParameter(description="Hashes, links and versions only")] = False,
    expect_head: Annotated[str | None, QueryParameter(min_length=3, max_length=200, description="An anchor HASH@POSITION recorded earlier")] = None,
) -> Report:
    try:
        anchor = Anchor.parse(expect_head) if expect_head else None
    except ValueError as exc:
        raise RuleViolation("expect_head", "anchor", str(exc)) from None
    stored = StoredRows(request.app.state.ledger_app.store.recorder)
    with views_of(request).caught_up(AuditTrail(), catch_up=catch_up) as db:
        return verify(stored, db, _trail_position(db), anchor, deep=not fast)


router = Router("/v1/audit", route_handlers=[list_events, export_events, verify_trail])
