"""Collections on the command line: one sub-command per collections command (generated
from the Structs, like the ledger commands), and ``arledger collections worklist|results``."""

from __future__ import annotations

import argparse

from domain.collections_commands import COLLECTIONS_COMMANDS
from services.cli.ledger_commands import add_command_parsers


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command_parsers(subparsers, COLLECTIONS_COMMANDS, "collections")
