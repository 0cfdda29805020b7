"""``arledger demo``: load the demo ledger into the configured store (once)."""

from __future__ import annotations

import argparse
import sys

from services.cli.common import app_from
from services.demo import load_demo


def _run(args: argparse.Namespace) -> int:
    app = app_from(args)
    try:
        recorded = load_demo(app.ledger)
        where = app.settings.resolved_database_url
        print(f"demo ledger: {recorded} commands recorded in {where}" if recorded else f"demo ledger already present in {where}", file=sys.stderr)
    finally:
        app.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="load a small demo ledger (customers, invoices, payments) once")
    parser.set_defaults(handler=_run)
