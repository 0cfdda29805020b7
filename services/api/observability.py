"""Operations: correlation ids, structured access logs and Prometheus metrics.

The middleware takes ``X-Correlation-ID`` from the request (or makes one), returns it
on the response, binds it to every log line written while handling the request, and
passes it to the ledger as the events' ``correlation_id`` (a UUID: a caller's id that is
not a UUID is mapped to a stable uuid5 of it).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = structlog.get_logger("arledger.api")
_CID_NAMESPACE = uuid.UUID("0b7f6a1e-3c1d-4c55-9a3e-2d8c4f1e9b70")
_MAX_CID = 128


class Metrics:
    """One registry per app, so several apps (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("arledger_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "arledger_http_request_duration_seconds", "HTTP request latency", ["method", "route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.commands = Counter("arledger_commands_recorded", "Ledger commands recorded (replays excluded)", ["command"], registry=self.registry)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a request and observe its latency. The labelled children are kept per
        (method, route, status): ``labels()`` validates and locks on every call."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
        children[0].inc()
        children[1].observe(seconds)


class StoreCollector:
    """Collected at scrape time: the stream head, each projection's and each relay's lag."""

    def __init__(self, status: Any, relays: Any = None, commits: Any = None) -> None:
        self.status = status  # () -> (head, [projection status dicts])
        self.relays = relays or list  # () -> [relay status dicts]
        self.commits = commits  # () -> the ledger's CommitStats

    def collect(self) -> Any:
        head, projections = self.status()
        yield GaugeMetricFamily("arledger_store_head_position", "Position of the last recorded event", value=head)
        lag = GaugeMetricFamily("arledger_projection_lag_events", "Events recorded but not yet in the view", labels=["projection"])
        for p in projections:
            lag.add_metric([p["name"]], p["lag"])
        yield lag
        relay = GaugeMetricFamily("arledger_relay_lag_events", "Events recorded but not yet published by the relay", labels=["relay"])
        for r in self.relays():
            relay.add_metric([r["name"]], r["lag"])
        yield relay
        if self.commits is not None:
            stats = self.commits()
            yield CounterMetricFamily("arledger_store_commits", "Durable transactions written by this process's ledger (group commit)", value=stats.commits)
            yield CounterMetricFamily("arledger_store_committed_commands", "Commands saved in those transactions", value=stats.commands)
            yield CounterMetricFamily("arledger_store_commit_seconds", "Time spent writing and flushing those transactions", value=stats.seconds)


def correlation(raw: bytes | None) -> tuple[str, uuid.UUID]:
    text = raw.decode("latin-1").strip()[:_MAX_CID] if raw else ""
    if not text or not text.isprintable():
        new = uuid.uuid4()
        return str(new), new
    try:
        return text, uuid.UUID(text)
    except ValueError:
        return text, uuid.uuid5(_CID_NAMESPACE, text)


def observe(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: correlation id, access log line, request metrics."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        cid, cid_uuid = correlation(dict(scope["headers"]).get(b"x-correlation-id"))
        state = scope.setdefault("state", {})  # type: ignore[typeddict-item]
        state["correlation_id"], state["correlation_uuid"] = cid, cid_uuid
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-correlation-id", cid.encode("latin-1"))]
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=cid):
            try:
                await app(scope, receive, send_with_id)
            finally:
                _record(scope, status, time.perf_counter() - started)

    return middleware


def _record(scope: Scope, status: int, seconds: float) -> None:
    route = scope.get("path_template") or "unmatched"
    method = scope["method"]
    metrics: Metrics = scope["app"].state.metrics
    metrics.request_done(method, route, status, seconds)
    principal = scope.get("state", {}).get("principal")
    log.info(
        "http_request", method=method, path=scope["path"], route=route, status=status, duration_ms=round(seconds * 1000, 2),
        actor=principal.name if principal else None,
    )
