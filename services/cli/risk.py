"""``arledger risk``: customer risk profiles, stamped with the stream position they were
computed at so ``--at-position`` (or ``--known-at``) reproduces them byte for byte."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from domain.errors import RuleViolation
from domain.money import minor_unit_exponent
from domain.risk import OverdueItem, RiskProfile
from projections.ar_items import ArItemsProjection
from projections.db import ViewDatabase
from projections.risk import Cut, all_profiles, customer_profile, resolve_cut
from projections.runner import PositionMoved, ProjectionRunner
from services.cli.common import app_from
from services.risk_report import SORTS, builtins, chosen, cut_header, encode

def _as_of(text: str | None) -> date:
    if text is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise RuleViolation("as_of", "iso_date", f"{text!r} is not a date YYYY-MM-DD") from None


def _known_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RuleViolation("known_at", "iso_datetime", f"{text!r} is not an ISO 8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _catch_up(app: Any, db: ViewDatabase) -> None:
    runner = ProjectionRunner(app.store, db, [ArItemsProjection()])
    runner.setup()
    try:
        runner.catch_up()
    except PositionMoved:  # a worker is advancing the view right now: report at its position
        pass


def _run(args: argparse.Namespace) -> int:
    if bool(args.customer_id) == bool(args.all):
        raise RuleViolation("customer_id", "one_of", "name one CUSTOMER_ID or use --all")
    as_of, known_at = _as_of(args.as_of), _known_at(args.known_at)
    app = app_from(args)
    db = ViewDatabase(app.settings.resolved_database_url)
    try:
        if not args.no_catch_up:
            _catch_up(app, db)
        cut = resolve_cut(db, as_of, known_at=known_at, at_position=args.at_position, customer_id=args.customer_id)
        if args.all:
            _all(db, cut, args)
        else:
            _one(db, cut, args)
    finally:
        db.close()
        app.close()
    return 0


def _one(db: ViewDatabase, cut: Cut, args: argparse.Namespace) -> None:
    profile = customer_profile(db, args.customer_id, cut)
    if args.json:
        sys.stdout.buffer.write(encode({**cut_header(cut), **builtins(profile)}) + b"\n")
        sys.stdout.flush()
        return
    _card(profile, f"risk of {profile.customer_id} ({profile.currency}) as of {cut.as_of} at position {cut.position}")


def _all(db: ViewDatabase, cut: Cut, args: argparse.Namespace) -> None:
    profiles: Iterable[RiskProfile] = all_profiles(db, cut)
    profiles = chosen(profiles, args.sort, args.limit)
    if not args.json:
        _table(profiles, f"customer risk as of {cut.as_of} at position {cut.position}")
        return
    out = sys.stdout.buffer
    head = encode({**cut_header(cut), "sort": args.sort, "limit": args.limit})
    out.write(head[:-1] + b',"customers":[')
    count = 0
    for profile in profiles:  # streamed: one customer encoded at a time
        out.write((b"," if count else b"") + encode(profile))
        count += 1
    out.write(b'],"count":' + str(count).encode() + b"}\n")
    out.flush()


def _money(minor: int, currency: str) -> str:
    """Minor units shown in major units of the currency (tables only; JSON stays in minor units)."""
    exponent = minor_unit_exponent(currency)
    return f"{Decimal(minor).scaleb(-exponent):,.{exponent}f}"


def _ratio(value: Decimal | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.1f}%" if percent else f"{value:.1f}"


def _item(item: OverdueItem | None, cur: str) -> str:
    return f"{item.invoice_number}/{item.installment} {_money(item.open_minor, cur)}, {item.days_past_due} days past due" if item else "-"


def _card(p: RiskProfile, title: str) -> None:
    e, b, cur = p.exposure, p.payment, p.currency
    card = Table("figure", "value", title=title)
    for label, value in (
        ("open", f"{_money(p.open_minor, cur)} ({p.open_items} items)"),
        ("overdue", f"{_money(p.overdue_minor, cur)} ({p.overdue_items} items)"),
        ("exposure (open AR + open orders)", _money(e.exposure_minor, cur)),
        ("unapplied cash / open credits", f"{_money(e.unapplied_cash_minor, cur)} / {_money(e.open_credits_minor, cur)}"),
        ("net exposure", _money(e.net_exposure_minor, cur)),
        ("average days late", _ratio(b.average_days_late)),
        ("settled late: installments", f"{b.settled_late_installments}/{b.settled_installments} ({_ratio(b.share_installments_late, True)})"),
        ("settled late: invoices", f"{b.settled_late_invoices}/{b.settled_invoices} ({_ratio(b.share_invoices_late, True)})"),
        ("written off", f"{_money(b.written_off_minor, cur)} ({b.written_off_installments} installments)"),
        ("largest overdue", _item(p.largest_overdue, cur)),
        ("oldest overdue", _item(p.oldest_overdue, cur)),
        ("promises kept / broken", f"{p.promises.kept} / {p.promises.broken} (kept {_ratio(p.promises.kept_rate, True)})"),
        ("open disputes", ", ".join(f"{d.invoice_number} since {d.disputed_on}" for d in p.open_disputes) or "-"),
        (f"DSO ({p.dso.window_days} days)", f"{_ratio(p.dso.dso)} (credit sales {_money(p.dso.credit_sales_minor, cur)})"),
    ):
        card.add_row(label, value)
    trend = Table("month", "as of", "open", "overdue", "DSO", "settled", "avg days late", title="trend")
    for t in p.trend:
        trend.add_row(t.period, t.as_of.isoformat(), _money(t.open_minor, cur), _money(t.overdue_minor, cur), _ratio(t.dso),
                      str(t.settled_installments), _ratio(t.average_days_late))
    Console().print(card, trend)


def _table(profiles: Iterable[RiskProfile], title: str) -> None:
    table = Table("customer", "open", "overdue", "net exposure", "days late", "late inv.", "DSO", "disputes",
                  "broken prom.", "oldest overdue", title=title)
    for p in profiles:
        oldest, cur = p.oldest_overdue, p.currency
        table.add_row(
            p.customer_id, _money(p.open_minor, cur), _money(p.overdue_minor, cur), _money(p.exposure.net_exposure_minor, cur),
            _ratio(p.payment.average_days_late), _ratio(p.payment.share_invoices_late, percent=True), _ratio(p.dso.dso),
            str(p.open_disputes_count), str(p.promises.broken), f"{oldest.days_past_due} d" if oldest else "-",
        )
    Console().print(table)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("risk", help="customer risk profile: exposure, overdue, days late, disputes, DSO, trend")
    parser.add_argument("customer_id", nargs="?", metavar="CUSTOMER_ID")
    parser.add_argument("--all", action="store_true", help="every customer (streamed; no trend)")
    parser.add_argument("--as-of", help="business date YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--known-at", help="count only events recorded at or before this ISO time (UTC if no offset)")
    parser.add_argument("--at-position", type=int, help="count only events at or before this stream position")
    parser.add_argument("--sort", choices=sorted(SORTS), help="with --all: largest first")
    parser.add_argument("--limit", type=int, help="with --all: at most N customers")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--no-catch-up", action="store_true", help="do not bring the ar_items view up to date first")
    parser.set_defaults(handler=_run)
