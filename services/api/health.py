"""Liveness, readiness (store reachable, projection lag) and Prometheus metrics. No key needed."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

TAGS = ["operations"]


class Live(msgspec.Struct):
    status: str


class ProjectionLag(msgspec.Struct, kw_only=True):
    name: str
    position: int
    head: int
    lag: int


class Ready(msgspec.Struct, kw_only=True):
    status: str  # ready | unavailable
    store: str
    head: int = 0
    projections: list[ProjectionLag] = []
    detail: str = ""


@get("/health/live", operation_id="live", summary="The process is up", tags=TAGS)
async def live() -> Live:
    return Live(status="live")


@get("/health/ready", operation_id="ready", summary="The store answers; projection lag", tags=TAGS, sync_to_thread=True,
     responses={503: ResponseSpec(data_container=Ready, description="The store cannot be reached")})
def ready(request: Request) -> Response[Ready]:
    try:
        head, projections = request.app.state.store_status()
    except Exception as exc:  # noqa: BLE001 - any store failure means "not ready"
        return Response(Ready(status="unavailable", store="unreachable", detail=type(exc).__name__), status_code=503)
    lags = [ProjectionLag(name=p["name"], position=p["position"], head=p["head"], lag=p["lag"]) for p in projections]
    return Response(Ready(status="ready", store="ok", head=head, projections=lags))


@get("/metrics", operation_id="metrics", summary="Prometheus metrics", tags=TAGS, sync_to_thread=True, media_type=CONTENT_TYPE_LATEST)
def metrics(request: Request) -> Response[bytes]:
    data: Any = generate_latest(request.app.state.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)


router = Router("/", route_handlers=[live, ready, metrics])
