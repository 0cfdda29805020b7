"""Collections on the command line: one sub-command per collections command (generated
from the Structs, like the ledger commands), ``arledger collections worklist|results``
and ``arledger statement``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from domain.collections_commands import COLLECTIONS_COMMANDS
from domain.money import format_minor
from projections.ar_items import ArItemsProjection
from projections.collections_reports import results, worklist
from projections.collections_worklist import CollectionsHoldsProjection, CollectionsWorklistProjection
from projections.db import ViewDatabase
from projections.statement import statement
from services.cli.clock import parse_day
from services.cli.common import app_from, print_json
from services.cli.ledger_commands import add_command_parsers
from services.clock.policy import load_policy
from services.clock.runner import TopicRunner
from services.collections.statement_html import render


@contextmanager
def _views(args: argparse.Namespace) -> Iterator[tuple[Any, ViewDatabase]]:
    """The app and its view database, with the collections views caught up (read your writes)."""
    app = app_from(args)
    db = ViewDatabase(app.settings.resolved_database_url)
    try:
        runner = TopicRunner(app.store, db, [ArItemsProjection(), CollectionsHoldsProjection(), CollectionsWorklistProjection()])
        runner.setup()
        runner.catch_up()
        yield app, db
    finally:
        db.close()
        app.close()


def _collectors(app: Any) -> list[str]:
    return [c.strip() for c in app.settings.collectors.split(",") if c.strip()]


def _grades(app: Any) -> Any:
    """customer_id -> (credit grade, its rank, 0 = best) from credit management, if present."""
    if app.credit is None:
        return None
    policy = app.credit.active_policy()[0]

    def grade_of(customer_id: str) -> tuple[str | None, int]:
        grade = app.ledger.account(customer_id).state.credit.grade
        return grade, (policy.grade_rank(grade) if grade else 0)

    return grade_of


def _day(args: argparse.Namespace) -> Any:
    return parse_day(args.date) if args.date else datetime.now(UTC).date()


def _worklist(args: argparse.Namespace) -> int:
    with _views(args) as (app, db):
        rows = worklist(db, _day(args), _collectors(app), args.collector, _grades(app))
    if args.json:
        print_json(rows)
        return 0
    table = Table("customer", "collector", "grade", "overdue", "days", "broken", "priority", "actions due", "next action", title=f"worklist {args.collector or ''}")
    for r in rows:
        actions = ", ".join(f"{a['invoice_number']}:{a['step']}({a['channel']})" for a in r["actions_due"][:3])
        table.add_row(r["customer_id"], r["collector"], r["grade"] or "-", format_minor(r["overdue_minor"], r["currency"]), str(r["days_past_due"]),
                      str(r["broken_promises"]), str(r["priority"]), actions, r["next_action_date"] or "-")
    Console().print(table)
    return 0


def _results(args: argparse.Namespace) -> int:
    with _views(args) as (app, db):
        out = results(db, _collectors(app))
    if args.json:
        print_json(out)
        return 0
    console = Console()
    for group in ("collector", "track", "step", "channel"):
        table = Table(group, "steps", "recovered", "rate", "days", "cost", "cost/unit", title=f"results by {group}")
        for r in out[f"by_{group}"]:
            table.add_row(r["key"], str(r["steps"]), str(r["recovered_minor"]), str(r["recovery_rate"] or "-"),
                          str(r["days_to_collect"] or "-"), str(r["cost_minor"]), str(r["cost_per_unit_recovered"] or "-"))
        console.print(table)
    return 0


def _statement(args: argparse.Namespace) -> int:
    with _views(args) as (app, db):
        data = statement(db, args.customer, _day(args), load_policy(app.settings.dunning_policy).aging)
    if args.html:
        Path(args.html).write_text(render(data), encoding="utf-8")
        print(f"statement written to {args.html}", file=sys.stderr)
    if args.json or not args.html:
        print_json(data)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command_parsers(subparsers, COLLECTIONS_COMMANDS, "collections")
    parser = subparsers.add_parser("collections", help="collector worklists and collection results")
    sub = parser.add_subparsers(dest="collections_command", required=True)
    wl = sub.add_parser("worklist", help="customers to work, highest priority first, with the actions due")
    wl.add_argument("--collector", help="only this collector's customers")
    wl.add_argument("--date", help="business date YYYY-MM-DD (default today, UTC)")
    wl.add_argument("--json", action="store_true")
    wl.set_defaults(handler=_worklist)
    res = sub.add_parser("results", help="recovery by collector, track, step and channel; promise-kept rate")
    res.add_argument("--json", action="store_true")
    res.set_defaults(handler=_results)
    st = subparsers.add_parser("statement", help="statement of account of a customer as of a date (JSON, printable HTML)")
    st.add_argument("customer")
    st.add_argument("--date", help="business date YYYY-MM-DD (default today, UTC)")
    st.add_argument("--html", metavar="FILE", help="also write a printable HTML page")
    st.add_argument("--json", action="store_true", help="print JSON (the default without --html)")
    st.set_defaults(handler=_statement)
