"""``arledger aging`` and ``arledger kpi``: the receivables reports.

Both first bring the ``ar_items`` view up to the head of the stream (the embedded
SQLite default runs no worker) unless ``--no-catch-up``, then report from it. With
``--json`` they print one JSON object, or an array of one object per currency when the
ledger holds several; ratios are JSON numbers rounded half-even to 4 places. Every
report states the stream ``position`` it was computed at: ``--at-position`` that
number (or the same ``--known-at``) reproduces it byte for byte later.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from domain.aging import DEFAULT_EDGES, parse_edges
from domain.errors import RuleViolation
from projections.aging import GROUPS, aging_report
from projections.ar_items import ArItemsProjection
from projections.db import ViewDatabase
from projections.kpi import kpi_report, period_range
from projections.runner import ProjectionRunner
from services.cli.common import app_from

_encoder = msgspec.json.Encoder(decimal_format="number")


def _date(field: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise RuleViolation(field, "iso_date", f"{text!r} is not a date YYYY-MM-DD") from None


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RuleViolation("known_at", "iso_time", f"{text!r} is not an ISO 8601 time") from None


def _open_views(args: argparse.Namespace) -> ViewDatabase:
    """The view database, caught up to the head of the stream unless told not to."""
    app = app_from(args)
    try:
        db = ViewDatabase(app.settings.resolved_database_url)
        runner = ProjectionRunner(app.store, db, [ArItemsProjection()], batch_size=10_000)
        runner.setup()
        if not args.no_catch_up:
            runner.catch_up()
        return db
    finally:
        app.close()


def _emit(reports: list[dict[str, Any]]) -> None:
    body = reports[0] if len(reports) == 1 else reports
    sys.stdout.write(_encoder.encode(body).decode() + "\n")


def _aging(args: argparse.Namespace) -> int:
    as_of = _date("as_of", args.as_of) if args.as_of else date.today()
    buckets = parse_edges(args.buckets)
    db = _open_views(args)
    try:
        reports = aging_report(db, as_of, at_position=args.at_position, known_at=_time(args.known_at), by=args.by, buckets=buckets)
    finally:
        db.close()
    if args.json:
        _emit(reports)
        return 0
    console = Console()
    for report in reports:
        table = Table(title=f"Aging {report['currency'] or ''} as of {report['as_of']} (position {report['position']})")
        first = args.by or "ledger"
        table.add_column(first)
        for bucket in report["buckets"]:
            table.add_column(bucket["label"], justify="right")
        table.add_column("total", justify="right")
        for row in report.get(f"by_{args.by}", []) if args.by else []:
            key = row["customer_id"] if args.by == "customer" else row[args.by]
            table.add_row(key or "-", *(str(b["amount_minor"]) for b in row["buckets"]), str(row["total_minor"]))
        table.add_row("[bold]total", *(f"[bold]{b['amount_minor']}" for b in report["buckets"]), f"[bold]{report['total_minor']}")
        console.print(table)
        console.print(f"unapplied cash {report['unapplied_minor']}, open credits {report['open_credits_minor']} (minor units, not netted)")
    return 0


def _kpi(args: argparse.Namespace) -> int:
    if args.period:
        if args.year is None:
            raise RuleViolation("year", "required", "--period needs --year")
        start, end = period_range(args.period, args.year, args.number)
    else:
        if not args.from_ or not args.to:
            raise RuleViolation("from", "required", "give --from and --to, or --period with --year")
        start, end = _date("from", args.from_), _date("to", args.to)
    db = _open_views(args)
    try:
        reports = kpi_report(db, start, end, at_position=args.at_position, known_at=_time(args.known_at))
    finally:
        db.close()
    if args.json:
        _emit(reports)
        return 0
    table = Table(title=f"KPIs {start} .. {end}")
    table.add_column("figure")
    for report in reports:
        table.add_column(report["currency"] or "-", justify="right")
    for key in ("credit_sales_minor", "ar_start_minor", "ar_end_minor", "current_ar_end_minor", "dso", "countback_dso",
                "best_possible_dso", "add", "cei", "turnover", "turnover_days", "position"):
        table.add_row(key, *("-" if r[key] is None else str(r[key]) for r in reports))
    Console().print(table)
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--known-at", help="count only events recorded at or before this ISO time (UTC if no offset)")
    parser.add_argument("--at-position", type=int, help="count only events up to this stream position")
    parser.add_argument("--json", action="store_true", help="print JSON (one object, or an array per currency)")
    parser.add_argument("--no-catch-up", action="store_true", help="report from the views as they are (a worker keeps them current)")


def register(subparsers: argparse._SubParsersAction) -> None:
    aging = subparsers.add_parser("aging", help="open receivables by aging bucket as of a date")
    aging.add_argument("--as-of", help="business date YYYY-MM-DD (default: today)")
    aging.add_argument("--by", choices=GROUPS, help="add totals by customer, region, industry or salesperson")
    aging.add_argument("--buckets", default=",".join(map(str, DEFAULT_EDGES)), help="bucket edges in days past due (default 0,30,60,90)")
    _common(aging)
    aging.set_defaults(handler=_aging)
    kpi = subparsers.add_parser("kpi", help="DSO, count-back DSO, best possible DSO, ADD, CEI and turnover of a period")
    kpi.add_argument("--from", dest="from_", help="first day of the period YYYY-MM-DD")
    kpi.add_argument("--to", help="last day of the period YYYY-MM-DD")
    kpi.add_argument("--period", choices=("month", "quarter", "year"), help="instead of --from/--to")
    kpi.add_argument("--year", type=int, help="year of --period")
    kpi.add_argument("--number", type=int, help="month (1-12) or quarter (1-4) of --period")
    _common(kpi)
    kpi.set_defaults(handler=_kpi)
