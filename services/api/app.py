"""The Litestar application, wired from :func:`services.bootstrap.bootstrap`.

Each area is one module exposing ``router`` (or more routers); :data:`ROUTERS` lists
them like the CLI's ``MODULES``, so a new query (aging, KPIs, audit...) is a new module
plus one line here and a row per endpoint in :mod:`services.api.permissions`. Every
router under ``/v1`` is guarded by the API key and the role table.
"""

from __future__ import annotations

import gc
import importlib
import re
import threading
from typing import Any

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from projections.db import ViewDatabase
from projections.registry import all_projections
from projections.runner import ProjectionRunner
from services.api.auth import authorize
from services.api.commands import strict_body
from services.api.observability import Metrics, StoreCollector, observe
from services.api.problems import EXCEPTION_HANDLERS
from services.api.readviews import Views
from services.apikeys import KeyStore
from services.bootstrap import App, bootstrap
from services.credit import CreditService
from services.settings import Settings

#: "module:attribute" of every router, in the order they appear in the OpenAPI document.
ROUTERS: tuple[str, ...] = (
    "services.api.customers:router",
    "services.api.invoices:router",
    "services.api.payments:router",
    "services.api.payments:credit_notes",
    "services.api.write_offs:router",
    "services.api.credit:customers",
    "services.api.credit:orders",
    "services.api.collections:customers",
    "services.api.collections:router",
    "services.api.risk:router",
    "services.api.reports:router",
    "services.api.audit:router",
    "services.api.clock:router",
    "services.api.keys:router",
)
PUBLIC_ROUTERS: tuple[str, ...] = ("services.api.health:router",)

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
MAX_BODY_BYTES = 64 * 1024


def _load(path: str) -> Router:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="arledger", version="1", description="Event-sourced accounts receivable. Errors are RFC 9457 problem+json.",
        path="/", render_plugins=[JsonRenderPlugin(path=OPENAPI_PATH), ScalarRenderPlugin(path=DOCS_PATH), SwaggerRenderPlugin(path=f"{DOCS_PATH}/swagger")],
        components=Components(security_schemes={
            "bearer": SecurityScheme(type="http", scheme="bearer", description="Authorization: Bearer KEY"),
            "apiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
        }),
    )


def _store_status(ledger_app: App, db: ViewDatabase) -> Any:
    """The readiness probe: the stream head (the store answers) and each view's lag.
    With ``ARLEDGER_CREATE_TABLES`` (the default) the view tables are created here, as
    ``arledger init`` does, so a fresh store is ready without a separate step."""
    runner = ProjectionRunner(ledger_app.store, db, all_projections())
    if runner.projections and ledger_app.settings.create_tables:
        runner.setup()
    lock = threading.Lock()

    def status() -> tuple[int, list[dict[str, Any]]]:
        with lock:
            head = ledger_app.store.max_position()
            return head, runner.status() if runner.projections else []

    return status


def _relay_status(ledger_app: App, db: ViewDatabase) -> Any:
    """Each relay's position and lag behind the stream head (events recorded but not yet
    published to Kafka); empty when no relay ever ran on this store (no ``relay_positions``)."""
    lock = threading.Lock()

    def status() -> list[dict[str, Any]]:
        with lock:
            try:
                rows = db.query("SELECT name, position FROM relay_positions ORDER BY name")
            except Exception:  # noqa: BLE001 - no relay table: no relay to report
                return []
            head = ledger_app.store.max_position()
            return [{"name": name, "position": int(pos), "head": head, "lag": max(head - int(pos), 0)} for name, pos in rows]

    return status


class Resources:
    """What the app holds open: the ledger, the key store, a view connection for status.

    Opened on startup and closed on shutdown, so an app can go through several ASGI
    lifespans (test clients do). A ledger passed in by the caller is theirs to close."""

    def __init__(self, settings: Settings | None, ledger_app: App | None) -> None:
        self.settings = settings
        self.given = ledger_app
        self.metrics = Metrics()
        self.metrics.registry.register(StoreCollector(
            lambda: self.state.store_status(), lambda: self.state.relay_status(), lambda: self.state.ledger.commit_stats(),
        ))
        self.state = State({"metrics": self.metrics})

    def open(self, app: Litestar) -> None:
        self.state = app.state
        ledger_app = self.given or bootstrap(self.settings)
        url = ledger_app.settings.resolved_database_url
        credit = CreditService(ledger_app.store, ledger_app.ledger, policy_file=ledger_app.settings.scorecard or None)
        self.state.update(ledger_app=ledger_app, ledger=ledger_app.ledger, credit=credit, api_keys=KeyStore.open(url), status_db=ViewDatabase(url))
        self.state.store_status = _store_status(ledger_app, self.state.status_db)
        self.state.relay_status = _relay_status(ledger_app, self.state.status_db)
        self.state.views = Views(ledger_app)

    def close(self, app: Litestar) -> None:
        self.state.api_keys.close()
        self.state.status_db.close()
        self.state.views.close()
        if self.given is None:
            self.state.ledger_app.close()


def freeze_startup_objects() -> None:
    """Startup hook of a served app: move every object that exists after startup (modules,
    the app and its routes, settings...) to the collector's permanent generation. A full
    collection would otherwise walk those ~70,000 objects every so often: a 60-100 ms
    pause in the middle of requests, which set p99 at 300 requests/s."""
    gc.collect()
    gc.freeze()


def served_app() -> Litestar:
    """The app as ``arledger serve`` runs it (uvicorn's factory with ``--workers N``)."""
    return create_app(freeze_gc=True)


def create_app(settings: Settings | None = None, *, ledger_app: App | None = None, freeze_gc: bool = False) -> Litestar:
    """Build the API on the store named by ``settings`` (or on an already built App).
    ``freeze_gc`` is for a process that serves only this app (see :func:`freeze_startup_objects`)."""
    resources = Resources(settings, ledger_app)
    guarded = Router("/", route_handlers=[_load(p) for p in ROUTERS], guards=[authorize], security=[{"bearer": []}, {"apiKey": []}])
    return Litestar(
        route_handlers=[guarded, *(_load(p) for p in PUBLIC_ROUTERS)],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[observe],
        before_request=strict_body,
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
        state=resources.state,
        on_startup=[resources.open, *([freeze_startup_objects] if freeze_gc else [])],
        on_shutdown=[resources.close],
        logging_config=None,
    )


def operation_routes() -> dict[str, str]:
    """operation id -> "METHOD /path" of every guarded endpoint (for the docs table)."""
    out: dict[str, str] = {}
    for path in ROUTERS:
        router = _load(path)
        for route in router.routes:
            for handler in getattr(route, "route_handlers", []):
                for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                    out[str(handler.operation_id)] = f"{method} {re.sub(r':[a-z]+}', '}', route.path)}"
    return out
