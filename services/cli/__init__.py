"""The ``arledger`` command line. Each sub-module adds its sub-commands through
``register(subparsers)``; this module only assembles them and maps errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import sys

import msgspec

from domain.errors import LedgerError, RuleViolation

#: Sub-command modules, in the order they appear in ``arledger --help``.
MODULES: tuple[str, ...] = (
    "services.cli.init",
    "services.cli.ledger_commands",
    "services.cli.schema",
    "services.cli.demo",
    "services.cli.projections",
    "services.cli.clock",
    "services.cli.collections",
    "services.cli.risk",
    "services.cli.audit",
    "services.cli.credit",
    "services.cli.importer",
    "services.cli.relay",
    "services.cli.keys",
    "services.cli.serve",
)

EXIT_RULE = 2
EXIT_CONFLICT = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arledger", description="Event-sourced accounts receivable.")
    parser.add_argument("--database-url", help="store to use (default: ARLEDGER_DATABASE_URL or an SQLite file under ARLEDGER_DATA_DIR)")
    parser.add_argument("--actor", help="who is acting (default: ARLEDGER_ACTOR or $USER@cli)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except RuleViolation as exc:
        print(msgspec.json.encode({"error": exc.as_dict()}).decode(), file=sys.stderr)
        return EXIT_RULE
    except LedgerError as exc:
        print(msgspec.json.encode({"error": {"rule": type(exc).__name__, "message": str(exc)}}).decode(), file=sys.stderr)
        return EXIT_CONFLICT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
