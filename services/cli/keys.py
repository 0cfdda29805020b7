"""``arledger keys``: create, list and revoke API keys (the key is printed once, on creation)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from services.apikeys import ROLES, KeyStore
from services.cli.common import print_json, settings_from


def _store(args: argparse.Namespace) -> KeyStore:
    return KeyStore.open(settings_from(args).resolved_database_url)


def _create(args: argparse.Namespace) -> int:
    keys = _store(args)
    try:
        key, secret = keys.create(args.name, args.role)
    finally:
        keys.close()
    print_json({"key_id": key.key_id, "name": key.name, "role": key.role, "key": secret})
    return 0


def _revoke(args: argparse.Namespace) -> int:
    keys = _store(args)
    try:
        print_json({"revoked": keys.revoke(args.name_or_id)})
    finally:
        keys.close()
    return 0


def _list(args: argparse.Namespace) -> int:
    keys = _store(args)
    try:
        listed = keys.list()
    finally:
        keys.close()
    if args.json:
        print_json(listed)
        return 0
    table = Table("id", "name", "role", "key", "created", "revoked")
    for k in listed:
        table.add_row(k.key_id, k.name, k.role, k.hint, k.created_at[:19], (k.revoked_at or "")[:19])
    Console().print(table)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="API keys: create, list, revoke")
    sub = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True, help="who holds the key: recorded as the actor of its events")
    create.set_defaults(handler=_create)
    revoke = sub.add_parser("revoke", help="revoke a key by id, or every key of a name")
    revoke.add_argument("name_or_id")
    revoke.set_defaults(handler=_revoke)
    listing = sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
