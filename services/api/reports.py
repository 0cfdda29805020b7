"""Aging and KPIs over HTTP: exactly the JSON of ``arledger aging --json`` and
``arledger kpi --json`` (one object, or an array of one object per currency when the
ledger holds several), computed by the same report functions after the ``ar_items``
view is brought to the head of the stream."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from litestar import Request, Response, Router, get
from litestar.params import QueryParameter

from domain.aging import DEFAULT_EDGES, parse_edges
from domain.errors import RuleViolation
from projections.aging import aging_report
from projections.ar_items import ArItemsProjection
from projections.kpi import kpi_report, period_range
from services.api.commands import QUERY_ERRORS
from services.api.readviews import AtPosition, BusinessDate, KnownAt, day_or_today, utc, views_of
from services.risk_report import ENCODER

TAGS = ["reports"]
JSON = "application/json"


def _answer(reports: list[dict[str, Any]]) -> Response[Any]:
    """As the CLI prints it: one object, or an array per currency."""
    return Response(ENCODER.encode(reports[0] if len(reports) == 1 else reports), media_type=JSON)


@get("/aging", operation_id="getAging", summary="Open receivables by aging bucket (as arledger aging --json)", tags=TAGS,
     responses=QUERY_ERRORS, sync_to_thread=True)
def get_aging(
    request: Request, as_of: BusinessDate = None, known_at: KnownAt = None, at_position: AtPosition = None,
    by: Annotated[Literal["customer", "region", "industry", "salesperson"] | None, QueryParameter(description="Add totals by")] = None,
    buckets: Annotated[str, QueryParameter(min_length=1, max_length=100, description="Bucket edges in days past due")] = ",".join(map(str, DEFAULT_EDGES)),
) -> Response[Any]:
    edges = parse_edges(buckets)
    with views_of(request).caught_up(ArItemsProjection()) as db:
        reports = aging_report(db, day_or_today(as_of), at_position=at_position, known_at=utc(known_at), by=by, buckets=edges)
    return _answer(reports)


@get("/kpis", operation_id="getKpis", summary="DSO, count-back DSO, best possible DSO, ADD, CEI, turnover (as arledger kpi --json)",
     tags=TAGS, responses=QUERY_ERRORS, sync_to_thread=True)
def get_kpis(
    request: Request, from_: Annotated[date | None, QueryParameter(name="from", description="First day of the period YYYY-MM-DD")] = None,
    to: Annotated[date | None, QueryParameter(description="Last day of the period YYYY-MM-DD")] = None,
    period: Annotated[Literal["month", "quarter", "year"] | None, QueryParameter(description="Instead of from/to")] = None,
    year: Annotated[int | None, QueryParameter(ge=1900, le=9999, description="Year of period")] = None,
    number: Annotated[int | None, QueryParameter(ge=1, le=12, description="Month or quarter of period")] = None,
    known_at: KnownAt = None, at_position: AtPosition = None,
) -> Response[Any]:
    if period:
        if year is None:
            raise RuleViolation("year", "required", "period needs year")
        start, end = period_range(period, year, number)
    elif from_ is None or to is None:
        raise RuleViolation("from", "required", "give from and to, or period with year")
    else:
        start, end = from_, to
    with views_of(request).caught_up(ArItemsProjection()) as db:
        reports = kpi_report(db, start, end, at_position=at_position, known_at=utc(known_at))
    return _answer(reports)


router = Router("/v1", route_handlers=[get_aging, get_kpis])
