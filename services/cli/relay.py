"""``arledger relay``: publish the event stream to Kafka (see services/relay/relay.py)."""

from __future__ import annotations

import argparse
import signal
import threading

from projections.db import ViewDatabase
from services.cli.common import app_from, print_json
from services.relay.relay import Relay


def _run(args: argparse.Namespace) -> int:
    app = app_from(args)
    db = ViewDatabase(app.settings.resolved_database_url)
    relay = Relay(app.store, db, app.settings, name=args.name, batch_size=args.batch_size, shard=args.shard)
    try:
        relay.setup()
        if args.status:
            print_json({"relay": relay.name, **relay.lag()})
        elif args.once:
            relay.drain()
            print_json({"relay": relay.name, "published": relay.published, **relay.lag()})
        else:
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            relay.run_forever(stop, poll_interval=args.poll_interval)
    finally:
        relay.disconnect()
        db.close()
        app.close()
    return 0


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"shard {i} is not in 0..{n - 1}")
    return i, n


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("relay", help="publish every event to Kafka as CloudEvents (worker)")
    parser.add_argument("--name", default="kafka", help="relay name: its position is stored under it (default kafka)")
    parser.add_argument("--batch-size", type=int, help="events per acknowledged batch (default ARLEDGER_RELAY_BATCH_SIZE)")
    parser.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N", help="run shard I of N relays (0-based), each publishing the customers of its partitions (default 0/1: one relay)")
    parser.add_argument("--poll-interval", type=float, default=0.05, help="seconds between looks at the stream when caught up (default 0.05)")
    parser.add_argument("--once", action="store_true", help="publish up to the head of the stream and exit (fails if the broker is down)")
    parser.add_argument("--status", action="store_true", help="print position, head and lag as JSON and exit")
    parser.set_defaults(handler=_run)
