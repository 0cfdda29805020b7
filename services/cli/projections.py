"""``arledger projections run|rebuild|status``: the projection worker and its tools."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from projections.db import ViewDatabase
from projections.registry import all_projections
from projections.runner import ProjectionRunner
from services.cli.common import app_from, print_json, settings_from


def make_runner(args: argparse.Namespace, names: list[str] | None = None):
    app = app_from(args)
    db = ViewDatabase(app.settings.resolved_database_url)
    projections = [p for p in all_projections() if not names or p.name in names]
    runner = ProjectionRunner(app.store, db, projections, **({"batch_size": args.batch_size} if getattr(args, "batch_size", None) else {}))
    runner.setup()
    return app, db, runner


def _run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if args.from_kafka:
        return _run_from_kafka(args, stop)
    app, db, runner = make_runner(args, args.projection)
    try:
        if args.once:
            runner.catch_up()
        else:
            runner.run_forever(stop, poll_interval=args.poll_interval)
    finally:
        db.close()
        app.close()
    return 0


def _run_from_kafka(args: argparse.Namespace, stop: threading.Event) -> int:
    """A consumer-group worker (projections/kafka_runner.py); needs ``arledger relay``."""
    import structlog

    from projections.kafka_runner import KafkaProjectionWorker, per_customer
    from services.logging import configure_logging

    settings = settings_from(args)
    configure_logging(settings)
    chosen = [p for p in all_projections() if not args.projection or p.name in args.projection]
    projections = [p for p in chosen if per_customer(p)]
    skipped = [p.name for p in chosen if not per_customer(p)]
    if skipped:  # they need the global order or internal events: the store reader keeps them
        structlog.get_logger("arledger.projections").warning("kafka_projections_skipped", projections=skipped, reason="not per_customer; run them with `projections run --projection NAME`")
    db = ViewDatabase(settings.resolved_database_url)
    worker = KafkaProjectionWorker(db, projections, settings, args.group)
    try:
        worker.setup()
        worker.run_forever(stop)
    finally:
        db.close()
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    known = [p.name for p in all_projections()]
    names = known if args.all else [args.name]
    unknown = [n for n in names if n not in known]
    if not names or unknown or (args.name and args.all):
        print(f"choose a projection NAME or --all; known: {', '.join(known)}", file=sys.stderr)
        return 2
    app, db, runner = make_runner(args, names)
    console = Console(stderr=True)
    try:
        started = time.perf_counter()
        label = "all" if args.all else names[0]
        with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console, disable=not console.is_terminal) as progress:
            task = progress.add_task(label, total=1, rate="")

            def update(reached: int, head: int) -> None:
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.update(task, completed=reached, total=max(head, 1), rate=f"{reached / elapsed:,.0f} events/s")

            report = runner.rebuild_all(names, update, workers=args.workers)
        for name in names:
            console.print(f"{name}: {report.applied[name]} events applied")
        memory = ", ".join(f"{who} {mb:,.0f}" for who, mb in report.peak_rss_mb.items())
        cpu = ", ".join(f"{who} {s:.2f}" for who, s in report.process_cpu_seconds.items())
        how = f"{report.workers} worker processes" if report.workers else "in place"
        console.print(
            f"rebuilt {len(names)} projection(s) from {report.head} stream positions in {report.seconds:.2f} s"
            f" ({how}: build {report.build_seconds:.2f} s, swap {report.swap_seconds:.2f} s"
            + "".join(f", {step} {seconds:.2f}" for step, seconds in report.swap_phases.items()) + "),"
            f" {report.head / max(report.seconds, 1e-9):,.0f} events/s; CPU {report.cpu_seconds:.2f} s ({cpu});"
            f" peak RSS {report.total_peak_rss_mb:,.0f} MB summed over processes ({memory})"
        )
    finally:
        db.close()
        app.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    app, db, runner = make_runner(args)
    try:
        rows = runner.status()
    finally:
        db.close()
        app.close()
    if args.json:
        print_json(rows)
        return 0
    table = Table("projection", "position", "head", "lag", "updated at")
    for row in rows:
        table.add_row(row["name"], str(row["position"]), str(row["head"]), str(row["lag"]), str(row["updated_at"] or "-"))
    Console().print(table)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("projections", help="run, rebuild and inspect the read models")
    sub = parser.add_subparsers(dest="projections_command", required=True)
    run = sub.add_parser("run", help="follow the stream and keep every view up to date (worker)")
    run.add_argument("--once", action="store_true", help="catch up to the head of the stream and exit")
    run.add_argument("--poll-interval", type=float, default=0.2)
    run.add_argument("--batch-size", type=int, help="events read per transaction (default: the runner's)")
    run.add_argument("--projection", action="append", metavar="NAME", help="run only this projection (repeat for more; default all)")
    run.add_argument("--from-kafka", action="store_true", help="consume the relay's events topic as a consumer group instead of reading the store")
    run.add_argument("--group", default="arledger-projections", help="consumer group of --from-kafka workers (default arledger-projections)")
    run.set_defaults(handler=_run)
    rebuild = sub.add_parser("rebuild", help="drop a view and replay the stream from zero")
    rebuild.add_argument("name", nargs="?")
    rebuild.add_argument("--all", action="store_true")
    rebuild.add_argument("--workers", type=int, help="worker processes building views in parallel on SQLite (default: one per core)")
    rebuild.set_defaults(handler=_rebuild)
    status = sub.add_parser("status", help="position and lag of each projection")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)
