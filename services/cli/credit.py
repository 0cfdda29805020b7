"""``arledger credit ...``: credit management from the command line.

Command sub-commands are generated from the command Structs (same validation as the
ledger's); fields that are Structs (``financial``, ``behaviour``) get one flag per
sub-field (``--current-ratio 1.4``) or take JSON. ``--policy FILE`` (or
``ARLEDGER_SCORECARD``) names the policy used until one is recorded with ``policy --set``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from domain import credit_commands as cc
from domain.errors import RuleViolation
from domain.registry import account_id
from services.cli.common import actor_from, app_from, print_json
from services.cli.ledger_commands import _json_fields, decode_json_arg
from services.credit import CreditService, load_policy_file
from services.credit_backtest import backtest
from services.validation import convert

COMMANDS: dict[str, type[cc.Command]] = {
    "assess": cc.AssessCredit,
    "set-limit": cc.SetCreditLimit,
    "approve-limit": cc.ApproveCreditLimitIncrease,
    "reject-limit": cc.RejectCreditLimitIncrease,
    "insure": cc.RecordCreditInsurance,
    "guarantee": cc.RecordGuarantee,
    "place-order": cc.PlaceSalesOrder,
    "check-order": cc.CheckOrderCredit,
    "release-order": cc.ReleaseHeldOrder,
    "reject-order": cc.RejectHeldOrder,
    "cancel-order": cc.CancelSalesOrder,
    "invoice-order": cc.InvoiceSalesOrder,
    "hold": cc.PlaceCreditHold,
    "release-hold": cc.ReleaseCreditHold,
}


def _service(args: argparse.Namespace) -> tuple[Any, CreditService]:
    app = app_from(args)
    return app, CreditService(app.store, app.ledger, policy_file=args.policy or app.settings.scorecard or None)


def _nested(cls: type[cc.Command]) -> dict[str, type[msgspec.Struct]]:
    info = msgspec.inspect.type_info(cls)
    return {f.name: f.type.cls for f in info.fields if isinstance(f.type, msgspec.inspect.StructType)}


def _raw(cls: type[cc.Command], args: argparse.Namespace) -> dict[str, Any]:
    raw: dict[str, Any] = decode_json_arg(args.json, "--json") if args.json else {}
    if not isinstance(raw, dict):
        raise RuleViolation("body", "object", "--json must be a JSON object")
    nested = _nested(cls)
    for field in cls.__struct_fields__:
        value = getattr(args, field, None)
        if value is not None:
            raw[field] = decode_json_arg(value, "--" + field.replace("_", "-")) if field in _json_fields(cls) else value
        for sub in nested[field].__struct_fields__ if field in nested else ():
            value = getattr(args, f"{field}__{sub}", None)
            if value is not None:
                raw.setdefault(field, {})[sub] = value
    return raw


def _decisions(app: Any, customer_id: str, result: Any) -> list[dict[str, Any]]:
    """The decision and reasons of each order check the command recorded."""
    versions = [ref.originator_version for ref in result.events if ref.type == "OrderCreditChecked"]
    out = []
    for version in versions:
        event = next(iter(app.store.events.get(account_id(customer_id), gt=version - 1, lte=version)))
        out.append({"order_id": event.order_id, "decision": event.decision, "reasons": event.reasons, "figures": event.figures})
    return out


def _run_command(cls: type[cc.Command], args: argparse.Namespace) -> int:
    raw = _raw(cls, args)
    app, service = _service(args)
    try:
        if getattr(args, "from_risk_profile", False):  # assess: behaviour from the risk profile, flags override
            command = convert(raw, cls)
            behaviour = service.behaviour_from_risk(command.customer_id, command.assessed_on)
            raw["behaviour"] = {**msgspec.to_builtins(behaviour), **raw.get("behaviour", {})}
        command = convert(raw, cls)
        result = service.execute(command, actor=actor_from(args), idempotency_key=args.idempotency_key)
        checks = _decisions(app, result.customer_id, result)
    finally:
        app.close()
    print_json({**msgspec.to_builtins(result), **({"checks": checks} if checks else {})})
    return 0


def _reviews(args: argparse.Namespace) -> int:
    app, service = _service(args)
    try:
        print_json({"as_of": args.date, "reviews_due": service.reviews(args.date, actor=actor_from(args))})
    finally:
        app.close()
    return 0


def _warnings(args: argparse.Namespace) -> int:
    app, service = _service(args)
    try:
        print_json(service.warnings(args.date, actor=actor_from(args)))
    finally:
        app.close()
    return 0


def _backtest(args: argparse.Namespace) -> int:
    candidate = load_policy_file(args.candidate)
    app, _ = _service(args)
    try:
        report = backtest(app.store, candidate, args.date_from, args.date_to)
    finally:
        app.close()
    if args.json:
        print_json(report)
        return 0
    console = Console()
    console.print(f"[bold]Backtest[/] {report.date_from} .. {report.date_to}: {report.checks} order checks")
    console.print(f"recorded decisions {report.recorded}, candidate decisions {report.candidate}")
    console.print(f"approved exposure: recorded {report.approved_exposure_recorded_minor}, candidate {report.approved_exposure_candidate_minor} "
                  f"({report.approved_exposure_candidate_minor - report.approved_exposure_recorded_minor:+d})")
    console.print(f"losses avoided: written off {report.losses_avoided_written_off_minor}, overdue {report.losses_avoided_overdue_minor}")
    if not report.changed:
        console.print("no recorded decision would change")
        return 0
    table = Table("order", "customer", "checked on", "amount", "recorded", "candidate", "grade", "reasons", "written off", "overdue")
    for o in report.changed:
        table.add_row(o.order_id, o.customer_id, str(o.checked_on), str(o.amount_minor), o.recorded, o.candidate, o.candidate_grade,
                      " ".join(o.reasons), str(o.written_off_minor), str(o.overdue_minor))
    console.print(table)
    return 0


def _policy(args: argparse.Namespace) -> int:
    app, service = _service(args)
    try:
        if args.set:
            policy = load_policy_file(args.set)
            event = service.change_policy(policy, reason=args.reason or "", actor=actor_from(args))
            print(f"credit policy version {event.originator_version} recorded", file=sys.stderr)
        policy, version = service.active_policy()
    finally:
        app.close()
    print_json({"version": version, "policy": policy})
    return 0


def _add_command(sub: argparse._SubParsersAction, name: str, cls: type[cc.Command]) -> None:
    doc = (cls.__doc__ or cls.__name__).strip().splitlines()[0]
    parser = sub.add_parser(name, help=doc, description=doc)
    nested = _nested(cls)
    for field in msgspec.inspect.type_info(cls).fields:
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, dest=field.name, metavar="JSON" if field.name in _json_fields(cls) else None,
                            help="required" if field.required else "optional")
        for sub_field in nested[field.name].__struct_fields__ if field.name in nested else ():
            parser.add_argument("--" + sub_field.replace("_", "-"), dest=f"{field.name}__{sub_field}", help=f"{field.name}.{sub_field}")
    if cls is cc.AssessCredit:
        parser.add_argument("--from-risk-profile", action="store_true",
                            help="take the payment behaviour from the customer's risk profile on --assessed-on (behaviour flags override)")
    parser.add_argument("--json", help="the whole command as a JSON object (flags override its fields)")
    parser.add_argument("--idempotency-key", help="repeat-safe key: the same key and body record nothing new")
    parser.set_defaults(handler=lambda args, cls=cls: _run_command(cls, args))


def register(subparsers: argparse._SubParsersAction) -> None:
    credit = subparsers.add_parser("credit", help="credit management: assessments, limits, order checks, holds, reviews, warnings")
    credit.add_argument("--policy", help="policy file (TOML/JSON) used until one is recorded (default: ARLEDGER_SCORECARD or the shipped one)")
    sub = credit.add_subparsers(dest="credit_command", required=True, metavar="SUBCOMMAND")
    for name, cls in COMMANDS.items():
        _add_command(sub, name, cls)
    for name, handler, help_ in (("reviews", _reviews, "record CreditReviewDue for customers due on --date (idempotent)"),
                                 ("warnings", _warnings, "raise/clear early warnings and automatic holds on --date; report concentration")):
        parser = sub.add_parser(name, help=help_)
        parser.add_argument("--date", type=date.fromisoformat, required=True)
        parser.set_defaults(handler=handler)
    parser = sub.add_parser("backtest", help="replay recorded order checks under a candidate policy (records nothing)")
    parser.add_argument("--policy", dest="candidate", required=True, help="candidate policy file")
    parser.add_argument("--from", dest="date_from", type=date.fromisoformat, required=True)
    parser.add_argument("--to", dest="date_to", type=date.fromisoformat, required=True)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_backtest)
    parser = sub.add_parser("policy", help="print the active credit policy, or record a new one with --set FILE --reason R")
    parser.add_argument("--set", help="policy file to record as the new version (CreditPolicyChanged)")
    parser.add_argument("--reason", help="why the policy changes (required with --set)")
    parser.set_defaults(handler=_policy)
