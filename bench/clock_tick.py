"""Clock tick over N open installments on SQLite (issue 5 target: 1M in < 10 s, a
repeated tick in < 2 s).

Set-up (not timed): an SQLite store whose clock state table holds N open invoices with
due dates spread over 150 days around the business date D, each with its cursors where
daily ticks up to D-1 left them (bulk-inserted rows; 2% partly paid, with ar_items
movements, so the tick also takes its exact "open as of the threshold date" path).
Timed: ``Clock.tick(D)`` - every fact crossed on D, written in one bulk insert - and the
same tick again, which must record nothing.

    python -m bench.clock_tick            # 1,000,000 invoices
    python -m bench.clock_tick --quick    # 100,000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from domain.collections import calendar_schedule, threshold_date
from projections.db import ViewDatabase
from services.bootstrap import bootstrap
from services.clock import state
from services.clock.wiring import build_clock
from services.settings import Settings

DAY = date(2026, 6, 1)
SPREAD_DAYS = 150
TRACKS = ("gentle", "standard", "strict")


def _cursor(dates: list[date], before: date) -> tuple[int, str | None]:
    index = sum(1 for d in dates if d <= before)
    return index, (dates[index].isoformat() if index < len(dates) else None)


def populate(clock, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    policy, cal = clock.policy, calendar_schedule(clock.policy.aging)
    yesterday = DAY - timedelta(days=1)
    rows, movements = [], []
    now = datetime.now(UTC).isoformat()
    for n in range(count):
        due = DAY + timedelta(days=rng.randrange(-SPREAD_DAYS + 30, 30))
        track = TRACKS[n % 3]
        amount = rng.randrange(1_000, 500_000)
        touched = n % 50 == 0
        open_minor = amount // 2 if touched else amount
        cal_dates = [threshold_date(due, t.offset_days) for t in cal]
        dun_dates = [threshold_date(due, s.offset_days) for s in policy.track(track).steps]
        cal_index, cal_next = _cursor(cal_dates, yesterday)
        dun_index, dun_next = _cursor(dun_dates, yesterday)
        bucket = next((t.bucket for t in reversed(cal[:cal_index]) if t.kind == "bucket"), "current")
        invoice = f"INV-{n:08d}"
        issue = (due - timedelta(days=30)).isoformat()
        rows.append((n + 1, invoice, 1, f"C{n % 50_000:05d}", "EUR", issue, due.isoformat(), amount, open_minor, int(touched), None,
                     track, bucket, cal_index, cal_next, dun_index, dun_next, 0))
        if touched:
            movements.append((n * 2 + 1, 0, now, rows[-1][3], "EUR", invoice, 1, "invoiced", issue, amount, invoice))
            movements.append((n * 2 + 2, 0, now, rows[-1][3], "EUR", invoice, 1, "allocated", (due - timedelta(days=40)).isoformat(), -(amount - open_minor), "P"))
    db = clock.db
    with db.transaction() as tx:
        tx.executemany(state.INSERT, rows)
        tx.executemany(
            "INSERT INTO ar_movements (position, seq, recorded_at, customer_id, currency, invoice_number, installment, kind,"
            " effective_date, amount_minor, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", movements,
        )
    db.query("ANALYZE")  # planner statistics, as a long-running SQLite store would have


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 invoices instead of 1,000,000")
    parser.add_argument("--count", type=int, help="number of open invoices")
    args, _ = parser.parse_known_args(argv)  # bench.run_all passes every module the same flags
    count = args.count or (100_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.sqlite'}"
        app = bootstrap(Settings.from_env({}, database_url=url, log_level="WARNING"), configure_logs=True)
        db = ViewDatabase(url)
        clock = build_clock(app, db)
        started = time.perf_counter()
        populate(clock, count)
        print(f"set-up: {count:,} open invoices in the clock state table in {time.perf_counter() - started:.1f} s")
        cpu = time.process_time()
        first = clock.tick(DAY)
        cpu, used = time.process_time(), time.process_time() - cpu
        print(f"tick {DAY}: {first.seconds:.2f} s wall ({used:.2f} s CPU), {first.candidates:,} candidate cursors,"
              f" {first.recorded:,} facts recorded {first.by_type}")
        second = clock.tick(DAY)
        cpu, used = time.process_time(), time.process_time() - cpu
        print(f"repeated tick {DAY}: {second.seconds:.3f} s wall ({used:.3f} s CPU), {second.recorded} facts recorded")
        third = clock.tick(DAY + timedelta(days=1))
        used = time.process_time() - cpu
        print(f"next day's tick: {third.seconds:.2f} s wall ({used:.2f} s CPU), {third.recorded:,} facts recorded")
        db.close()
        app.close()


if __name__ == "__main__":
    main()
