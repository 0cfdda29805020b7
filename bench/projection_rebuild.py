"""Full rebuild of every projection vs. the library's notification-log path, and the
aging query over a million invoices (issue 3 targets: >= 300,000 events/s over >= 2M
events, >= 5x the library path, peak memory < 500 MB, aging as of any date < 200 ms).

    python -m bench.projection_rebuild            # 1,000,000 invoices (~2.75M events)
    python -m bench.projection_rebuild --quick    # 100,000 invoices

1. Generates a ledger straight into a fresh SQLite store: the events LedgerService
   writes (CustomerRegistered; InvoiceIssued and PaymentReceived each with their
   ReferenceClaimed; PaymentAllocated), msgspec-mapped by the store's own mapper and
   inserted in bulk with ``recorder.insert_events``.
2. (a) ``arledger projections rebuild --all`` in a child process: events/s over the
   whole stream (the rebuild as the command times it, and the process wall-clock with
   interpreter start-up), CPU seconds of the command and its worker processes, and the
   peak RSS summed over all of them (the command reports each process's peak);
   (b) the same stream through the library's default path, as its own followers read
   it: ``NotificationLogReader(app.notification_log)`` at the default section size
   (10), each notification decoded by the application's mapper.
3. ``aging_report`` as of several dates: milliseconds each.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from domain import events as ev
from domain.registry import ReferenceClaimed, account_id, event_id, reference_id
from services.bootstrap import bootstrap
from services.persistence import topic_of
from services.settings import Settings

START = date(2024, 1, 1)
REGIONS = ("north", "south", "east", "west")
INDUSTRIES = ("retail", "industry", "services")


class _Writer:
    """Buffers stored events and inserts them in bulk, one transaction per chunk."""

    def __init__(self, store, chunk: int = 50_000) -> None:
        self.store, self.chunk, self.buffer, self.count = store, chunk, [], 0
        self.to_stored = store.mapper.to_stored_event

    def add(self, event) -> None:
        self.buffer.append(self.to_stored(event))
        if len(self.buffer) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.store.recorder.insert_events(self.buffer)
            self.count += len(self.buffer)
            self.buffer = []


def generate(store, invoices: int, customers: int, seed: int = 3) -> int:
    """Write the ledger; returns how many events were stored."""
    rng = random.Random(seed)
    writer = _Writer(store)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    versions = [0] * customers
    ids = [account_id(f"C{c:06d}") for c in range(customers)]

    def common(originator, version):
        return {"originator_id": originator, "originator_version": version, "event_id": event_id(originator, version),
                "recorded_at": now, "actor": "bench", "correlation_id": uuid.uuid4(), "causation_id": uuid.uuid4()}

    def account_event(cls, c, **fields):
        versions[c] += 1
        writer.add(cls(**common(ids[c], versions[c]), customer_id=f"C{c:06d}", **fields))

    def claim(kind, reference, c):
        rid = reference_id(kind, reference)
        writer.add(ReferenceClaimed(**common(rid, 1), kind=kind, reference=reference, customer_id=f"C{c:06d}"))

    for c in range(customers):
        account_event(ev.CustomerRegistered, c, name=f"Customer {c}", currency="EUR", region=REGIONS[c % 4],
                      industry=INDUSTRIES[c % 3], salesperson=f"s{c % 20}")
    pending: list[tuple[int, str, int, date]] = []  # invoices awaiting a payment
    for n in range(invoices):
        c = rng.randrange(customers)
        number = f"INV-{n:08d}"
        issued = START + timedelta(days=rng.randrange(0, 730))
        due = issued + timedelta(days=30)
        amount = rng.randrange(1_000, 500_000)
        account_event(ev.InvoiceIssued, c, invoice_number=number, currency="EUR", amount_minor=amount, issue_date=issued,
                      due_date=due, installments=(ev.Installment(number=1, due_date=due, amount_minor=amount),))
        claim("invoice", number, c)
        if n % 2 == 0:
            pending.append((c, number, amount, due))
        if len(pending) == 4:  # one payment settles four invoices (of different customers: one each)
            for c_, number_, amount_, due_ in pending:
                pid = f"PAY-{number_}"
                value = due_ + timedelta(days=rng.randrange(-20, 90))
                paid = amount_ if rng.random() < 0.8 else amount_ // 2
                account_event(ev.PaymentReceived, c_, payment_id=pid, currency="EUR", amount_minor=paid, value_date=value)
                claim("payment", pid, c_)
                account_event(ev.PaymentAllocated, c_, payment_id=pid, invoice_number=number_, installment=1, currency="EUR",
                              amount_minor=paid, value_date=value)
            pending = []
    writer.flush()
    return writer.count


def rebuild_in_child(url: str) -> dict[str, float]:
    """``arledger projections rebuild --all`` as a user runs it. Returns the rebuild's
    own seconds (head read to swap committed, as the command reports them), the process
    wall-clock (start-up included), the CPU seconds of the command and of every worker
    process it started (they are its children: reaped, they count in RUSAGE_CHILDREN),
    and the peak RSS the command reports summed over all its processes."""
    env = {**os.environ, "ARLEDGER_DATABASE_URL": url, "ARLEDGER_LOG_LEVEL": "WARNING"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "services.cli", "projections", "rebuild", "--all"], env=env,
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage.ru_utime + usage.ru_stime) - (before.ru_utime + before.ru_stime)
    sys.stderr.write(proc.stderr)
    text = " ".join(proc.stderr.split())  # the console wraps long lines
    seconds = re.search(r"stream positions in ([0-9.]+) s", text)
    summed = re.search(r"peak RSS ([0-9,.]+) MB summed over processes", text)
    if not seconds or not summed:
        raise SystemExit(f"unexpected output of projections rebuild: {proc.stderr}")
    # the largest single child as the kernel saw it: a floor for the reported sum
    largest = usage.ru_maxrss / 1024
    return {"seconds": float(seconds.group(1)), "wall": wall, "cpu": cpu,
            "peak_mb": max(float(summed.group(1).replace(",", "")), largest)}


def library_path(store, limit_events: int | None) -> tuple[int, float, float]:
    """Read the stream the library's default way, as its own followers do: a
    ``NotificationLogReader`` over ``app.notification_log`` at the default section size
    (10), each notification turned into a domain event by the application's mapper."""
    from eventsourcing.system import NotificationLogReader

    reader, to_domain = NotificationLogReader(store.notification_log), store.mapper.to_domain_event
    started, cpu = time.perf_counter(), time.process_time()
    count = 0
    for section in reader.select(start=1):
        for notification in section:
            to_domain(notification)
        count += len(section)
        if limit_events and count >= limit_events:
            break
    return count, time.perf_counter() - started, time.process_time() - cpu


def aging_timings(url: str, dates: list[date]) -> list[tuple[date, float, float, int]]:
    from projections.aging import aging_report
    from projections.db import ViewDatabase

    db = ViewDatabase(url)
    try:
        aging_report(db, dates[0])  # warm the page cache once, as a serving process would be
        out = []
        for day in dates:
            started, cpu = time.perf_counter(), time.process_time()
            [report] = aging_report(db, day)
            out.append((day, (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000, report["total_minor"]))
        return out
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 invoices instead of 1,000,000")
    parser.add_argument("--invoices", type=int)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--library-events", type=int, default=0,
                        help="read only this many events through the library path (0: the whole stream)")
    parser.add_argument("--db", help="SQLite file to generate into, or to reuse if it exists (default: a temporary one)")
    args = parser.parse_args(argv)
    invoices = args.invoices or (100_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.db).resolve() if args.db else Path(tmp) / "bench.sqlite"
        reuse = path.exists()
        url = f"sqlite:///{path}"
        app = bootstrap(Settings.from_env({}, database_url=url, log_level="WARNING"))
        if reuse:
            events = app.store.max_position()
            with sqlite3.connect(path) as conn:
                invoices = conn.execute("SELECT COUNT(*) FROM stored_events WHERE topic = ?", (topic_of(ev.InvoiceIssued),)).fetchone()[0]
            print(f"reusing {path}: {invoices:,} invoices, {events:,} events")
        else:
            started = time.perf_counter()
            events = generate(app.store, invoices, min(args.customers, invoices))
            took = time.perf_counter() - started
            print(f"generated {invoices:,} invoices, {events:,} events in {took:.1f} s ({events / took:,.0f} events/s)")

        load_before = os.getloadavg()[0]
        run = rebuild_in_child(url)
        rate, cpu_rate = events / run["seconds"], events / run["cpu"]
        print(f"(a) projections rebuild --all: {events:,} events in {run['seconds']:.2f} s = {rate:,.0f} events/s"
              f" (process wall {run['wall']:.2f} s incl. interpreter start-up = {events / run['wall']:,.0f} events/s;"
              f" CPU of all its processes {run['cpu']:.2f} s = {cpu_rate:,.0f} events per CPU-second);"
              f" peak RSS summed over its processes {run['peak_mb']:,.0f} MB")

        read, lib_seconds, lib_cpu = library_path(app.store, args.library_events or None)
        lib_rate, lib_cpu_rate = read / lib_seconds, read / lib_cpu
        scope = "the whole stream" if read >= events else f"the first {read:,} events"
        print(f"(b) library NotificationLogReader (sections of 10) + the app's mapper, {scope}: {lib_seconds:.2f} s"
              f" = {lib_rate:,.0f} events/s (CPU {lib_cpu:.2f} s = {lib_cpu_rate:,.0f} events per CPU-second)")
        print(f"ratio (a)/(b): {rate / lib_rate:.1f}x wall-clock ({events / run['wall'] / lib_rate:.1f}x with start-up),"
              f" {cpu_rate / lib_cpu_rate:.1f}x per CPU-second")
        print(f"load average (1 min) before/after the runs: {load_before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        app.close()

        dates = [date(2024, 6, 30), date(2025, 3, 31), date(2025, 12, 31), date(2026, 6, 30)]
        for day, ms, cpu_ms, total in aging_timings(url, dates):
            print(f"aging as of {day} over {invoices:,} invoices: {ms:.1f} ms (CPU {cpu_ms:.1f} ms; total {total:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
