"""``arledger init``: create the store's tables and every view's tables once.

With PostgreSQL, several processes creating tables at the same moment collide
(NOTES.md: "tuple concurrently updated"); run ``arledger init`` once at deploy time and
start the workers with ``ARLEDGER_CREATE_TABLES=false``.
"""

from __future__ import annotations

import argparse
import sys

from projections.db import ViewDatabase
from projections.registry import all_projections
from projections.kafka_runner import OFFSETS_DDL as KAFKA_OFFSETS_DDL
from projections.runner import ProjectionRunner
from services.bootstrap import bootstrap
from services.relay.relay import POSITIONS_DDL as RELAY_POSITIONS_DDL
from services.settings import Settings


def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env(database_url=args.database_url, create_tables=True)
    app = bootstrap(settings)
    db = ViewDatabase(settings.resolved_database_url)
    try:
        ProjectionRunner(app.store, db, all_projections()).setup()
        with db.transaction() as tx:  # the Kafka relay's and consumer-group workers' positions
            tx.execute(RELAY_POSITIONS_DDL)
            tx.execute(KAFKA_OFFSETS_DDL)
    finally:
        db.close()
        app.close()
    print(f"initialised {settings.resolved_database_url}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("init", help="create the event store and view tables (run once per deployment)")
    parser.set_defaults(handler=_run)
