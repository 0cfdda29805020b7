"""One sub-command per ledger command, generated from the command Structs.

``arledger issue-invoice --customer-id C1 --invoice-number INV-1 --currency EUR
--amount-minor 5594 --issue-date 2026-01-15`` decodes into :class:`IssueInvoice` with the
same validation as the HTTP API; list fields (installments) take JSON, and ``--json``
passes a whole body. The result (event ids) is printed as JSON.
"""

from __future__ import annotations

import argparse
import re
import uuid
from typing import Any

import msgspec

from domain.commands import LEDGER_COMMANDS, Command
from domain.errors import RuleViolation
from services.cli.common import actor_from, app_from, print_json
from services.validation import convert


def kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _run(cls: type[Command], args: argparse.Namespace) -> int:
    raw: dict[str, Any] = decode_json_arg(args.json, "--json") if args.json else {}
    if not isinstance(raw, dict):
        raise RuleViolation("body", "object", "--json must be a JSON object")
    for field in cls.__struct_fields__:
        value = getattr(args, field, None)
        if value is not None:
            raw[field] = decode_json_arg(value, "--" + field.replace("_", "-")) if field in _json_fields(cls) else value
    command = convert(raw, cls)
    app = app_from(args)
    try:
        result = app.ledger.execute(command, actor=actor_from(args), correlation_id=uuid.uuid4(), idempotency_key=args.idempotency_key)
    finally:
        app.close()
    print_json(result)
    return 0


def decode_json_arg(text: str, flag: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise RuleViolation(flag, "json", f"is not valid JSON: {exc}") from None


def _json_fields(cls: type[Command]) -> set[str]:
    info = msgspec.inspect.type_info(cls)
    return {f.name for f in info.fields if isinstance(f.type, (msgspec.inspect.ListType, msgspec.inspect.TupleType, msgspec.inspect.StructType))}


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command_parsers(subparsers, LEDGER_COMMANDS, "ledger")


def add_command_parsers(subparsers: argparse._SubParsersAction, commands: tuple[type[Command], ...], label: str) -> None:
    """One sub-command per command Struct, its flags generated from the fields."""
    for cls in commands:
        doc = (cls.__doc__ or cls.__name__).strip().splitlines()[0]
        parser = subparsers.add_parser(kebab(cls.__name__), help=f"{label} command {cls.__name__}", description=doc)
        info = msgspec.inspect.type_info(cls)
        for field in info.fields:
            flag = "--" + field.name.replace("_", "-")
            hint = "JSON" if field.name in _json_fields(cls) else None
            parser.add_argument(flag, dest=field.name, metavar=hint, help=("required" if field.required else "optional"))
        parser.add_argument("--json", help="the whole command as a JSON object (flags override its fields)")
        parser.add_argument("--idempotency-key", help="repeat-safe key: the same key and body record nothing new")
        parser.set_defaults(handler=lambda args, cls=cls: _run(cls, args))
