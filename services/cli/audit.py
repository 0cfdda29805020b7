"""``arledger audit verify|anchor|export|check-export``: the auditor's tools.

* ``verify`` re-reads the store's raw rows and checks them against the audit trail's
  hash chain; exit code 1 and the first bad position when anything was altered,
  removed, inserted or reordered; 0 when intact.
* ``anchor`` verifies, then prints the head as ``HASH@POSITION`` for the auditor to keep
  outside the database; ``verify --expect-head HASH@POSITION`` checks it later.
* ``export`` writes a range as JSON lines or CSV, stating the position it was computed at;
  ``--at-position N`` reproduces an earlier export byte for byte.
* ``check-export FILE`` checks an export file on its own (hashes and chain links).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from typing import Any

import structlog

from projections.audit_export import ExportError, ExportFilters, check_export, parse_time, position_known_at, write_export
from projections.audit_store import StoredRows
from projections.audit_trail import AuditTrail
from projections.audit_verify import Anchor, Report, verify
from projections.db import ViewDatabase
from projections.runner import ProjectionRunner
from services.cli.common import app_from, print_json

log = structlog.get_logger("arledger.audit")

EXIT_BAD = 1
EXIT_USAGE = 2


def _open(args: argparse.Namespace, stack: ExitStack) -> tuple[Any, ViewDatabase, ProjectionRunner]:
    app = app_from(args)
    stack.callback(app.close)
    db = ViewDatabase(app.settings.resolved_database_url)
    stack.callback(db.close)
    runner = ProjectionRunner(app.store, db, [AuditTrail()])
    catch_up = getattr(args, "catch_up", False)
    if catch_up or not _has_trail(runner):
        runner.setup()  # writes; an auditor with read-only access to an existing trail never gets here
    if catch_up:
        runner.catch_up()
    return app, db, runner


def _has_trail(runner: ProjectionRunner) -> bool:
    try:
        return bool(runner.db.query("SELECT version FROM projection_positions WHERE name = ? AND version = ?", (AuditTrail.name, AuditTrail.version)))
    except Exception:  # noqa: BLE001 - no positions table yet: a fresh store
        return False


def _verify_report(args: argparse.Namespace, stack: ExitStack, anchor: Anchor | None = None) -> Report:
    app, db, runner = _open(args, stack)
    return verify(StoredRows(app.store.recorder), db, runner.position(AuditTrail.name), anchor, deep=not getattr(args, "fast", False))


def _print_report(report: Report) -> None:
    if report.intact:
        head = f"head {report.head}" if report.head else "empty trail"
        print(f"audit trail intact: {report.verified_events} events verified up to position {report.trail_position}, {head}"
              f" ({report.events_per_s:,.0f} events/s)")
        if report.unverified_events:
            print(f"note: {report.unverified_events} stored events after position {report.trail_position} are not in the trail yet")
        return
    print(f"AUDIT TRAIL BROKEN: first bad position {report.first_bad_position}; {report.problem_count} problem(s)")
    for problem in report.problems:
        print(f"  position {problem.position}: {problem.kind}: {problem.detail}")


def _verify(args: argparse.Namespace) -> int:
    try:
        anchor = Anchor.parse(args.expect_head) if args.expect_head else None
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    with ExitStack() as stack:
        report = _verify_report(args, stack, anchor)
    (log.info if report.intact else log.error)(
        "audit_verified", intact=report.intact, first_bad_position=report.first_bad_position, problems=report.problem_count,
        verified_events=report.verified_events, trail_position=report.trail_position, head=str(report.head) if report.head else None,
    )
    print_json(report) if args.json else _print_report(report)
    return 0 if report.intact else EXIT_BAD


def _anchor(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        report = _verify_report(args, stack)
    if not report.intact or report.head is None:
        _print_report(report) if report.head else print("the audit trail is empty: nothing to anchor", file=sys.stderr)
        return EXIT_BAD
    if args.json:
        print_json({"anchor": str(report.head), "position": report.head.position, "chain_hash": report.head.chain_hash})
    else:
        print(report.head)
    return 0


def _export(args: argparse.Namespace) -> int:
    try:
        filters = ExportFilters(
            from_time=parse_time(args.from_time) if args.from_time else None,
            to_time=parse_time(args.to_time) if args.to_time else None,
            customer_id=args.customer, invoice_number=args.invoice, actor=args.audit_actor,
            include_internal=args.include_internal,
        )
        with ExitStack() as stack:
            app, db, runner = _open(args, stack)
            trail_position = runner.position(AuditTrail.name)
            stored = StoredRows(app.store.recorder)
            at_position = args.at_position
            if args.known_at:
                at_position = position_known_at(db, stored, parse_time(args.known_at), trail_position)
            out = stack.enter_context(open(args.output, "wb")) if args.output else sys.stdout.buffer
            summary = write_export(db, stored, out, fmt=args.format, filters=filters,
                                   trail_position=trail_position, at_position=at_position)
            out.flush()
    except ExportError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `arledger audit export | head`: the reader has seen enough
        sys.stderr.close()
        return 0
    print(f"exported {summary['rows']} events at position {summary['position']}", file=sys.stderr)
    return 0


def _check_export(args: argparse.Namespace) -> int:
    with open(args.file, encoding="utf-8", newline="") as handle:
        problems = check_export(handle)
    if args.json:
        print_json({"ok": not problems, "problems": problems})
    else:
        print("\n".join(problems) if problems else f"{args.file}: every row hashes and chains correctly")
    return EXIT_BAD if problems else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audit", help="verify the audit trail's hash chain, anchor it, export ranges")
    sub = parser.add_subparsers(dest="audit_command", required=True)
    check = sub.add_parser("verify", help="check every stored event against the hash chain (exit 1 when tampered)")
    check.add_argument("--expect-head", metavar="HASH@POSITION", help="an anchor recorded earlier by `arledger audit anchor`")
    check.add_argument("--catch-up", action="store_true", help="bring the audit trail up to the head of the stream first")
    check.add_argument("--fast", action="store_true", help="hashes, links and versions only; skip re-deriving the descriptive columns")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=_verify)
    anchor = sub.add_parser("anchor", help="verify, then print the chain head HASH@POSITION to record outside the database")
    anchor.add_argument("--catch-up", action="store_true", help="bring the audit trail up to the head of the stream first")
    anchor.add_argument("--json", action="store_true")
    anchor.set_defaults(handler=_anchor)
    export = sub.add_parser("export", help="write a range of the audit trail as JSON lines or CSV")
    export.add_argument("--from-time", metavar="ISO", help="recorded at or after (UTC when no offset)")
    export.add_argument("--to-time", metavar="ISO", help="recorded before (exclusive)")
    export.add_argument("--customer", metavar="ID")
    export.add_argument("--invoice", metavar="NUMBER", help="every event touching this invoice")
    export.add_argument("--actor", dest="audit_actor", metavar="ACTOR", help="events recorded by this actor")
    export.add_argument("--include-internal", action="store_true", help="also registry and idempotency records")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--output", metavar="FILE", help="default: standard output")
    at = export.add_mutually_exclusive_group()
    at.add_argument("--at-position", type=int, metavar="N", help="reproduce the export as computed at stream position N")
    at.add_argument("--known-at", metavar="ISO", help="as known at a time: at the position of the last event recorded by then")
    export.set_defaults(handler=_export)
    verify_file = sub.add_parser("check-export", help="check an export file on its own: hashes and chain links")
    verify_file.add_argument("file")
    verify_file.add_argument("--json", action="store_true")
    verify_file.set_defaults(handler=_check_export)
