"""``arledger serve``: the HTTP API under uvicorn.

On the very first start of a development store (no API key at all) it creates one key
per role and prints them once, so ``make run`` gives a usable API with no manual step.
In production it only says how to create a key (``arledger keys create``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from services.apikeys import ROLES, KeyStore
from services.cli.common import settings_from
from services.settings import Settings


#: How long a thread may hold the GIL while another waits for it. Python's default is
#: 5 ms: the ledger's committer, back from a commit's flush, would wait up to that long
#: while the event loop handles requests, and every command in the next batch with it.
SWITCH_INTERVAL = 0.0005


def first_start_keys(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, role, secret) of the keys created now; none if any key exists or in production."""
    keys = KeyStore.open(settings.resolved_database_url)
    try:
        if keys.list() or settings.env == "production":
            return []
        return [(name, role, secret) for role in ROLES for name, secret in [(f"{role}.local", keys.create(f"{role}.local", role)[1])]]
    finally:
        keys.close()


def start_embedded_projections(settings: Settings) -> threading.Event:
    """Follow the stream in a background thread so views (aging, risk, worklists, audit)
    stay current while the API serves: the embedded default has no separate worker.
    Deployments at scale run ``arledger projections run`` as its own process instead."""
    from projections.db import ViewDatabase
    from projections.registry import all_projections
    from projections.runner import ProjectionRunner
    from services.bootstrap import bootstrap

    stop = threading.Event()

    def work() -> None:
        app = bootstrap(settings, configure_logs=False)
        db = ViewDatabase(settings.resolved_database_url)
        try:
            runner = ProjectionRunner(app.store, db, all_projections())
            runner.setup()
            runner.run_forever(stop, poll_interval=0.5)
        finally:
            db.close()
            app.close()

    threading.Thread(target=work, name="embedded-projections", daemon=True).start()
    return stop


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from services.api import create_app
    from services.api.app import DOCS_PATH, OPENAPI_PATH

    settings = settings_from(args)
    created = first_start_keys(settings)
    base = f"http://{args.host}:{args.port}"
    if created:
        print("first start: one API key per role (shown only now; manage them with `arledger keys`):", file=sys.stderr)
        for name, role, secret in created:
            print(f"  {role:<15} {name:<22} {secret}", file=sys.stderr)
        print(f'  e.g. curl -H "Authorization: Bearer {created[0][2]}" {base}/v1/customers', file=sys.stderr)
    else:
        print("API keys: `arledger keys list`, `arledger keys create --role ROLE --name NAME`", file=sys.stderr)
    print(f"serving {base}  docs {base}{DOCS_PATH}  OpenAPI {base}{OPENAPI_PATH}", file=sys.stderr)
    embedded = args.projections if args.projections is not None else settings.env == "development"
    if embedded:
        print("projections: following the stream in this process (--no-projections to run `arledger projections run` apart)", file=sys.stderr)
        start_embedded_projections(settings)
    sys.setswitchinterval(SWITCH_INTERVAL)
    options = {
        "host": args.host, "port": args.port, "log_config": None, "access_log": False, "log_level": "warning",
        "http": "services.api.transport:CoalescingHttpToolsProtocol",  # one write per response
    }
    if args.workers > 1:
        # Worker processes build their app from the environment: pin the store for them.
        os.environ["ARLEDGER_DATABASE_URL"] = settings.resolved_database_url
        uvicorn.run("services.api.app:served_app", factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(create_app(settings, freeze_gc=True), **options)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve the HTTP API (OpenAPI at /openapi.json, docs at /docs)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (share the store; accounts changed by another worker are reloaded)")
    parser.add_argument(
        "--projections", action=argparse.BooleanOptionalAction, default=None,
        help="also follow the stream and update the views in this process (default: on in development, off in production)",
    )
    parser.set_defaults(handler=_run)
