"""The clock's state table: one row per installment with two cursors.

``clock_items`` is the pre-filter that keeps a tick cheap: each row says which calendar
threshold (overdue, bucket edges) and which dunning step of its track come next, and
on which date (``cal_next`` / ``dun_next``, indexed). A tick reads only rows whose next
date is on or before its business date, so a repeated tick reads nothing and writes
nothing. A cursor is *parked* (next date NULL, index kept) while nothing can fire:
the installment is settled (calendar and dunning) or disputed (dunning); a change
recorded later (a bounced payment, a resolved dispute) un-parks it.

The table is kept in step with ``ar_items`` (which owns the money arithmetic) by
:func:`sync`, in set-based reads of the rows ``ar_items`` added after ``clock_sync``'s
position; it is internal to the clock and rebuilt by replaying ar_items (the facts it
already recorded are refused again by the store, so a rebuild never duplicates events).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date
from typing import Any

from domain.collections import calendar_schedule, threshold_date
from domain.dunning import DunningPolicy
from projections.db import Tx, ViewDatabase

CHUNK = 900  # bound on "IN (...)" lists: well under SQLite's variable limit

DDL = (
    "CREATE TABLE IF NOT EXISTS clock_items ("
    " id INTEGER PRIMARY KEY, invoice_number TEXT NOT NULL, installment INTEGER NOT NULL, customer_id TEXT NOT NULL, currency TEXT NOT NULL,"
    " issue_date TEXT NOT NULL, due_date TEXT NOT NULL, amount_minor BIGINT NOT NULL, open_minor BIGINT NOT NULL,"
    " touched INTEGER NOT NULL, disputed_since TEXT, track TEXT NOT NULL, bucket TEXT NOT NULL,"
    " cal_index INTEGER NOT NULL, cal_next TEXT, dun_index INTEGER NOT NULL, dun_next TEXT, dun_shift INTEGER NOT NULL,"
    " UNIQUE (invoice_number, installment))",
    "CREATE INDEX IF NOT EXISTS clock_items_cal_next ON clock_items (cal_next)",
    "CREATE INDEX IF NOT EXISTS clock_items_dun_next ON clock_items (dun_next)",
    "CREATE TABLE IF NOT EXISTS clock_sync (name TEXT PRIMARY KEY, position BIGINT NOT NULL)",
)

COLUMNS = ("id", "invoice_number", "installment", "customer_id", "currency", "issue_date", "due_date", "amount_minor", "open_minor",
           "touched", "disputed_since", "track", "bucket", "cal_index", "cal_next", "dun_index", "dun_next", "dun_shift")
SELECT = f"SELECT {', '.join(COLUMNS)} FROM clock_items"
INSERT = (f"INSERT INTO clock_items ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
          " ON CONFLICT (invoice_number, installment) DO NOTHING")


def create(db: ViewDatabase) -> None:
    with db.transaction() as tx:
        for ddl in DDL:
            tx.execute(ddl)
        tx.execute("INSERT INTO clock_sync (name, position) VALUES ('ar_items', 0) ON CONFLICT (name) DO NOTHING")


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def rows_for_invoices(tx: Tx, invoices: Iterable[str]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for part in chunks(sorted(set(invoices))):
        out += tx.execute(f"{SELECT} WHERE invoice_number IN ({', '.join('?' * len(part))})", part).fetchall()
    return out


def first_cursors(policy: DunningPolicy, track: str, due: date) -> tuple[str | None, str | None]:
    cal = calendar_schedule(policy.aging)
    steps = policy.track(track).steps
    return threshold_date(due, cal[0].offset_days).isoformat(), threshold_date(due, steps[0].offset_days).isoformat()


def new_row(policy: DunningPolicy, row_id: int, track: str, invoice: str, number: int, customer: str, currency: str,
            issue: str, due: str, amount: int) -> tuple[Any, ...]:
    cal_next, dun_next = first_cursors(policy, track, date.fromisoformat(due))
    return (row_id, invoice, number, customer, currency, issue, due, amount, amount, 0, None, track, "current", 0, cal_next, 0, dun_next, 0)


def sync(db: ViewDatabase, policy: DunningPolicy, track_of: Callable[[str], str], head: int) -> int:
    """Apply what ar_items learnt since the last sync up to position ``head``; returns
    how many ar_items rows were read."""
    with db.transaction() as tx:
        last = int(tx.execute("SELECT position FROM clock_sync WHERE name = 'ar_items'").fetchone()[0])
        if head <= last:
            return 0
        read = _new_installments(tx, policy, track_of, last, head)
        read += _open_changes(tx, policy, last, head)
        read += _disputes(tx, policy, last, head)
        tx.execute("UPDATE clock_sync SET position = ? WHERE name = 'ar_items'", (head,))
    return read


def _new_installments(tx: Tx, policy: DunningPolicy, track_of: Callable[[str], str], last: int, head: int) -> int:
    found = tx.execute(
        "SELECT invoice_number, installment, customer_id, currency, issue_date, due_date, amount_minor FROM ar_installments"
        " WHERE position > ? AND position <= ?", (last, head),
    ).fetchall()
    tracks: dict[str, str] = {}
    rows = []
    next_id = int(tx.execute("SELECT COALESCE(MAX(id), 0) FROM clock_items").fetchone()[0]) + 1
    for offset, (invoice, number, customer, currency, issue, due, amount) in enumerate(found):
        track = tracks.get(customer)
        if track is None:
            track = tracks[customer] = track_of(customer)
        rows.append(new_row(policy, next_id + offset, track, invoice, int(number), customer, currency, issue, due, int(amount)))
    tx.executemany(INSERT, rows)
    return len(rows)


def _open_changes(tx: Tx, policy: DunningPolicy, last: int, head: int) -> int:
    deltas = tx.execute(
        "SELECT invoice_number, installment, SUM(amount_minor) FROM ar_movements WHERE position > ? AND position <= ?"
        " AND installment IS NOT NULL AND kind <> 'invoiced' GROUP BY invoice_number, installment", (last, head),
    ).fetchall()
    if not deltas:
        return 0
    change = {(inv, int(n)): int(d) for inv, n, d in deltas}
    updates, unparked = [], []
    for row in rows_for_invoices(tx, {inv for inv, _ in change}):
        item = dict(zip(COLUMNS, row, strict=True))
        key = (item["invoice_number"], int(item["installment"]))
        if key not in change:
            continue
        opened = int(item["open_minor"]) + change[key]
        updates.append((change[key], *key))
        if int(item["open_minor"]) == 0 < opened:  # reopened (a bounced payment): un-park
            unparked.append((*resume_dates(policy, item), *key))
    tx.executemany("UPDATE clock_items SET open_minor = open_minor + ?, touched = 1 WHERE invoice_number = ? AND installment = ?", updates)
    tx.executemany("UPDATE clock_items SET cal_next = ?, dun_next = ? WHERE invoice_number = ? AND installment = ?", unparked)
    return len(deltas)


def resume_dates(policy: DunningPolicy, item: dict[str, Any]) -> tuple[str | None, str | None]:
    """The dates of the current cursors (parked or not), or None where a cursor is done."""
    due = date.fromisoformat(item["due_date"])
    cal = calendar_schedule(policy.aging)
    steps = policy.track(item["track"]).steps
    shift = int(item["dun_shift"])
    cal_next = threshold_date(due, cal[item["cal_index"]].offset_days).isoformat() if item["cal_index"] < len(cal) else None
    dun_next = threshold_date(due, steps[item["dun_index"]].offset_days, shift).isoformat() if item["dun_index"] < len(steps) else None
    return cal_next, dun_next


def _disputes(tx: Tx, policy: DunningPolicy, last: int, head: int) -> int:
    """A dispute pauses the dunning clock of the invoice's installments; its resolution
    shifts the remaining steps by the days the dispute lasted and un-parks the cursor."""
    found = tx.execute(
        "SELECT invoice_number, kind, effective_date FROM ar_disputes WHERE position > ? AND position <= ? ORDER BY position",
        (last, head),
    ).fetchall()
    if not found:
        return 0
    by_invoice: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for invoice, kind, day in found:
        by_invoice[invoice].append((kind, day))
    updates = []
    for row in rows_for_invoices(tx, by_invoice):
        item = dict(zip(COLUMNS, row, strict=True))
        for kind, day in by_invoice[item["invoice_number"]]:
            _apply_dispute(policy, item, kind, day)
        updates.append((item["disputed_since"], item["dun_shift"], item["dun_next"], item["invoice_number"], item["installment"]))
    tx.executemany("UPDATE clock_items SET disputed_since = ?, dun_shift = ?, dun_next = ? WHERE invoice_number = ? AND installment = ?", updates)
    return len(found)


def _apply_dispute(policy: DunningPolicy, item: dict[str, Any], kind: str, day: str) -> None:
    if kind == "disputed":
        item["disputed_since"] = day
        return
    since = item["disputed_since"]
    if since is None:
        return
    paused = (date.fromisoformat(day) - date.fromisoformat(since)).days
    _, current = resume_dates(policy, item)
    item["disputed_since"] = None
    if paused > 0:
        item["dun_shift"] = int(item["dun_shift"]) + paused
    if current is not None and current >= since:  # the step was (or would have been) paused: it moves with the clock
        item["dun_next"] = resume_dates(policy, item)[1]
    elif item["dun_next"] is None and current is not None:
        item["dun_next"] = current
