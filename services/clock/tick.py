"""One tick of the clock: record what time caused up to a business date.

1. catch up the read models the decision needs (``ar_items`` for open amounts and
   disputes, ``collections_worklist`` for promises and exemptions), then sync the
   clock's state table from ar_items (set-based, only what changed);
2. select only installments whose next calendar threshold or dunning step is on or
   before the date (indexed ``cal_next`` / ``dun_next``) and walk each one's thresholds
   in order with the pure rules of ``domain.collections`` (a late tick catches up:
   every threshold crossed since, each with its own business date);
3. judge promises to pay whose date (+ tolerance) has come or that were paid;
4. write every new fact in one bulk insert, in business-date order, then move the
   cursors. Facts are aggregates with ids derived from the fact, so a repeated or
   crashed-and-retried tick records nothing twice.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid5

import structlog

from domain import collections_events as ce
from domain.collections import (
    PAUSE, SKIP, CalendarThreshold, Walk, calendar_schedule, days_past_due, judge_promise, never_held, threshold_date, walk,
)
from domain.dunning import DunningPolicy, Step, track_selector
from domain.registry import NAMESPACE, event_id
from projections.db import ViewDatabase
from projections.runner import ProjectionRunner
from services.clock import state
from services.clock.writer import record_facts
from services.ledger import utc_now
from services.persistence import LedgerStore

log = structlog.get_logger("arledger.clock")

ACTOR = "clock"
#: Order of facts on the same business date: calendar, then dunning, then promises.
_ORDER = {ce.InvoiceFellOverdue: 0, ce.AgingBucketEntered: 1, ce.DunningStepDue: 2, ce.PromiseToPayKept: 3, ce.PromiseToPayBroken: 3}


def fact_id(kind: str, *parts: object) -> UUID:
    """Aggregate id of one time-caused fact: the same fact always gets the same id."""
    return uuid5(NAMESPACE, ":".join((kind, *map(str, parts))))


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

    def __init__(self, store: LedgerStore, db: ViewDatabase, policy: DunningPolicy, runner: ProjectionRunner,
                 track_of: Callable[[str], str] | None = None, now: Callable[[], datetime] = utc_now) -> None:
        self.store, self.db, self.policy, self.runner = store, db, policy, runner
        self.track_of = track_of or track_selector(policy)
        self.now = now
        self.calendar = calendar_schedule(policy.aging)

    def setup(self) -> None:
        self.runner.setup()
        state.create(self.db)

    def tick(self, day: date) -> TickReport:
        started = time.perf_counter()
        report = TickReport(day)
        self.runner.catch_up()
        report.synced = state.sync(self.db, self.policy, self.track_of, self.runner.position("ar_items"))
        ctx = _Context(self, day)
        events = ctx.calendar_facts() + ctx.dunning_facts() + ctx.promise_facts()
        report.candidates = ctx.candidates
        events.sort(key=lambda e: (e.business_date, _ORDER[type(e)], getattr(e, "invoice_number", ""), getattr(e, "installment", 0)))
        report.recorded = record_facts(self.store, events)
        ctx.save_cursors()
        report.by_type = dict(Counter(type(e).__name__ for e in events))
        report.seconds = time.perf_counter() - started
        log.info("clock_ticked", **report.as_dict())
        return report


class _Context:
    """Everything one tick reads, and the cursor moves it will write."""

    def __init__(self, clock: Clock, day: date) -> None:
        self.clock, self.day, self.iso = clock, day, day.isoformat()
        self.db, self.policy = clock.db, clock.policy
        tick_id = uuid.uuid4()
        self.meta = {"originator_version": 1, "recorded_at": clock.now(), "actor": ACTOR, "correlation_id": tick_id, "causation_id": tick_id}
        self.candidates = 0
        self.cal_moves: list[tuple[Any, ...]] = []
        self.dun_moves: list[tuple[Any, ...]] = []

    def _fact(self, cls: type, oid: UUID, **fields: Any) -> Any:
        return cls(originator_id=oid, event_id=event_id(oid, 1), **self.meta, **fields)

    # ---- reading -------------------------------------------------------------------------

    def _candidates(self, column: str) -> list[dict[str, Any]]:
        rows = self.db.query(f"{state.SELECT} WHERE {column} IS NOT NULL AND {column} <= ?", (self.iso,))
        self.candidates += len(rows)
        return [dict(zip(state.COLUMNS, r, strict=True)) for r in rows]

    def _movements(self, items: list[dict[str, Any]]) -> dict[tuple[str, int], list[tuple[date, int]]]:
        """Movements of the installments that changed since issue (few): open amount as of any date."""
        invoices = sorted({i["invoice_number"] for i in items if i["touched"]})
        out: dict[tuple[str, int], list[tuple[date, int]]] = defaultdict(list)
        for part in state.chunks(invoices):
            for inv, inst, day, amount in self.db.query(
                "SELECT invoice_number, installment, effective_date, amount_minor FROM ar_movements"
                f" WHERE installment IS NOT NULL AND invoice_number IN ({', '.join('?' * len(part))})", part,
            ):
                out[(inv, int(inst))].append((date.fromisoformat(day), int(amount)))
        return out

    @staticmethod
    def _open_functions(item: dict[str, Any], moves: dict[tuple[str, int], list[tuple[date, int]]]) -> tuple[Callable[[date], int], date | None]:
        issue, amount = date.fromisoformat(item["issue_date"]), int(item["amount_minor"])
        if not item["touched"]:
            return (lambda on: amount if on >= issue else 0), None
        rows = moves.get((item["invoice_number"], int(item["installment"])), [])
        closed_from = max(d for d, _ in rows) if int(item["open_minor"]) <= 0 and rows else None
        return (lambda on: sum(a for d, a in rows if d <= on)), closed_from

    # ---- calendar: overdue and aging buckets -----------------------------------------------

    def calendar_facts(self) -> list[Any]:
        items = self._candidates("cal_next")
        moves = self._movements(items)
        events: list[Any] = []
        for item in items:
            due = date.fromisoformat(item["due_date"])
            dates = [threshold_date(due, t.offset_days) for t in self.clock.calendar]
            open_at, closed_from = self._open_functions(item, moves)
            result = walk(dates, int(item["cal_index"]), self.day, open_at, never_held, closed_from)
            bucket = item["bucket"]
            for index, on, amount in result.fired:
                threshold = self.clock.calendar[index]
                events.append(self._calendar_event(item, threshold, due, on, amount, bucket))
                if threshold.kind == "bucket":
                    bucket = threshold.bucket
            self.cal_moves.append((result.index, _next(dates, result), bucket, item["invoice_number"], item["installment"]))
        return events

    def _calendar_event(self, item: dict[str, Any], t: CalendarThreshold, due: date, on: date, amount: int, previous: str) -> Any:
        inv, inst = item["invoice_number"], int(item["installment"])
        common = {"customer_id": item["customer_id"], "business_date": on, "invoice_number": inv, "installment": inst,
                  "due_date": due, "currency": item["currency"], "open_minor": amount}
        if t.kind == "overdue":
            return self._fact(ce.InvoiceFellOverdue, fact_id("overdue", inv, inst), **common)
        return self._fact(ce.AgingBucketEntered, fact_id("bucket", inv, inst, t.bucket), previous_bucket=previous, bucket=t.bucket,
                          days_past_due=days_past_due(due, on), rule_version=self.policy.aging.version, **common)

    # ---- dunning steps ----------------------------------------------------------------------

    def dunning_facts(self) -> list[Any]:
        items = self._candidates("dun_next")
        if not items:
            return []
        moves = self._movements(items)
        exemptions, promises = self._holds()
        events: list[Any] = []
        for item in items:
            steps = self.policy.track(item["track"]).steps
            due = date.fromisoformat(item["due_date"])
            dates = [threshold_date(due, s.offset_days, int(item["dun_shift"])) for s in steps]
            open_at, closed_from = self._open_functions(item, moves)
            hold = _holder(item, exemptions.get(item["invoice_number"], ()), promises.get(item["customer_id"], ()))
            result = walk(dates, int(item["dun_index"]), self.day, open_at, hold, closed_from)
            events += [self._step_event(item, steps[index], due, on, amount) for index, on, amount in result.fired]
            self.dun_moves.append((result.index, _next(dates, result), item["invoice_number"], item["installment"]))
        return events

    def _step_event(self, item: dict[str, Any], step: Step, due: date, on: date, amount: int) -> Any:
        inv, inst, track = item["invoice_number"], int(item["installment"]), item["track"]
        return self._fact(
            ce.DunningStepDue, fact_id("dunning", inv, inst, track, step.name), customer_id=item["customer_id"], business_date=on,
            invoice_number=inv, installment=inst, due_date=due, track=track, step=step.name, channel=step.channel,
            template=step.template, offset_days=step.offset_days, currency=item["currency"], open_minor=amount,
            policy_version=self.policy.version,
        )

    def _holds(self) -> tuple[dict[str, list[tuple[date, date | None]]], dict[str, list[tuple[frozenset[str], date, date]]]]:
        exemptions: dict[str, list[tuple[date, date | None]]] = defaultdict(list)
        for inv, granted, revoked in self.db.query("SELECT invoice_number, granted_on, revoked_on FROM coll_exemptions"):
            exemptions[inv].append((date.fromisoformat(granted), date.fromisoformat(revoked) if revoked else None))
        promises: dict[str, list[tuple[frozenset[str], date, date]]] = defaultdict(list)
        for customer, invoices, made, expires in self.db.query(
            "SELECT customer_id, invoice_numbers, made_on, expires_on FROM coll_promises",
        ):
            scope = frozenset(x for x in invoices.split(",") if x)
            promises[customer].append((scope, date.fromisoformat(made), date.fromisoformat(expires)))
        return exemptions, promises

    # ---- promises to pay --------------------------------------------------------------------

    def promise_facts(self) -> list[Any]:
        open_promises = self.db.query(
            "SELECT promise_id, customer_id, currency, amount_minor, made_on, promised_date, tolerance_days FROM coll_promises"
            " WHERE status = 'open' AND made_on <= ?", (self.iso,),
        )
        events = []
        for pid, customer, currency, amount, made, promised, tolerance in open_promises:
            payments = [(date.fromisoformat(d), int(a)) for d, a in self.db.query(
                "SELECT effective_date, amount_minor FROM ar_movements WHERE customer_id = ? AND currency = ? AND kind = 'cash_received'"
                " AND effective_date >= ?", (customer, currency, made),
            )]
            verdict = judge_promise(date.fromisoformat(made), date.fromisoformat(promised), int(tolerance), int(amount), payments, self.day)
            if verdict is None:
                continue
            common = {"customer_id": customer, "business_date": verdict.on, "promise_id": pid, "promised_minor": int(amount),
                      "paid_minor": verdict.paid_minor, "currency": currency, "promised_date": date.fromisoformat(promised)}
            if verdict.kept:
                events.append(self._fact(ce.PromiseToPayKept, fact_id("promise", pid), **common))
            else:
                events.append(self._fact(ce.PromiseToPayBroken, fact_id("promise", pid), tolerance_days=int(tolerance), **common))
        return events

    # ---- writing ----------------------------------------------------------------------------

    def save_cursors(self) -> None:
        with self.db.transaction() as tx:
            tx.executemany("UPDATE clock_items SET cal_index = ?, cal_next = ?, bucket = ? WHERE invoice_number = ? AND installment = ?", self.cal_moves)
            tx.executemany("UPDATE clock_items SET dun_index = ?, dun_next = ? WHERE invoice_number = ? AND installment = ?", self.dun_moves)


def _next(dates: list[date], result: Walk) -> str | None:
    if result.parked or result.index >= len(dates):
        return None
    return dates[result.index].isoformat()


def _holder(item: dict[str, Any], exemptions: Any, promises: Any) -> Callable[[date], str | None]:
    disputed = date.fromisoformat(item["disputed_since"]) if item["disputed_since"] else None
    invoice = item["invoice_number"]
    if disputed is None and not exemptions and not promises:
        return never_held

    def hold(on: date) -> str | None:
        if disputed is not None and on >= disputed:
            return PAUSE
        if any(granted <= on and (revoked is None or on < revoked) for granted, revoked in exemptions):
            return SKIP
        if any(made <= on <= expires and (not scope or invoice in scope) for scope, made, expires in promises):
            return SKIP
        return None

    return hold
