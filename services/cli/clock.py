"""``arledger clock tick --date D`` and ``arledger clock run --daemon``: record what time
caused (overdue, aging buckets, dunning steps due, promises kept or broken)."""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import UTC, date, datetime, timedelta

import structlog

from domain.errors import RuleViolation
from services.cli.common import app_from, print_json
from services.clock.wiring import build_clock

log = structlog.get_logger("arledger.clock")


def parse_day(text: str, flag: str = "--date") -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise RuleViolation(flag, "iso_date", f"{text!r} is not a date YYYY-MM-DD") from None


def _tick(args: argparse.Namespace) -> int:
    day = parse_day(args.date) if args.date else datetime.now(UTC).date()
    app = app_from(args)
    clock = build_clock(app)
    try:
        report = clock.tick(day)
    finally:
        clock.db.close()
        app.close()
    print_json(report.as_dict())
    return 0


def seconds_to_next_day(now: datetime, at_hour: int = 0) -> float:
    """Seconds until the next run at ``at_hour`` UTC (the daemon ticks once a day)."""
    target = now.replace(hour=at_hour, minute=0, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    return (target - now).total_seconds()


def _run(args: argparse.Namespace) -> int:
    if not args.daemon:
        return _tick(argparse.Namespace(**{**vars(args), "date": None}))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    app = app_from(args)
    clock = build_clock(app)
    log.info("clock_daemon_started", at_hour=args.at_hour)
    try:
        while not stop.is_set():
            try:
                clock.tick(datetime.now(UTC).date())  # catches up every day missed while stopped
            except Exception:  # a failed tick (database away) is retried at the next one: it is idempotent
                log.exception("clock_tick_failed")
            stop.wait(args.interval if args.interval else seconds_to_next_day(datetime.now(UTC), args.at_hour))
    finally:
        clock.db.close()
        app.close()
    log.info("clock_daemon_stopped")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("clock", help="record the events time causes (overdue, aging, dunning, promises)")
    sub = parser.add_subparsers(dest="clock_command", required=True)
    tick = sub.add_parser("tick", help="record, idempotently, what time caused up to a business date")
    tick.add_argument("--date", help="business date YYYY-MM-DD (default: today, UTC)")
    tick.set_defaults(handler=_tick)
    run = sub.add_parser("run", help="tick today; with --daemon, keep ticking once a day")
    run.add_argument("--daemon", action="store_true", help="keep running, one tick per day (SIGTERM stops it)")
    run.add_argument("--at-hour", type=int, default=0, help="UTC hour of the daily tick (default 0)")
    run.add_argument("--interval", type=float, default=0, help="seconds between ticks instead of daily (testing)")
    run.set_defaults(handler=_run)
