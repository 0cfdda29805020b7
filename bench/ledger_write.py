"""Write throughput, events/s, side by side on SQLite (temp file) and PostgreSQL (a fresh
schema on ARLEDGER_BENCH_POSTGRES_URL, dropped after), in one run:

(a) ledger commands, one per transaction, through LedgerService (account events plus
    the reference claims it saves with them);
(b) ``arledger import`` of a generated ledger, end to end (CSV parsing, every rule, one
    transaction; on SQLite the write runs in a writer process alongside the checking);
    (b') the bulk write alone: the same import's events, built beforehand, written in one
    transaction in-process: the counterpart of (d), which times only ``save`` of
    aggregates built beforehand;
(c) the plain eventsourcing default path: a plain ``Aggregate`` in a plain
    ``Application`` with the library's JSON transcoder, one ``save`` per aggregate
    (each customer's ~100 events of the same generated ledger);
(d) the library's best batched save: the same ledger as (b), 100 aggregates
    (~10,000 events) per ``app.save(*aggs)``.

Each path shows wall events/s and events per CPU-second of this process and its child
processes (steadier when other work loads the machine; on PostgreSQL it leaves out the
server's CPU).

    python -m bench.ledger_write            # full size (~350k imported events)
    python -m bench.ledger_write --quick    # small, for a smoke run
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import msgspec
import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from rich.console import Console
from rich.table import Table

from bench.ledger_data import LedgerSize, write_ledger_csv
from domain import commands as c
from services.bootstrap import App, bootstrap
from services.importer import run_import
from services.importer.plan import build_plan
from services.importer.rows import read_file
from services.importer.store_io import write_events
from services.ledger import utc_now
from services.persistence import ensure_postgres_schema
from services.settings import Settings

POSTGRES_URL = os.environ.get("ARLEDGER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgres")


@dataclass(frozen=True)
class Sizes:
    commands_customers: int  # (a): each customer: register, 10 invoices, 5 payments + allocations
    import_ledger: LedgerSize  # (b)
    plain_ledger: LedgerSize  # (c): the same shape of ledger as (b), fewer customers
    batched_ledger: LedgerSize  # (d): the same ledger as (b), without the reference claims


FULL = Sizes(commands_customers=30, import_ledger=LedgerSize(customers=2000, invoices=50), plain_ledger=LedgerSize(customers=200, invoices=50),
             batched_ledger=LedgerSize(customers=2000, invoices=50))
QUICK = Sizes(commands_customers=10, import_ledger=LedgerSize(customers=100, invoices=50), plain_ledger=LedgerSize(customers=20, invoices=50),
              batched_ledger=LedgerSize(customers=100, invoices=50))


@dataclass(frozen=True)
class Result:
    path: str
    backend: str
    events: int
    seconds: float
    cpu_seconds: float  # this process only: on PostgreSQL the server's work is not in it

    @property
    def events_per_second(self) -> int:
        return round(self.events / self.seconds)

    @property
    def events_per_cpu_second(self) -> int:
        return round(self.events / self.cpu_seconds) if self.cpu_seconds else 0


# ---- stores ------------------------------------------------------------------------------


@contextmanager
def fresh_store(backend: str, workdir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(arledger database URL, plain eventsourcing env) of an empty store; dropped after."""
    if backend == "sqlite":
        path = workdir / f"{uuid.uuid4().hex}.sqlite"
        yield f"sqlite:///{path}", {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    url = f"{POSTGRES_URL}?schema={schema}"
    env = Settings.from_env({}, database_url=url).eventsourcing_env()
    plain = {k: v for k, v in env.items() if k.startswith("POSTGRES_")} | {"PERSISTENCE_MODULE": "eventsourcing.postgres"}
    ensure_postgres_schema(plain)
    try:
        yield url, plain
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def ledger_app(url: str) -> App:
    return bootstrap(Settings.from_env({}, database_url=url, log_level="WARNING"))


def timed(path: str, backend: str, run: Callable[[], int]) -> Result:
    started, cpu_started = time.perf_counter(), time.process_time()
    events = run()
    return Result(path, backend, events, time.perf_counter() - started, time.process_time() - cpu_started)


# ---- (a) commands ------------------------------------------------------------------------


def customer_commands(n: int) -> Iterator[c.Command]:
    day = date(2026, 1, 1)
    yield c.RegisterCustomer(customer_id=f"C{n}", name=f"Customer {n}", currency="EUR")
    for i in range(10):
        yield c.IssueInvoice(customer_id=f"C{n}", invoice_number=f"INV-{n}-{i}", currency="EUR", amount_minor=10_000 + i, issue_date=day + timedelta(days=i))
        if i % 2 == 0:
            yield c.ReceivePayment(customer_id=f"C{n}", payment_id=f"PAY-{n}-{i}", currency="EUR", amount_minor=10_000, value_date=day + timedelta(days=i + 20))
            yield c.AllocatePayment(payment_id=f"PAY-{n}-{i}")


def bench_commands(backend: str, url: str, customers: int) -> Result:
    app = ledger_app(url)
    try:
        commands = [cmd for n in range(customers) for cmd in customer_commands(n)]

        def run() -> int:
            for cmd in commands:
                app.ledger.execute(cmd, actor="bench")
            return app.store.max_position()  # every stored event of the run (ids may have gaps on PostgreSQL)

        return timed("(a) one command per transaction (LedgerService)", backend, run)
    finally:
        app.close()


# ---- (b) bulk import ---------------------------------------------------------------------


IMPORT = "(b) arledger import, end to end: read CSV, check every rule, write"
IMPORT_WRITE = "(b') the bulk write alone: built events -> store, one transaction, in-process"


def children_cpu() -> float:
    """CPU time of this process's finished children (the import's writer process)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_import(backend: str, url: str, csv_paths: dict[str, Path]) -> Result:
    """End to end as ``arledger import`` runs it. CPU counts this process and the
    writer process it starts on SQLite (both cores' work, not only this one's)."""
    app = ledger_app(url)
    try:
        started, cpu_started, children_started = time.perf_counter(), time.process_time(), children_cpu()
        report = run_import(app.store, csv_paths, actor="bench")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started + children_cpu() - children_started
        assert report.recorded, report.errors[:5]
        return Result(IMPORT, backend, report.events, seconds, cpu)
    finally:
        app.close()


def bench_import_write(backend: str, url: str, csv_paths: dict[str, Path]) -> Result:
    """The counterpart of (d), which times only ``save`` of aggregates built beforehand:
    the same import's events, planned first (not timed), then written in one
    transaction in this process (:func:`services.importer.store_io.write_events`)."""
    app = ledger_app(url)
    try:
        files = {kind: read_file(kind, path) for kind, path in csv_paths.items()}
        plan = build_plan(app.store, files, actor="bench", recorded_at=utc_now(), correlation_id=uuid.uuid4())
        assert plan.ok, plan.errors[:5]

        def run() -> int:
            write_events(app.store, plan.events)
            return len(plan.events)

        return timed(IMPORT_WRITE, backend, run)
    finally:
        app.close()


# ---- (c), (d) the plain library ----------------------------------------------------------


class PlainAccount(Aggregate):
    """The same ledger as plain eventsourcing: a plain ``Aggregate`` whose events carry
    the fields of ours (dates as ISO strings, which the default transcoder handles)."""

    def __init__(self, customer_id: str, name: str, currency: str, payment_terms_days: int, region: str, industry: str,
                 salesperson: str, country: str, email: str) -> None:
        self.customer_id, self.name, self.currency = customer_id, name, currency
        self.invoices: dict[str, int] = {}
        self.payments: dict[str, int] = {}

    @event("InvoiceIssued")
    def issue_invoice(self, invoice_number: str, currency: str, amount_minor: int, issue_date: str, due_date: str,
                      installments: list[dict[str, object]], description: str) -> None:
        self.invoices[invoice_number] = amount_minor

    @event("PaymentReceived")
    def receive_payment(self, payment_id: str, currency: str, amount_minor: int, value_date: str, method: str, reference: str) -> None:
        self.payments[payment_id] = amount_minor

    @event("PaymentAllocated")
    def allocate_payment(self, payment_id: str, invoice_number: str, installment: int, currency: str, amount_minor: int, value_date: str) -> None:
        self.invoices[invoice_number] -= amount_minor
        self.payments[payment_id] -= amount_minor


def plain_aggregates(customers: int, invoices: int) -> list[PlainAccount]:
    """Per customer the events of the generated import ledger (claims aside):
    registered, ``invoices`` invoices, every second one paid and allocated."""
    accounts = []
    day = date(2025, 1, 1)
    for n in range(customers):
        account = PlainAccount(f"C{n:06d}", f"Customer {n}", "EUR", 30, "EU", "retail", "anna", "DE", f"ap{n}@example.com")
        for i in range(invoices):
            number, amount = f"INV-{n:06d}-{i:04d}", 10_000 + i
            issued, due = (day + timedelta(days=i)).isoformat(), (day + timedelta(days=i + 30)).isoformat()
            account.issue_invoice(number, "EUR", amount, issued, due, [{"number": 1, "due_date": due, "amount_minor": amount}], "")
            if i % 2 == 0:
                paid = (day + timedelta(days=i + 20)).isoformat()
                account.receive_payment(f"PAY-{n:06d}-{i:04d}", "EUR", amount, paid, "transfer", number)
                account.allocate_payment(f"PAY-{n:06d}-{i:04d}", number, 1, "EUR", amount, paid)
        accounts.append(account)
    return accounts


def bench_plain(backend: str, env: dict[str, str], ledger: LedgerSize, per_save: int, path: str) -> Result:
    """Only the saves are timed (creating the aggregates is not), in the library's favour."""
    app: Application = Application(env=env)
    try:
        accounts = plain_aggregates(ledger.customers, ledger.invoices)
        events = sum(a.version for a in accounts)

        def run() -> int:
            for start in range(0, len(accounts), per_save):
                app.save(*accounts[start:start + per_save])
            return events

        return timed(path, backend, run)
    finally:
        app.close()


# ---- the run -----------------------------------------------------------------------------


def median(runs: list[Result]) -> Result:
    ordered = sorted(runs, key=lambda r: r.events_per_second)
    return ordered[len(ordered) // 2]


def measure(sizes: Sizes, backends: tuple[str, ...] = BACKENDS, repeat: int = 1) -> list[Result]:
    """Each path ``repeat`` times, rounds interleaved (so a burst of load elsewhere on
    the machine hits every path alike); the median run of each path is reported."""
    with tempfile.TemporaryDirectory(prefix="arledger-bench-") as tmp:
        workdir = Path(tmp)
        csv_paths = write_ledger_csv(workdir / "csv", sizes.import_ledger)
        rounds = [one_round(sizes, backends, workdir, csv_paths) for _ in range(repeat)]
    return [median([r[i] for r in rounds]) for i in range(len(rounds[0]))]


def one_round(sizes: Sizes, backends: tuple[str, ...], workdir: Path, csv_paths: dict[str, Path]) -> list[Result]:
    results = []
    for backend in backends:
        with fresh_store(backend, workdir) as (url, _):
            results.append(bench_commands(backend, url, sizes.commands_customers))
        with fresh_store(backend, workdir) as (url, _):
            results.append(bench_import(backend, url, csv_paths))
        with fresh_store(backend, workdir) as (url, _):
            results.append(bench_import_write(backend, url, csv_paths))
        with fresh_store(backend, workdir) as (_, env):
            results.append(bench_plain(backend, env, sizes.plain_ledger, 1, "(c) eventsourcing default: one save per aggregate"))
        with fresh_store(backend, workdir) as (_, env):
            results.append(bench_plain(backend, env, sizes.batched_ledger, 100, "(d) eventsourcing best batched save (100 aggregates)"))
    return results


def report(results: list[Result], console: Console) -> dict[str, object]:
    backends = list(dict.fromkeys(r.backend for r in results))
    table = Table(title="ledger write throughput (events/s)")
    table.add_column("path")
    for backend in backends:
        table.add_column(f"{backend} events/s", justify="right")
        table.add_column(f"{backend} events/CPU-s", justify="right")
        table.add_column(f"{backend} events", justify="right")
    by_key = {(r.path, r.backend): r for r in results}
    for path in dict.fromkeys(r.path for r in results):
        cells = []
        for backend in backends:
            r = by_key[path, backend]
            cells += [f"{r.events_per_second:,}", f"{r.events_per_cpu_second:,}", f"{r.events:,}"]
        table.add_row(path, *cells)
    ratios: dict[str, dict[str, float]] = {}
    for backend in backends:
        best = next(r for r in results if r.backend == backend and r.path.startswith("(d)"))
        ratios[backend] = {name: round(by_key[path, backend].events_per_second / best.events_per_second, 2)
                           for name, path in (("import", IMPORT), ("import_write", IMPORT_WRITE))}
    table.add_row("(b) / (d)", *[cell for b in backends for cell in (f"{ratios[b]['import']}x", "", "")])
    table.add_row("(b') / (d)", *[cell for b in backends for cell in (f"{ratios[b]['import_write']}x", "", "")])
    console.print(table)
    return {
        "bench": "ledger_write",
        "results": [{"path": r.path, "backend": r.backend, "events": r.events, "seconds": round(r.seconds, 3), "events_per_second": r.events_per_second,
                     "cpu_seconds": round(r.cpu_seconds, 3), "events_per_cpu_second": r.events_per_cpu_second} for r in results],
        "bulk_over_batched": ratios,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_write", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="only this backend (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; the median is shown (default 3)")
    args = parser.parse_args(argv)
    results = measure(QUICK if args.quick else FULL, tuple(args.backend or BACKENDS), max(1, args.repeat))
    summary = report(results, Console(stderr=False))
    print(msgspec.json.encode(summary).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
