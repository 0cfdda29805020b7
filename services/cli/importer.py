"""``arledger import``: load an existing ledger from CSV files, all or nothing.

Bad rows go to stderr, one per line (``invoices.csv:17: column amount: rule
minor_unit_precision: ...``), and the command exits 2 with nothing recorded. A JSON
summary (rows per file, events written, seconds, events/s) always goes to stdout; a
progress bar is drawn on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from domain.errors import RuleViolation
from services.cli import EXIT_RULE
from services.cli.common import actor_from, app_from, print_json
from services.importer import ORDER, ImportProgress, run_import


class RichProgress(ImportProgress):
    """Two bars: rows checked, events written."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.rows: TaskID | None = None
        self.events: TaskID | None = None

    def rows_total(self, total: int) -> None:
        if self.rows is None:
            self.rows = self.progress.add_task("rows checked", total=total)
        else:  # the estimate corrected, every row read
            self.progress.update(self.rows, total=total)

    def rows_checked(self, n: int) -> None:
        if self.rows is not None:
            self.progress.advance(self.rows, n)

    def events_total(self, total: int) -> None:
        self.events = self.progress.add_task("events written", total=total)

    def events_written(self, n: int) -> None:
        if self.events is not None:
            self.progress.advance(self.events, n)


def _paths(args: argparse.Namespace) -> dict[str, Path]:
    paths = {kind: Path(getattr(args, kind)) for kind in ORDER if getattr(args, kind)}
    if not paths:
        raise RuleViolation("files", "required", "name at least one of --customers, --invoices, --credit-notes, --payments")
    for kind, path in paths.items():
        if not path.is_file():
            raise RuleViolation("--" + kind.replace("_", "-"), "file_exists", f"{path} is not a readable file")
    return paths


def _run(args: argparse.Namespace) -> int:
    paths = _paths(args)
    console = Console(stderr=True)
    app = app_from(args)
    try:
        if console.is_terminal:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console, transient=True) as bar:
                report = run_import(app.store, paths, actor=actor_from(args), dry_run=args.dry_run, progress=RichProgress(bar))
        else:
            report = run_import(app.store, paths, actor=actor_from(args), dry_run=args.dry_run)
    finally:
        app.close()
    for error in report.errors:
        print(error, file=sys.stderr)
    if report.errors:
        print(f"{len(report.errors)} bad rows: nothing was recorded", file=sys.stderr)
    print_json(report.summary())
    return EXIT_RULE if report.errors else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import", help="import customers, invoices, credit notes and payments from CSV files (all or nothing)",
        description="Import an existing ledger from CSV files (columns: see README). Every bad row is reported; "
                    "if any row of any file is bad, nothing is recorded.",
    )
    parser.add_argument("--customers", metavar="CSV")
    parser.add_argument("--invoices", metavar="CSV")
    parser.add_argument("--credit-notes", dest="credit_notes", metavar="CSV")
    parser.add_argument("--payments", metavar="CSV")
    parser.add_argument("--dry-run", action="store_true", help="check every row and count the events, record nothing")
    parser.set_defaults(handler=_run)
