"""Collections read model: who works which customer, what was due, done and promised.

Tables (all rebuilt from the stream):

* ``coll_customers`` - the collector of each customer (``CollectorAssigned``; customers
  without one are spread round-robin by :func:`collector_of` at query time);
* ``coll_steps`` - every DunningStepDue (the "next actions due" and the results base);
* ``coll_contacts`` - every CollectionContactLogged;
* ``coll_promises`` - promises to pay and their verdict, and ``coll_exemptions`` -
  dunning exemptions per invoice with their validity dates (projection
  ``collections_holds``, which the clock reads);
* ``coll_cases`` - legal / agency cases; ``coll_costs`` - collection costs.

Money (open amounts, what was recovered after a step) comes from ``ar_items``, joined
at query time, so this view never duplicates the money arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain import collections_events as ce
from domain.collections import promise_expires_on
from projections.db import Tx
from projections.runner import Envelope, Projection

_DDL = (
    "CREATE TABLE IF NOT EXISTS coll_customers (customer_id TEXT PRIMARY KEY, collector TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS coll_steps ("
    " event_id TEXT PRIMARY KEY, position BIGINT NOT NULL, customer_id TEXT NOT NULL, invoice_number TEXT NOT NULL,"
    " installment INTEGER NOT NULL, track TEXT NOT NULL, step TEXT NOT NULL, channel TEXT NOT NULL, template TEXT NOT NULL,"
    " business_date TEXT NOT NULL, currency TEXT NOT NULL, open_minor BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS coll_steps_customer ON coll_steps (customer_id)",
    "CREATE INDEX IF NOT EXISTS coll_steps_invoice ON coll_steps (invoice_number, installment)",
    "CREATE TABLE IF NOT EXISTS coll_contacts ("
    " contact_id TEXT PRIMARY KEY, position BIGINT NOT NULL, customer_id TEXT NOT NULL, contacted_on TEXT NOT NULL,"
    " channel TEXT NOT NULL, outcome TEXT NOT NULL, collector TEXT NOT NULL, contact_person TEXT NOT NULL,"
    " next_action_date TEXT, notes TEXT NOT NULL, dunning_event_id TEXT)",
    "CREATE INDEX IF NOT EXISTS coll_contacts_customer ON coll_contacts (customer_id)",
    "CREATE TABLE IF NOT EXISTS coll_cases ("
    " case_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, kind TEXT NOT NULL, party TEXT NOT NULL, opened_on TEXT NOT NULL,"
    " closed_on TEXT, outcome TEXT)",
    "CREATE TABLE IF NOT EXISTS coll_costs ("
    " cost_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, incurred_on TEXT NOT NULL, currency TEXT NOT NULL,"
    " amount_minor BIGINT NOT NULL, kind TEXT NOT NULL, case_id TEXT, collector TEXT NOT NULL, channel TEXT)",
)
_HOLDS_DDL = (
    "CREATE TABLE IF NOT EXISTS coll_promises ("
    " promise_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, currency TEXT NOT NULL, amount_minor BIGINT NOT NULL,"
    " made_on TEXT NOT NULL, promised_date TEXT NOT NULL, tolerance_days INTEGER NOT NULL, expires_on TEXT NOT NULL,"
    " invoice_numbers TEXT NOT NULL, collector TEXT NOT NULL, status TEXT NOT NULL, decided_on TEXT, paid_minor BIGINT)",
    "CREATE TABLE IF NOT EXISTS coll_exemptions ("
    " position BIGINT PRIMARY KEY, customer_id TEXT NOT NULL, invoice_number TEXT NOT NULL, granted_on TEXT NOT NULL,"
    " revoked_on TEXT, reason TEXT NOT NULL)",
)
_TABLES = ("coll_customers", "coll_steps", "coll_contacts", "coll_cases", "coll_costs")
_HOLD_TABLES = ("coll_promises", "coll_exemptions")


def _iso(day) -> str | None:  # type: ignore[no-untyped-def]
    return day.isoformat() if day is not None else None


def _step(tx: Tx, env: Envelope, e: ce.DunningStepDue) -> None:
    tx.execute(
        "INSERT INTO coll_steps (event_id, position, customer_id, invoice_number, installment, track, step, channel, template,"
        " business_date, currency, open_minor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
        (str(e.event_id), env.position, e.customer_id, e.invoice_number, e.installment, e.track, e.step, e.channel, e.template,
         e.business_date.isoformat(), e.currency, e.open_minor),
    )


def _contact(tx: Tx, env: Envelope, e: ce.CollectionContactLogged) -> None:
    tx.execute(
        "INSERT INTO coll_contacts (contact_id, position, customer_id, contacted_on, channel, outcome, collector, contact_person,"
        " next_action_date, notes, dunning_event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (e.contact_id, env.position, e.customer_id, e.contacted_on.isoformat(), e.channel, e.outcome, e.collector,
         e.contact_person, _iso(e.next_action_date), e.notes, e.dunning_event_id),
    )


def _promise(tx: Tx, env: Envelope, e: ce.PromiseToPayMade) -> None:
    tx.execute(
        "INSERT INTO coll_promises (promise_id, customer_id, currency, amount_minor, made_on, promised_date, tolerance_days,"
        " expires_on, invoice_numbers, collector, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open')",
        (e.promise_id, e.customer_id, e.currency, e.amount_minor, e.made_on.isoformat(), e.promised_date.isoformat(),
         e.tolerance_days, promise_expires_on(e.promised_date, e.tolerance_days).isoformat(), ",".join(e.invoice_numbers), e.collector),
    )


def _verdict(tx: Tx, env: Envelope, e: ce.PromiseToPayKept | ce.PromiseToPayBroken) -> None:
    status = "kept" if isinstance(e, ce.PromiseToPayKept) else "broken"
    tx.execute("UPDATE coll_promises SET status = ?, decided_on = ?, paid_minor = ? WHERE promise_id = ?",
               (status, e.business_date.isoformat(), e.paid_minor, e.promise_id))


def _exempted(tx: Tx, env: Envelope, e: ce.DunningExemptionGranted) -> None:
    tx.execute("INSERT INTO coll_exemptions (position, customer_id, invoice_number, granted_on, revoked_on, reason) VALUES (?, ?, ?, ?, NULL, ?)",
               (env.position, e.customer_id, e.invoice_number, e.granted_on.isoformat(), e.reason))


def _revoked(tx: Tx, env: Envelope, e: ce.DunningExemptionRevoked) -> None:
    tx.execute("UPDATE coll_exemptions SET revoked_on = ? WHERE invoice_number = ? AND revoked_on IS NULL",
               (e.revoked_on.isoformat(), e.invoice_number))


def _assigned(tx: Tx, env: Envelope, e: ce.CollectorAssigned) -> None:
    tx.execute("INSERT INTO coll_customers (customer_id, collector) VALUES (?, ?) ON CONFLICT (customer_id) DO UPDATE SET collector = excluded.collector",
               (e.customer_id, e.collector))


def _case(tx: Tx, env: Envelope, e: ce.EscalatedToLegal | ce.AssignedToAgency) -> None:
    if isinstance(e, ce.EscalatedToLegal):
        kind, party, opened = "legal", e.law_firm, e.escalated_on
    else:
        kind, party, opened = "agency", e.agency, e.assigned_on
    tx.execute("INSERT INTO coll_cases (case_id, customer_id, kind, party, opened_on) VALUES (?, ?, ?, ?, ?)",
               (e.case_id, e.customer_id, kind, party, opened.isoformat()))


def _closed(tx: Tx, env: Envelope, e: ce.CollectionCaseClosed) -> None:
    tx.execute("UPDATE coll_cases SET closed_on = ?, outcome = ? WHERE case_id = ?", (e.closed_on.isoformat(), e.outcome, e.case_id))


def _cost(tx: Tx, env: Envelope, e: ce.CollectionCostIncurred) -> None:
    tx.execute(
        "INSERT INTO coll_costs (cost_id, customer_id, incurred_on, currency, amount_minor, kind, case_id, collector, channel)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (e.cost_id, e.customer_id, e.incurred_on.isoformat(), e.currency, e.amount_minor, e.kind, e.case_id, e.collector, e.channel),
    )


_HOLD_HANDLERS = {
    ce.PromiseToPayMade: _promise,
    ce.PromiseToPayKept: _verdict,
    ce.PromiseToPayBroken: _verdict,
    ce.DunningExemptionGranted: _exempted,
    ce.DunningExemptionRevoked: _revoked,
}

_HANDLERS = {
    ce.DunningStepDue: _step,
    ce.CollectionContactLogged: _contact,
    ce.CollectorAssigned: _assigned,
    ce.EscalatedToLegal: _case,
    ce.AssignedToAgency: _case,
    ce.CollectionCaseClosed: _closed,
    ce.CollectionCostIncurred: _cost,
}


class _TableProjection(Projection):
    #: collections events are a small share of the stream: a rebuild worker takes these
    #: views alongside a heavy one
    rebuild_weight = 0.1
    ddl: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    handlers: dict[type, Any] = {}

    def create(self, tx: Tx) -> None:
        for ddl in self.ddl:
            tx.execute(ddl)

    def drop(self, tx: Tx) -> None:
        for table in self.tables:
            tx.execute(f"DROP TABLE IF EXISTS {table}")

    def handle(self, tx: Tx, batch: Sequence[Envelope]) -> None:
        for env in batch:
            self.handlers[type(env.event)](tx, env, env.event)


class CollectionsHoldsProjection(_TableProjection):
    """Promises to pay and dunning exemptions: what the clock reads before deciding.
    Kept apart from the worklist so that catching it up never reads the clock's own
    DunningStepDue facts."""

    name = "collections_holds"
    event_types = tuple(_HOLD_HANDLERS)
    ddl, tables, handlers = _HOLDS_DDL, _HOLD_TABLES, _HOLD_HANDLERS


class CollectionsWorklistProjection(_TableProjection):
    name = "collections_worklist"
    event_types = tuple(_HANDLERS)
    ddl, tables, handlers = _DDL, _TABLES, _HANDLERS
