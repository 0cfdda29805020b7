"""``arledger schema``: print the JSON Schema of every public event."""

from __future__ import annotations

import argparse

from services.cli.common import print_json
from services.schema import event_json_schema, events_json_schema


def _run(args: argparse.Namespace) -> int:
    print_json(event_json_schema(args.event) if args.event else events_json_schema())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="print the JSON Schema of the events (generated from the Structs)")
    parser.add_argument("--event", help="only this event type, e.g. InvoiceIssued")
    parser.set_defaults(handler=_run)
