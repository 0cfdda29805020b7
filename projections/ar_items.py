"""The receivables ledger as rows: the shared base of aging, KPIs, risk and collections.

Every money event becomes *movements*: signed changes of one installment's open amount
(or of unapplied cash, or of open credits), each stamped with

* ``effective_date`` - the business date from which it counts (the "as of" axis:
  issue date, payment value date, credit-note date, write-off effective date);
* ``position`` and ``recorded_at`` - where and when it entered the stream (the "as
  known at" axis).

So "what was open on D, as known at T (or at stream position P)" is one filtered sum,
and the same rows answer any later question without replaying events. Nothing is ever
updated in place except ``ar_installments.open_minor`` (open as of every date, as known
now), a convenience for current-state queries such as worklists and credit checks.

Movement kinds and signs (the change of the receivable):

==============  =====  ==========================================================
kind            sign   rows
==============  =====  ==========================================================
invoiced        \\+     one per installment, at the invoice's issue date
credited        \\-     credit note lines against an invoice, at its issue date
allocated       \\-     a payment applied, at the payment's value date
unallocated     \\+     a bounced payment's allocations undone, at ``reversed_on``
written_off     \\-     an approved write-off's lines, at its effective date
cash_received   \\+     unapplied cash (``installment`` NULL)
cash_allocated  \\-     unapplied cash consumed by an allocation
cash_reversed   \\-     a bounced payment's remaining unapplied cash
open_credit     \\+     a standalone credit note (``invoice_number`` NULL)
recovered       info   money recovered after write-off; does not reopen the invoice
==============  =====  ==========================================================

Item rows are those with ``installment IS NOT NULL``; they always reconcile:
open = invoiced - credited - allocated - written off (+ reversals).

Besides the money, ``ar_disputes`` (disputes and resolutions) and ``ar_promises`` (the
clock's verdicts on promises to pay, kept or broken, dated by their business date) carry
the same position and recorded time, so the risk profile cuts them like the movements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import msgspec

from domain import collections_events as ce
from domain import events as ev
from projections.db import Tx, ViewDatabase
from projections.runner import Envelope, Projection

ITEM_KINDS = ("invoiced", "credited", "allocated", "unallocated", "written_off")
CASH_KINDS = ("cash_received", "cash_allocated", "cash_reversed")

_TABLES = ("ar_customers", "ar_customer_versions", "ar_installments", "ar_movements", "ar_disputes", "ar_aging_grid",
           "ar_aging_months", "ar_promises")

_DDL = (
    "CREATE TABLE IF NOT EXISTS ar_customers ("
    " customer_id TEXT PRIMARY KEY, name TEXT NOT NULL, currency TEXT NOT NULL, payment_terms_days INTEGER NOT NULL,"
    " region TEXT NOT NULL, industry TEXT NOT NULL, salesperson TEXT NOT NULL, country TEXT NOT NULL,"
    " position BIGINT NOT NULL, recorded_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ar_installments ("
    " invoice_number TEXT NOT NULL, installment INTEGER NOT NULL, customer_id TEXT NOT NULL, currency TEXT NOT NULL,"
    " issue_date TEXT NOT NULL, due_date TEXT NOT NULL, amount_minor BIGINT NOT NULL, open_minor BIGINT NOT NULL,"
    " position BIGINT NOT NULL, recorded_at TEXT NOT NULL, PRIMARY KEY (invoice_number, installment))",
    "CREATE TABLE IF NOT EXISTS ar_movements ("
    " position BIGINT NOT NULL, seq INTEGER NOT NULL, recorded_at TEXT NOT NULL, customer_id TEXT NOT NULL,"
    " currency TEXT NOT NULL, invoice_number TEXT, installment INTEGER, kind TEXT NOT NULL,"
    " effective_date TEXT NOT NULL, amount_minor BIGINT NOT NULL, document TEXT NOT NULL,"
    " PRIMARY KEY (position, seq))",
    "CREATE TABLE IF NOT EXISTS ar_disputes ("
    " position BIGINT PRIMARY KEY, recorded_at TEXT NOT NULL, customer_id TEXT NOT NULL, invoice_number TEXT NOT NULL,"
    " kind TEXT NOT NULL, effective_date TEXT NOT NULL, amount_minor BIGINT, reason TEXT NOT NULL)",
    # Customer attributes as they were at each position: reports by region, industry or
    # salesperson at an earlier position (or known-at time) group as they were then.
    "CREATE TABLE IF NOT EXISTS ar_customer_versions ("
    " customer_id TEXT NOT NULL, position BIGINT NOT NULL, recorded_at TEXT NOT NULL, currency TEXT NOT NULL,"
    " region TEXT NOT NULL, industry TEXT NOT NULL, salesperson TEXT NOT NULL, PRIMARY KEY (customer_id, position))",
    # Movements pre-summed by (currency, kind, due date, effective date), as known now: the
    # aging and KPIs of any business date read a few thousand rows instead of every movement
    # (see projections/aging.py). ``due_date`` is '' for cash and open credits.
    "CREATE TABLE IF NOT EXISTS ar_aging_grid ("
    " currency TEXT NOT NULL, kind TEXT NOT NULL, due_date TEXT NOT NULL, effective_date TEXT NOT NULL,"
    " amount_minor BIGINT NOT NULL, PRIMARY KEY (currency, kind, due_date, effective_date))",
    # The same summed by effective *month*: an aging as of D reads the months before D's
    # month here and only D's own month day by day from the grid (a tenth of the rows).
    "CREATE TABLE IF NOT EXISTS ar_aging_months ("
    " currency TEXT NOT NULL, kind TEXT NOT NULL, due_date TEXT NOT NULL, effective_month TEXT NOT NULL,"
    " amount_minor BIGINT NOT NULL, PRIMARY KEY (currency, kind, due_date, effective_month))",
    # verdicts on promises to pay (the clock's facts): the risk profile counts them at its cut
    "CREATE TABLE IF NOT EXISTS ar_promises ("
    " position BIGINT PRIMARY KEY, recorded_at TEXT NOT NULL, customer_id TEXT NOT NULL, promise_id TEXT NOT NULL,"
    " kind TEXT NOT NULL, effective_date TEXT NOT NULL, promised_minor BIGINT NOT NULL, paid_minor BIGINT NOT NULL)",
)

#: Secondary indexes: created after the tables on set-up, and only once a rebuild has
#: replayed the stream (cheaper than maintaining them row by row).
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ar_installments_customer ON ar_installments (customer_id)",
    # partial: only the worklist reads by due date, and only open items (``open_minor > 0``,
    # the same term in its query); settled installments, most of a mature ledger, stay out
    "CREATE INDEX IF NOT EXISTS ar_installments_open_due ON ar_installments (due_date) WHERE open_minor > 0",
    # partial: cash rows (a payment's receipt and each use of it; 2 of 5 movements in the benchmark)
    # have no invoice, and every query by invoice names one (``invoice_number = ?``/``IN``
    # or a join on it, which SQLite takes as implying ``IS NOT NULL``)
    "CREATE INDEX IF NOT EXISTS ar_movements_invoice ON ar_movements (invoice_number, installment)"
    " WHERE invoice_number IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ar_movements_customer ON ar_movements (customer_id)",
    "CREATE INDEX IF NOT EXISTS ar_disputes_invoice ON ar_disputes (invoice_number)",
    "CREATE INDEX IF NOT EXISTS ar_promises_customer ON ar_promises (customer_id)",
    "CREATE INDEX IF NOT EXISTS ar_aging_grid_day ON ar_aging_grid (effective_date, currency, kind, due_date, amount_minor)",
)

_CLUSTERED = ("CREATE TABLE IF NOT EXISTS ar_movements", "CREATE TABLE IF NOT EXISTS ar_aging_grid",
              "CREATE TABLE IF NOT EXISTS ar_aging_months")

# Grid rows are summed per batch in Python and added with one upsert each; a movement
# against an installment takes its due date from the batch or from ar_installments
# (never from a range of positions: Kafka workers interleave customers' batches).
_UPSERT_GRID = (
    "INSERT INTO ar_aging_grid (currency, kind, due_date, effective_date, amount_minor) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (currency, kind, due_date, effective_date) DO UPDATE SET amount_minor = ar_aging_grid.amount_minor + excluded.amount_minor"
)
_UPSERT_MONTHS = (
    "INSERT INTO ar_aging_months (currency, kind, due_date, effective_month, amount_minor) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (currency, kind, due_date, effective_month) DO UPDATE SET amount_minor = ar_aging_months.amount_minor + excluded.amount_minor"
)
_INSERT_MOVEMENTS = (
    "INSERT INTO ar_movements (position, seq, recorded_at, customer_id, currency, invoice_number, installment, kind,"
    " effective_date, amount_minor, document) VALUES"
)
_INSERT_INSTALLMENTS = (
    "INSERT INTO ar_installments (invoice_number, installment, customer_id, currency, issue_date, due_date,"
    " amount_minor, open_minor, position, recorded_at) VALUES"
)
_INSTALLMENT_WIDTH, _MOVEMENT_WIDTH = 10, 11  # values a row in the flat lists of ``_Batch``
_UPSERT_CUSTOMER = (
    "INSERT INTO ar_customers (customer_id, name, currency, payment_terms_days, region, industry, salesperson, country,"
    " position, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name, currency = excluded.currency,"
    " payment_terms_days = excluded.payment_terms_days, region = excluded.region, industry = excluded.industry,"
    " salesperson = excluded.salesperson, country = excluded.country, position = excluded.position,"
    " recorded_at = excluded.recorded_at"
)


class _Batch:
    """Rows of one batch, collected in memory and written with a few bulk statements per table."""

    def __init__(self, grid: dict[tuple[str, str, str, str], int] | None = None) -> None:
        # The two big tables' rows are kept flat, one value after another (``_MOVEMENT_WIDTH``
        # and ``_INSTALLMENT_WIDTH`` values a row), as the multi-row INSERT binds them: no
        # tuple per row built here and taken apart again (a rebuild writes millions).
        self.movements: list[Any] = []
        self.installments: list[Any] = []
        self._last_position, self._seq = -1, 0  # numbering of ``move``'s rows
        self.disputes: list[tuple[Any, ...]] = []
        self.promises: list[tuple[Any, ...]] = []
        self.customers: dict[str, list[Any]] = {}
        self.customer_versions: list[tuple[Any, ...]] = []
        self.open_deltas: dict[tuple[str, int], int] = defaultdict(int)
        self.grid: dict[tuple[str, str, str, str], int] = defaultdict(int) if grid is None else grid
        #: installments issued in this batch -> their index in ``installments`` (their due
        #: date and, for payments in the same batch, the row to set the open amount on)
        self.fresh: dict[tuple[str, int], int] = {}
        self.due_dates: dict[tuple[str, int], str] = {}  # due dates of earlier installments, read by ``place``
        self.unplaced: list[tuple[str, str, str, int, str, int]] = []  # item movements awaiting their due date

    def move(self, env: Envelope, e: Any, kind: str, day: date | str, amount: int, document: str,
             invoice: str | None = None, installment: int | None = None, due: str = "") -> None:
        # seq numbers the movements of one event, so rows never depend on batch boundaries
        # (an event's rows come all from ``move`` or all from one inline handler)
        seq = self._seq + 1 if self._last_position == env.position else 0
        self._last_position, self._seq = env.position, seq
        effective = _day(day)
        self.movements.extend((
            env.position, seq, _iso(e.recorded_at), e.customer_id, e.currency, invoice, installment,
            kind, effective, amount, document,
        ))
        if installment is None or kind == "invoiced":
            self.grid[(e.currency, kind, due, effective)] += amount
        else:
            self.item_moved(e.currency, kind, invoice, installment, effective, amount)  # type: ignore[arg-type]

    def item_moved(self, currency: str, kind: str, invoice: str, installment: int, effective: str, amount: int) -> None:
        """An installment's open amount changes. Issued in this batch: its row and due date
        are at hand. Otherwise: an UPDATE of its row, and its due date read by :meth:`place`.
        (``_payment_allocated`` inlines this: a rebuild allocates millions of times.)"""
        i = self.fresh.get((invoice, installment))
        if i is None:
            self.open_deltas[(invoice, installment)] += amount
            self.unplaced.append((currency, kind, invoice, installment, effective, amount))
        else:
            installments = self.installments
            installments[i + 7] += amount  # open_minor
            self.grid[(currency, kind, installments[i + 5], effective)] += amount

    def place(self, tx: Tx) -> None:
        """Add the unplaced item movements to the grid under their installment's due date."""
        due_dates, grid = self.due_dates, self.grid
        missing = sorted({inv for _, _, inv, _, _, _ in self.unplaced})
        for i in range(0, len(missing), 500):
            chunk = missing[i:i + 500]
            rows = tx.execute(
                f"SELECT invoice_number, installment, due_date FROM ar_installments WHERE invoice_number IN ({', '.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            due_dates.update(((inv, int(inst)), due) for inv, inst, due in rows)
        for currency, kind, inv, inst, effective, amount in self.unplaced:
            grid[(currency, kind, due_dates[(inv, inst)], effective)] += amount

    def customer_version(self, row: list[Any]) -> None:
        self.customer_versions.append((row[0], row[8], row[9], row[2], row[4], row[5], row[6]))

    def lines(self, env: Envelope, e: Any, kind: str, day: date, sign: int, document: str,
              lines: Sequence[ev.AllocationLine]) -> None:
        for line in lines:
            self.move(env, e, kind, day, sign * line.amount_minor, document, line.invoice_number, line.installment)


def _iso(moment: datetime | str) -> str:
    """``recorded_at`` as stored in the views (``datetime.isoformat``). A light view
    carries the stored JSON text, where msgspec writes UTC as ``Z``, otherwise alike."""
    if isinstance(moment, str):
        return moment[:-1] + "+00:00" if moment[-1] == "Z" else moment
    return moment.isoformat()


def _day(day: date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()


# Light views of the busiest events: only the fields used here, dates left as their ISO
# text (no parsing, no formatting back). The runner decodes these instead of the events.
class _InstallmentView(msgspec.Struct):
    number: int
    due_date: str
    amount_minor: int


class _InvoiceView(msgspec.Struct):
    recorded_at: str
    customer_id: str
    invoice_number: str
    currency: str
    issue_date: str
    installments: list[_InstallmentView]


class _PaymentReceivedView(msgspec.Struct):
    recorded_at: str
    customer_id: str
    payment_id: str
    currency: str
    amount_minor: int
    value_date: str


class _PaymentAllocatedView(msgspec.Struct):
    recorded_at: str
    customer_id: str
    payment_id: str
    invoice_number: str
    installment: int
    currency: str
    amount_minor: int
    value_date: str


_VIEWS: dict[type, type] = {
    ev.InvoiceIssued: _InvoiceView, ev.PaymentReceived: _PaymentReceivedView, ev.PaymentAllocated: _PaymentAllocatedView,
}


def _invoice(b: _Batch, env: Envelope, e: ev.InvoiceIssued) -> None:
    # the busiest events build their rows inline (same rows as ``_Batch.move``): a rebuild
    # replays millions of them
    position, recorded, customer, currency, number = env.position, e.recorded_at, e.customer_id, e.currency, e.invoice_number
    recorded = recorded[:-1] + "+00:00" if recorded.__class__ is str and recorded[-1] == "Z" else _iso(recorded)  # _iso inlined
    issued = e.issue_date
    if issued.__class__ is not str:
        issued = issued.isoformat()
    grid, fresh, installments, movements, seq = b.grid, b.fresh, b.installments, b.movements, 0
    for inst in e.installments:
        n, due, amount = inst.number, inst.due_date, inst.amount_minor
        if due.__class__ is not str:
            due = due.isoformat()
        fresh[(number, n)] = len(installments)
        installments.extend((number, n, customer, currency, issued, due, amount, amount, position, recorded))
        movements.extend((position, seq, recorded, customer, currency, number, n, "invoiced", issued, amount, number))
        grid[(currency, "invoiced", due, issued)] += amount
        seq += 1


def _credit_note(b: _Batch, env: Envelope, e: ev.CreditNoteIssued) -> None:
    if e.invoice_number is None:
        b.move(env, e, "open_credit", e.issue_date, e.amount_minor, e.credit_note_number)
    else:
        b.lines(env, e, "credited", e.issue_date, -1, e.credit_note_number, e.applied)


def _payment_received(b: _Batch, env: Envelope, e: ev.PaymentReceived) -> None:
    day, recorded = e.value_date, e.recorded_at
    if day.__class__ is not str:
        day = day.isoformat()
    recorded = recorded[:-1] + "+00:00" if recorded.__class__ is str and recorded[-1] == "Z" else _iso(recorded)
    b.movements.extend((env.position, 0, recorded, e.customer_id, e.currency, None, None, "cash_received", day,
                        e.amount_minor, e.payment_id))
    b.grid[(e.currency, "cash_received", "", day)] += e.amount_minor


def _payment_allocated(b: _Batch, env: Envelope, e: ev.PaymentAllocated) -> None:
    position, recorded, customer, currency, day, amount = env.position, e.recorded_at, e.customer_id, e.currency, e.value_date, -e.amount_minor
    recorded = recorded[:-1] + "+00:00" if recorded.__class__ is str and recorded[-1] == "Z" else _iso(recorded)
    if day.__class__ is not str:
        day = day.isoformat()
    invoice, installment = e.invoice_number, e.installment
    b.movements.extend((position, 0, recorded, customer, currency, invoice, installment, "allocated", day, amount, e.payment_id,
                        position, 1, recorded, customer, currency, None, None, "cash_allocated", day, amount, e.payment_id))
    grid = b.grid
    grid[(currency, "cash_allocated", "", day)] += amount
    i = b.fresh.get((invoice, installment))  # b.item_moved, inlined
    if i is None:
        b.open_deltas[(invoice, installment)] += amount
        b.unplaced.append((currency, "allocated", invoice, installment, day, amount))
    else:
        installments = b.installments
        installments[i + 7] += amount
        grid[(currency, "allocated", installments[i + 5], day)] += amount


def _payment_reversed(b: _Batch, env: Envelope, e: ev.PaymentReversed) -> None:
    b.lines(env, e, "unallocated", e.reversed_on, +1, e.payment_id, e.unallocated)
    remaining = e.amount_minor - sum(line.amount_minor for line in e.unallocated)
    if remaining:
        b.move(env, e, "cash_reversed", e.reversed_on, -remaining, e.payment_id)


def _write_off(b: _Batch, env: Envelope, e: ev.WriteOffApproved) -> None:
    b.lines(env, e, "written_off", e.effective_date, -1, e.write_off_id, e.applied)


def _recovered(b: _Batch, env: Envelope, e: ev.WrittenOffAmountRecovered) -> None:
    b.move(env, e, "recovered", e.received_on, e.amount_minor, e.reference or e.invoice_number, e.invoice_number)


def _disputed(b: _Batch, env: Envelope, e: ev.InvoiceDisputed) -> None:
    b.disputes.append((env.position, _iso(e.recorded_at), e.customer_id, e.invoice_number, "disputed",
                       e.disputed_on.isoformat(), e.amount_minor, e.reason))


def _dispute_resolved(b: _Batch, env: Envelope, e: ev.InvoiceDisputeResolved) -> None:
    b.disputes.append((env.position, _iso(e.recorded_at), e.customer_id, e.invoice_number, "resolved",
                       e.resolved_on.isoformat(), None, e.resolution))


def _promise_verdict(b: _Batch, env: Envelope, e: ce.PromiseToPayKept | ce.PromiseToPayBroken) -> None:
    kind = "kept" if isinstance(e, ce.PromiseToPayKept) else "broken"
    b.promises.append((env.position, _iso(e.recorded_at), e.customer_id, e.promise_id, kind, e.business_date.isoformat(),
                       e.promised_minor, e.paid_minor))


def _registered(b: _Batch, env: Envelope, e: ev.CustomerRegistered) -> None:
    row = b.customers[e.customer_id] = [e.customer_id, e.name, e.currency, e.payment_terms_days, e.region, e.industry,
                                        e.salesperson, e.country, env.position, _iso(e.recorded_at)]
    b.customer_version(row)


_CUSTOMER_COLUMNS = {"name": 1, "region": 4, "industry": 5, "salesperson": 6, "country": 7}


def _customer_changed(tx: Tx, b: _Batch, env: Envelope, e: ev.CustomerUpdated | ev.PaymentTermsSet) -> None:
    row = b.customers.get(e.customer_id)
    if row is None:
        found = tx.execute(
            "SELECT customer_id, name, currency, payment_terms_days, region, industry, salesperson, country, position,"
            " recorded_at FROM ar_customers WHERE customer_id = ?", (e.customer_id,),
        ).fetchone()
        if found is None:  # pragma: no cover - an account always starts with CustomerRegistered
            return
        row = b.customers[e.customer_id] = list(found)
    if isinstance(e, ev.PaymentTermsSet):
        row[3] = e.payment_terms_days
    else:
        for field, index in _CUSTOMER_COLUMNS.items():
            value = getattr(e, field)
            if value is not None:
                row[index] = value
    row[8], row[9] = env.position, _iso(e.recorded_at)
    b.customer_version(row)


_HANDLERS = {
    ev.InvoiceIssued: _invoice,
    ev.CreditNoteIssued: _credit_note,
    ev.PaymentReceived: _payment_received,
    ev.PaymentAllocated: _payment_allocated,
    ev.PaymentReversed: _payment_reversed,
    ev.WriteOffApproved: _write_off,
    ev.WrittenOffAmountRecovered: _recovered,
    ev.InvoiceDisputed: _disputed,
    ev.InvoiceDisputeResolved: _dispute_resolved,
    ev.CustomerRegistered: _registered,
    ce.PromiseToPayKept: _promise_verdict,
    ce.PromiseToPayBroken: _promise_verdict,
}
_HANDLERS.update({view: _HANDLERS[cls] for cls, view in _VIEWS.items()})


class ArItemsProjection(Projection):
    name = "ar_items"
    version = 4  # 2: aging grid and customer versions; 3: ar_promises; 4: partial indexes by invoice and by open due date
    #: Rows depend only on each customer's own public events, in order: Kafka workers may build it.
    per_customer = True
    #: The heaviest view to rebuild (3.5M events: ~20 CPU-s against ~15 for the audit
    #: trail, the next): alone on its worker, the light collections views go with the trail.
    rebuild_weight = 1.3
    event_types = (*_HANDLERS, ev.CustomerUpdated, ev.PaymentTermsSet)
    indexes = _INDEXES
    decode_as = _VIEWS

    def create(self, tx: Tx) -> None:
        for ddl in _DDL:
            if tx.db.dialect == "sqlite" and ddl.startswith(_CLUSTERED):
                ddl += " WITHOUT ROWID"  # rows stored in key order: appends and range scans read no second b-tree
            tx.execute(ddl)

    def drop(self, tx: Tx) -> None:
        for table in _TABLES:
            tx.execute(f"DROP TABLE IF EXISTS {table}")

    #: aging-grid sums kept across batches while rebuilding into ``_bulk_db`` (only there:
    #: a live transaction on another database always writes its own batch's sums)
    _bulk_grid: dict[tuple[str, str, str, str], int] | None = None
    _bulk_db: ViewDatabase | None = None

    def begin_rebuild(self, tx: Tx) -> None:
        # the aging grid is a few thousand sums: a rebuild keeps them in memory and writes
        # each row once at the end, instead of upserting the same rows batch after batch
        self._bulk_grid, self._bulk_db = defaultdict(int), tx.db

    def finish_rebuild(self, tx: Tx) -> None:
        grid, self._bulk_grid, self._bulk_db = self._bulk_grid, None, None
        if grid:
            _write_grid(tx, grid, fresh=True)

    def handle(self, tx: Tx, batch: Sequence[Envelope]) -> None:
        bulk = self._bulk_grid if self._bulk_db is tx.db else None
        rows = _Batch(bulk)
        handlers = _HANDLERS
        for env in batch:
            event = env.event
            handler = handlers.get(type(event))
            if handler is not None:
                handler(rows, env, event)
            elif isinstance(event, ev.CustomerUpdated | ev.PaymentTermsSet):
                _customer_changed(tx, rows, env, event)
        # (movements of installments issued in this batch are already in their rows: ``item_moved``)
        deltas, installments = rows.open_deltas, rows.installments
        tx.executemany(_UPSERT_CUSTOMER, list(map(tuple, rows.customers.values())))
        tx.insert_flat(_INSERT_INSTALLMENTS, installments, _INSTALLMENT_WIDTH)
        tx.insert_flat(_INSERT_MOVEMENTS, rows.movements, _MOVEMENT_WIDTH)
        tx.insert_many(
            "INSERT INTO ar_customer_versions (customer_id, position, recorded_at, currency, region, industry, salesperson)"
            " VALUES", rows.customer_versions,
        )
        tx.executemany(
            "INSERT INTO ar_disputes (position, recorded_at, customer_id, invoice_number, kind, effective_date, amount_minor,"
            " reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows.disputes,
        )
        tx.executemany(
            "INSERT INTO ar_promises (position, recorded_at, customer_id, promise_id, kind, effective_date, promised_minor,"
            " paid_minor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows.promises,
        )
        tx.executemany(
            "UPDATE ar_installments SET open_minor = open_minor + ? WHERE invoice_number = ? AND installment = ?",
            [(delta, inv, inst) for (inv, inst), delta in deltas.items() if delta],
        )
        rows.place(tx)
        if bulk is None:
            _write_grid(tx, rows.grid)


def _write_grid(tx: Tx, grid: dict[tuple[str, str, str, str], int], *, fresh: bool = False) -> None:
    """Add summed movements to the aging grid and its monthly roll-up (``fresh``: into
    the empty tables of a rebuild, where every key is new and a plain insert does)."""
    months: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for (currency, kind, due, effective), amount in grid.items():
        months[(currency, kind, due, effective[:7])] += amount
    if fresh:
        tx.insert_many("INSERT INTO ar_aging_grid (currency, kind, due_date, effective_date, amount_minor) VALUES",
                       sorted((*key, amount) for key, amount in grid.items()))
        tx.insert_many("INSERT INTO ar_aging_months (currency, kind, due_date, effective_month, amount_minor) VALUES",
                       sorted((*key, amount) for key, amount in months.items()))
        return
    tx.executemany(_UPSERT_GRID, [(*key, amount) for key, amount in grid.items()])
    tx.executemany(_UPSERT_MONTHS, [(*key, amount) for key, amount in months.items()])


# ---- queries shared by the reports ------------------------------------------------------


def open_items(db: ViewDatabase, as_of: date, *, position: int | None = None, known_at: datetime | None = None,
               customer_id: str | None = None) -> list[tuple[str, str, str, int, str, str, int]]:
    """Installments open on ``as_of`` (movements effective by then), counting only what
    was recorded at or before ``known_at`` and at or before stream ``position``."""
    where = ["m.installment IS NOT NULL", "m.effective_date <= ?"]
    params: list[Any] = [as_of.isoformat()]
    if position is not None:
        where.append("m.position <= ?")
        params.append(position)
    if known_at is not None:
        where.append("m.recorded_at <= ?")
        params.append(known_at.isoformat())
    if customer_id is not None:
        where.append("m.customer_id = ?")
        params.append(customer_id)
    sql = (
        "SELECT i.customer_id, i.currency, i.invoice_number, i.installment, i.issue_date, i.due_date, SUM(m.amount_minor)"
        " FROM ar_movements m JOIN ar_installments i ON i.invoice_number = m.invoice_number AND i.installment = m.installment"
        f" WHERE {' AND '.join(where)}"
        " GROUP BY i.customer_id, i.currency, i.invoice_number, i.installment, i.issue_date, i.due_date"
        " HAVING SUM(m.amount_minor) > 0 ORDER BY i.due_date, i.invoice_number, i.installment"
    )
    return [(r[0], r[1], r[2], int(r[3]), r[4], r[5], int(r[6])) for r in db.query(sql, params)]
