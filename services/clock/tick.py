"""One tick of the clock: record what time caused up to a business date.

1. catch up the read models the decision needs (``ar_items`` for open amounts and
   disputes, ``collections_holds`` for promises and exemptions), then sync the
   clock's state table from ar_items (set-based, only what changed);
2. select only installments whose next calendar threshold or dunning step is on or
   before the date (indexed ``cal_next`` / ``dun_next``) and walk each one's thresholds
   in order with the pure rules of ``domain.collections`` (a late tick catches up:
   every threshold crossed since, each with its own business date);
3. judge open promises to pay;
4. write every new fact in one bulk insert, in business-date order, then move the
   cursors. Facts are aggregates with ids derived from the fact, so a repeated or
   crashed-and-retried tick records nothing twice.

Dates are handled as day numbers (``date.toordinal()``) in the hot loop.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

import structlog

from domain import collections_events as ce
from domain.collections import PAUSE, SKIP, calendar_schedule, judge_promise, never_held, walk
from domain.dunning import DunningPolicy, track_selector
from domain.registry import NAMESPACE
from projections.ar_items import ArItemsProjection
from projections.collections_worklist import CollectionsHoldsProjection
from projections.db import ViewDatabase
from projections.runner import PositionMoved
from services.clock import state
from services.clock.ids import fact_ids
from services.clock.runner import TopicRunner
from services.clock.writer import SQLITE_CACHE_KIB, record_facts
from services.ledger import utc_now
from services.persistence import LedgerStore

log = structlog.get_logger("arledger.clock")

ACTOR = "clock"
#: Order of facts on the same business date: calendar, then dunning, then promises.
_ORDER = {ce.InvoiceFellOverdue: 0, ce.AgingBucketEntered: 1, ce.DunningStepDue: 2, ce.PromiseToPayKept: 3, ce.PromiseToPayBroken: 3}

#: Builds a time-caused fact: ``make(EventClass, "kind:key", **fields)``; the name fixes its ids.
FactMaker = Callable[..., Any]
#: A time rule of another context (e.g. credit management's CreditReviewDue): given the view
#: database, the business date and a fact maker, the facts time caused up to that date. The
#: clock writes them with its own, in the same bulk insert; their names make them idempotent.
TimeRule = Callable[[ViewDatabase, date, FactMaker], list[Any]]
#: A sweep of another context that records on the customer accounts themselves (credit
#: management's CreditReviewDue: the account remembers its last review, which is what makes
#: it idempotent). Run after the tick's facts are written and the views caught up again, so
#: it sees what this tick recorded (a promise broken today); returns counts by event type.
TickSweep = Callable[[ViewDatabase, date], dict[str, int]]
(ID, INVOICE, INSTALLMENT, CUSTOMER, CURRENCY, ISSUE, DUE, AMOUNT, OPEN, TOUCHED, DISPUTED, TRACK, BUCKET,
 CAL_INDEX, CAL_NEXT, DUN_INDEX, DUN_NEXT, DUN_SHIFT) = range(len(state.COLUMNS))
_day = date.fromordinal
_iso = date.fromisoformat


_NAMESPACE = NAMESPACE.bytes


def fact_id(name: str) -> tuple[UUID, UUID]:
    """Ids of one time-caused fact (aggregate, event) from its name
    ``kind:invoice:installment[:threshold]``: the same fact always gets the same ids."""
    return fact_ids(_NAMESPACE, name)


@dataclass
class TickReport:
    business_date: date
    recorded: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    synced: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"business_date": self.business_date.isoformat(), "recorded": self.recorded, "by_type": self.by_type,
                "candidates": self.candidates, "synced_rows": self.synced, "seconds": round(self.seconds, 3)}


class Clock:
    """Decides and records time-caused facts. One clock process per store."""

    def __init__(self, store: LedgerStore, db: ViewDatabase, policy: DunningPolicy,
                 track_of: Callable[[str], str] | None = None, now: Callable[[], datetime] = utc_now,
                 rules: tuple[TimeRule, ...] = (), sweeps: tuple[TickSweep, ...] = ()) -> None:
        self.store, self.db, self.policy = store, db, policy
        self.sweeps = sweeps
        self.runner = TopicRunner(store, db, [ArItemsProjection(), CollectionsHoldsProjection()])
        self.track_of = track_of or track_selector(policy)
        self.now = now
        self.rules = rules
        self.calendar = calendar_schedule(policy.aging)
        self.cal_offsets = [t.offset_days for t in self.calendar]
        self.steps = {name: track.steps for name, track in policy.tracks.items()}
        self.step_offsets = {name: [s.offset_days for s in steps] for name, steps in self.steps.items()}

    def setup(self) -> None:
        self.runner.setup()
        state.create(self.db)
        if self.db.dialect == "sqlite":  # a tick moves cursors all over a million-row table: keep its pages in memory
            self.db.conn.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")

    def tick(self, day: date) -> TickReport:
        started = time.perf_counter()
        report = TickReport(day)
        self._catch_up()
        report.synced = state.sync(self.db, self.policy, self.track_of, self.runner.position("ar_items"))
        ctx = _Tick(self, day)
        events = ctx.calendar_facts() + ctx.dunning_facts() + ctx.promise_facts()
        for rule in self.rules:
            events += rule(self.db, day, ctx.make)
        report.candidates = ctx.candidates
        events.sort(key=lambda e: (e.business_date, _ORDER.get(type(e), 9), getattr(e, "invoice_number", ""), getattr(e, "installment", 0)))
        recorded = record_facts(self.store, events)
        ctx.save_cursors()
        counts = Counter(s.topic.rsplit(":", 1)[-1] for s in recorded)
        if self.sweeps:
            self._catch_up()
            for sweep in self.sweeps:
                counts.update(sweep(self.db, day))
        report.recorded = sum(counts.values())
        report.by_type = dict(counts)
        report.seconds = time.perf_counter() - started
        log.info("clock_ticked", **report.as_dict())
        return report


    def _catch_up(self, attempts: int = 50) -> None:
        """Bring the views the decision reads to the head. A projection worker may be
        advancing the same views; its commits win the compare-and-set, so retry."""
        for attempt in range(1, attempts + 1):
            try:
                self.runner.catch_up()
                return
            except PositionMoved:
                if attempt == attempts:
                    raise
                time.sleep(0.05)


class _Tick:
    """Everything one tick reads, and the cursor moves it will write."""

    def __init__(self, clock: Clock, day: date) -> None:
        self.clock, self.day, self.today = clock, day, day.toordinal()
        self.db, self.policy = clock.db, clock.policy
        tick_id = uuid.uuid4()
        self.meta = {"originator_version": 1, "recorded_at": clock.now(), "actor": ACTOR, "correlation_id": tick_id, "causation_id": tick_id}
        self.candidates = 0
        self.cal_moves: list[tuple[Any, ...]] = []
        self.dun_moves: list[tuple[Any, ...]] = []

    def _fact(self, cls: type, ids: tuple[UUID, UUID], **fields: Any) -> Any:
        return cls(originator_id=ids[0], event_id=ids[1], **self.meta, **fields)

    def make(self, cls: type, name: str, **fields: Any) -> Any:
        """The :data:`FactMaker` given to other contexts' time rules."""
        return self._fact(cls, fact_id(name), **fields)

    # ---- reading -------------------------------------------------------------------------

    def _candidates(self, column: str) -> list[tuple[Any, ...]]:
        rows = self.db.query(f"{state.SELECT} WHERE {column} IS NOT NULL AND {column} <= ?", (self.day.isoformat(),))
        self.candidates += len(rows)
        return rows

    def _movements(self, items: list[tuple[Any, ...]]) -> dict[tuple[str, int], list[tuple[int, int]]]:
        """Movements of the installments that changed since issue (few): open amount as of any date."""
        invoices = sorted({i[INVOICE] for i in items if i[TOUCHED]})
        out: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
        for part in state.chunks(invoices):
            for inv, inst, day, amount in self.db.query(
                "SELECT invoice_number, installment, effective_date, amount_minor FROM ar_movements"
                f" WHERE installment IS NOT NULL AND invoice_number IN ({', '.join('?' * len(part))})", part,
            ):
                out[(inv, int(inst))].append((_iso(day).toordinal(), int(amount)))
        return out

    @staticmethod
    def _open_at(item: tuple[Any, ...], moves: dict[tuple[str, int], list[tuple[int, int]]]) -> tuple[Callable[[int], int], int | None]:
        """(open amount on a day, the day from which it stays settled or None while open)."""
        if not item[TOUCHED]:
            issue, amount = _iso(item[ISSUE]).toordinal(), int(item[AMOUNT])
            return (lambda on: amount if on >= issue else 0), None
        rows = moves.get((item[INVOICE], int(item[INSTALLMENT])), [])
        closed_from = max(d for d, _ in rows) if int(item[OPEN]) <= 0 and rows else None
        return (lambda on: sum(a for d, a in rows if d <= on)), closed_from

    # ---- calendar: overdue and aging buckets -----------------------------------------------

    def calendar_facts(self) -> list[Any]:
        items = self._candidates("cal_next")
        moves = self._movements(items)
        calendar, offsets, events = self.clock.calendar, self.clock.cal_offsets, []
        rule_version = self.policy.aging.version
        for item in items:
            due = _iso(item[DUE])
            due_day = due.toordinal()
            days = [due_day + o for o in offsets]
            open_at, closed_from = self._open_at(item, moves)
            result = walk(days, int(item[CAL_INDEX]), self.today, open_at, never_held, closed_from)
            bucket = item[BUCKET]
            for index, on, amount in result.fired:
                t = calendar[index]
                common = {"customer_id": item[CUSTOMER], "business_date": _day(on), "invoice_number": item[INVOICE],
                          "installment": item[INSTALLMENT], "due_date": due, "currency": item[CURRENCY], "open_minor": amount}
                if t.kind == "overdue":
                    events.append(self._fact(ce.InvoiceFellOverdue, fact_id(f"overdue:{item[INVOICE]}:{item[INSTALLMENT]}"), **common))
                else:
                    events.append(self._fact(
                        ce.AgingBucketEntered, fact_id(f"bucket:{item[INVOICE]}:{item[INSTALLMENT]}:{t.bucket}"), previous_bucket=bucket,
                        bucket=t.bucket, days_past_due=on - due_day, rule_version=rule_version, **common,
                    ))
                    bucket = t.bucket
            self.cal_moves.append((result.index, _next(days, result), bucket, item[ID]))
        return events

    # ---- dunning steps ----------------------------------------------------------------------

    def dunning_facts(self) -> list[Any]:
        items = self._candidates("dun_next")
        if not items:
            return []
        moves = self._movements(items)
        exemptions, promises = self._holds()
        events: list[Any] = []
        for item in items:
            track = item[TRACK]
            steps = self.clock.steps[track]
            due = _iso(item[DUE])
            base = due.toordinal() + int(item[DUN_SHIFT])
            days = [base + o for o in self.clock.step_offsets[track]]
            open_at, closed_from = self._open_at(item, moves)
            hold = _holder(item, exemptions.get(item[INVOICE], ()), promises.get(item[CUSTOMER], ()))
            result = walk(days, int(item[DUN_INDEX]), self.today, open_at, hold, closed_from)
            for index, on, amount in result.fired:
                step = steps[index]
                events.append(self._fact(
                    ce.DunningStepDue, fact_id(f"dunning:{item[INVOICE]}:{item[INSTALLMENT]}:{track}:{step.name}"),
                    customer_id=item[CUSTOMER], business_date=_day(on), invoice_number=item[INVOICE], installment=item[INSTALLMENT],
                    due_date=due, track=track, step=step.name, channel=step.channel, template=step.template,
                    offset_days=step.offset_days, currency=item[CURRENCY], open_minor=amount, policy_version=self.policy.version,
                    action=step.action,
                ))
            self.dun_moves.append((result.index, _next(days, result), item[ID]))
        return events

    def _holds(self) -> tuple[dict[str, list[tuple[int, int | None]]], dict[str, list[tuple[frozenset[str], int, int]]]]:
        exemptions: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
        for inv, granted, revoked in self.db.query("SELECT invoice_number, granted_on, revoked_on FROM coll_exemptions"):
            exemptions[inv].append((_iso(granted).toordinal(), _iso(revoked).toordinal() if revoked else None))
        promises: dict[str, list[tuple[frozenset[str], int, int]]] = defaultdict(list)
        for customer, invoices, made, expires in self.db.query("SELECT customer_id, invoice_numbers, made_on, expires_on FROM coll_promises"):
            scope = frozenset(x for x in invoices.split(",") if x)
            promises[customer].append((scope, _iso(made).toordinal(), _iso(expires).toordinal()))
        return exemptions, promises

    # ---- promises to pay --------------------------------------------------------------------

    def promise_facts(self) -> list[Any]:
        open_promises = self.db.query(
            "SELECT promise_id, customer_id, currency, amount_minor, made_on, promised_date, tolerance_days FROM coll_promises"
            " WHERE status = 'open' AND made_on <= ?", (self.day.isoformat(),),
        )
        events = []
        for pid, customer, currency, amount, made, promised, tolerance in open_promises:
            payments = [(_iso(d), int(a)) for d, a in self.db.query(
                "SELECT effective_date, amount_minor FROM ar_movements WHERE customer_id = ? AND currency = ? AND kind = 'cash_received'"
                " AND effective_date >= ?", (customer, currency, made),
            )]
            verdict = judge_promise(_iso(made), _iso(promised), int(tolerance), int(amount), payments, self.day)
            if verdict is None:
                continue
            common = {"customer_id": customer, "business_date": verdict.on, "promise_id": pid, "promised_minor": int(amount),
                      "paid_minor": verdict.paid_minor, "currency": currency, "promised_date": _iso(promised)}
            if verdict.kept:
                events.append(self._fact(ce.PromiseToPayKept, fact_id(f"promise:{pid}"), **common))
            else:
                events.append(self._fact(ce.PromiseToPayBroken, fact_id(f"promise:{pid}"), tolerance_days=int(tolerance), **common))
        return events

    # ---- writing ----------------------------------------------------------------------------

    def save_cursors(self) -> None:
        with self.db.transaction() as tx:
            tx.executemany("UPDATE clock_items SET cal_index = ?, cal_next = ?, bucket = ? WHERE id = ?", self.cal_moves)
            tx.executemany("UPDATE clock_items SET dun_index = ?, dun_next = ? WHERE id = ?", self.dun_moves)


def _next(days: list[int], result: Any) -> str | None:
    if result.parked or result.index >= len(days):
        return None
    return _day(days[result.index]).isoformat()


def _holder(item: tuple[Any, ...], exemptions: Any, promises: Any) -> Callable[[int], str | None]:
    disputed = _iso(item[DISPUTED]).toordinal() if item[DISPUTED] else None
    invoice = item[INVOICE]
    if disputed is None and not exemptions and not promises:
        return never_held

    def hold(on: int) -> str | None:
        if disputed is not None and on >= disputed:
            return PAUSE
        if any(granted <= on and (revoked is None or on < revoked) for granted, revoked in exemptions):
            return SKIP
        if any(made <= on <= expires and (not scope or invoice in scope) for scope, made, expires in promises):
            return SKIP
        return None

    return hold
