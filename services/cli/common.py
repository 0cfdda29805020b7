"""Helpers shared by CLI sub-commands: settings from flags, the actor, JSON output."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

import msgspec

from services.bootstrap import App, bootstrap
from services.settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(database_url=getattr(args, "database_url", None))


def app_from(args: argparse.Namespace) -> App:
    return bootstrap(settings_from(args))


def actor_from(args: argparse.Namespace) -> str:
    return getattr(args, "actor", None) or os.environ.get("ARLEDGER_ACTOR") or f"{getpass.getuser()}@cli"


def print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")
