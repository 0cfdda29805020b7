"""Customer risk profiles over HTTP: the same JSON as ``arledger risk --json``.

The ``ar_items`` view is caught up first (read your writes), then the profile is computed
at a cut: ``as_of`` (business date), optionally ``known_at`` (recorded by then) or
``at_position`` (reproduces an earlier answer byte for byte)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request, Response, Router, get
from litestar.params import QueryParameter

from domain.errors import NotFound, RuleViolation
from projections.ar_items import ArItemsProjection
from projections.risk import all_profiles, customer_profile, resolve_cut
from services.api.commands import QUERY_ERRORS, path_id
from services.api.readviews import AtPosition, BusinessDate, KnownAt, day_or_today, utc, views_of
from services.risk_report import builtins, chosen, cut_header, encode

TAGS = ["risk"]
CustomerId = path_id("Customer code")
Sort = Annotated[Literal["overdue", "exposure", "days_late"] | None, QueryParameter(description="Largest first (default: customer order)")]
Limit = Annotated[int, QueryParameter(ge=1, le=10_000, description="At most this many customers")]
Offset = Annotated[int, QueryParameter(ge=0, le=10_000_000, description="Skip this many (next_offset of the previous page)")]
JSON = "application/json"


@get("/customers/{customer_id:str}/risk", operation_id="getCustomerRisk", summary="A customer's risk profile at a cut (as arledger risk --json)",
     tags=TAGS, responses=QUERY_ERRORS, sync_to_thread=True)
def get_customer_risk(request: Request, customer_id: CustomerId, as_of: BusinessDate = None, known_at: KnownAt = None,
                      at_position: AtPosition = None) -> Response[dict[str, Any]]:
    with views_of(request).caught_up(ArItemsProjection()) as db:
        cut = resolve_cut(db, day_or_today(as_of), known_at=utc(known_at), at_position=at_position, customer_id=customer_id)
        try:
            profile = customer_profile(db, customer_id, cut)
        except RuleViolation as exc:
            if exc.rule == "known_customer":
                raise NotFound("customer_id", customer_id, "customer") from None
            raise
    return Response(encode({**cut_header(cut), **builtins(profile)}), media_type=JSON)


@get("/risk", operation_id="listCustomerRisk", summary="Every customer's risk profile (no trend), largest first by sort, paginated",
     tags=TAGS, responses=QUERY_ERRORS, sync_to_thread=True)
def list_risk(request: Request, as_of: BusinessDate = None, sort: Sort = None, limit: Limit = 100, offset: Offset = 0) -> Response[dict[str, Any]]:
    with views_of(request).caught_up(ArItemsProjection()) as db:
        cut = resolve_cut(db, day_or_today(as_of))
        page = list(chosen(all_profiles(db, cut), sort, offset + limit + 1))[offset:]
    more = len(page) > limit
    body = {**cut_header(cut), "sort": sort, "limit": limit, "customers": [builtins(p) for p in page[:limit]],
            "count": min(len(page), limit), "next_offset": offset + limit if more else None}
    return Response(encode(body), media_type=JSON)


router = Router("/v1", route_handlers=[get_customer_risk, list_risk])
