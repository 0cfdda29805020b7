"""How fast is a customer risk profile on a large ledger?

Fills the ``ar_items`` tables (created by the projection itself, so schema and indexes
are the real ones) with a generated book: N customers, 4-12 invoices each, some with
installments, paid early, late, partially, bounced, written off or still open, a few
disputes. Rows are written directly, not replayed from events: this measures the risk
queries and the pure profile, not the projection runner (bench of issue 3 covers that).

Prints: milliseconds per single-customer profile (as known now, with 6-month trend; and
as known at a recorded time), and the streamed ``--all`` pass in profiles per second with
the process's peak resident memory.

    python -m bench.risk_profile              # 100,000 customers
    python -m bench.risk_profile --quick      # 10,000 customers
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from projections.ar_items import ArItemsProjection
from projections.db import ViewDatabase
from projections.risk import all_profiles, customer_profile, resolve_cut
from projections.runner import POSITIONS_DDL

START = date(2025, 1, 1)
AS_OF = date(2026, 6, 30)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.position = 0
        self.inst: list[tuple] = []
        self.moves: list[tuple] = []
        self.disputes: list[tuple] = []

    def stamp(self) -> tuple[int, str]:
        self.position += 1
        return self.position, (T0 + timedelta(seconds=self.position)).isoformat()

    def move(self, cid: str, inv: str | None, n: int | None, kind: str, day: date, amount: int) -> None:
        pos, at = self.stamp()
        self.moves.append((pos, 0, at, cid, "EUR", inv, n, kind, day.isoformat(), amount, inv or "doc"))

    def customer(self, i: int) -> tuple:
        rnd, cid = self.rnd, f"C{i:06d}"
        lateness = rnd.choice((-5, 0, 3, 10, 25, 60))
        for k in range(rnd.randint(4, 12)):
            inv, issue = f"{cid}-{k}", START + timedelta(days=rnd.randint(0, 540))
            parts = rnd.choice((1, 1, 1, 2, 3))
            pos, at = self.stamp()
            for n in range(1, parts + 1):
                due, amount = issue + timedelta(days=30 * n), rnd.randint(1_000, 500_000)
                self.inst.append((inv, n, cid, "EUR", issue.isoformat(), due.isoformat(), amount, amount, pos, at))
                self.moves.append((pos, n, at, cid, "EUR", inv, n, "invoiced", issue.isoformat(), amount, inv))
                self.pay(cid, inv, n, due, amount, lateness)
            if rnd.random() < 0.03:
                pos, at = self.stamp()
                self.disputes.append((pos, at, cid, inv, "disputed", (issue + timedelta(days=10)).isoformat(), None, "damaged"))
        if rnd.random() < 0.3:
            self.move(cid, None, None, "cash_received", START + timedelta(days=rnd.randint(0, 540)), rnd.randint(100, 50_000))
        pos, at = self.stamp()
        return (cid, f"Customer {i}", "EUR", 30, "north", "retail", "sam", "DE", pos, at)

    def pay(self, cid: str, inv: str, n: int, due: date, amount: int, lateness: int) -> None:
        rnd = self.rnd
        day = due + timedelta(days=lateness + rnd.randint(-5, 15))
        fate = rnd.random()
        if fate < 0.15 or day > AS_OF:
            return  # still open
        if fate < 0.25:  # partial
            self.move(cid, inv, n, "allocated", day, -(amount // 2))
            return
        if fate < 0.28:  # bounced, then paid again
            self.move(cid, inv, n, "allocated", day, -amount)
            self.move(cid, inv, n, "unallocated", day + timedelta(days=10), amount)
            day += timedelta(days=20)
        if fate < 0.30:
            self.move(cid, inv, n, "written_off", day, -amount)
            return
        self.move(cid, inv, n, "allocated", day, -amount)


def generate(db: ViewDatabase, customers: int, seed: int = 7) -> int:
    gen = _Gen(seed)
    with db.transaction() as tx:
        tx.execute(POSITIONS_DDL)
        ArItemsProjection().create(tx)
    step = 5_000
    for lo in range(0, customers, step):
        rows = [gen.customer(i) for i in range(lo, min(lo + step, customers))]
        with db.transaction() as tx:
            tx.executemany("INSERT INTO ar_customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            tx.executemany("INSERT INTO ar_installments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", gen.inst)
            tx.executemany("INSERT INTO ar_movements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", gen.moves)
            tx.executemany("INSERT INTO ar_disputes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", gen.disputes)
        gen.inst, gen.moves, gen.disputes = [], [], []
    with db.transaction() as tx:
        tx.execute("INSERT INTO projection_positions (name, position, version, updated_at) VALUES (?, ?, ?, ?)",
                   ("ar_items", gen.position, ArItemsProjection.version, T0.isoformat()))
    return gen.position


def _timed_ms(fn, samples: list[str]) -> list[float]:
    out = []
    for cid in samples:
        started = time.perf_counter()
        fn(cid)
        out.append((time.perf_counter() - started) * 1000)
    return out


def _summary(label: str, ms: list[float]) -> None:
    ms = sorted(ms)
    print(f"{label:<46} p50 {statistics.median(ms):6.2f} ms   p95 {ms[int(len(ms) * 0.95)]:6.2f} ms   n={len(ms)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10,000 customers")
    parser.add_argument("--database-url", help="an empty store, e.g. postgresql://...?schema=fresh (default: a temporary SQLite file)")
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args(argv)
    customers = 10_000 if args.quick else args.customers
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'risk.sqlite'}"
        db = ViewDatabase(url)
        started = time.perf_counter()
        events = generate(db, customers)
        counts = {t: db.query(f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("ar_installments", "ar_movements", "ar_disputes")}
        print(f"generated {customers:,} customers, {counts['ar_installments']:,} installments, {counts['ar_movements']:,} movements,"
              f" {counts['ar_disputes']:,} disputes ({events:,} positions) in {time.perf_counter() - started:.1f} s on {db.dialect}")
        samples = [f"C{i:06d}" for i in random.Random(1).sample(range(customers), min(args.samples, customers))]
        now = resolve_cut(db, AS_OF)
        _summary("one profile, as known now (6-month trend)", _timed_ms(lambda c: customer_profile(db, c, now), samples))
        _summary("one profile incl. resolving the cut", _timed_ms(lambda c: customer_profile(db, c, resolve_cut(db, AS_OF)), samples))
        then = T0 + timedelta(seconds=events // 2)
        _summary("one profile as known at a time, incl. its cut", _timed_ms(
            lambda c: customer_profile(db, c, resolve_cut(db, AS_OF, known_at=then, customer_id=c)), samples))
        started = time.perf_counter()
        total = sum(1 for _ in all_profiles(db, now))
        elapsed = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"all profiles (streamed, no trend): {total:,} customers in {elapsed:.1f} s = {total / elapsed:,.0f} profiles/s;"
              f" peak RSS {peak:,.0f} MB")
        db.close()


if __name__ == "__main__":
    main()
