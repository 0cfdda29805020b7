"""Collector worklists and collection results, read from the collections views and
``ar_items`` (current open amounts, allocations).

A customer's collector is the one assigned (``AssignCollector``); otherwise customers
are spread over the configured collectors (``ARLEDGER_COLLECTORS``) by a stable hash
of the customer id - a round-robin that never reshuffles when a customer is added -
or "unassigned" when none are configured.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from domain.collections_results import ResultRow, StepOutcome, attribute, priority, ratio
from projections.db import ViewDatabase

UNASSIGNED = "unassigned"


def collector_of(customer_id: str, assigned: dict[str, str], collectors: Sequence[str]) -> str:
    if customer_id in assigned:
        return assigned[customer_id]
    if not collectors:
        return UNASSIGNED
    return collectors[zlib.crc32(customer_id.encode()) % len(collectors)]


def _assigned(db: ViewDatabase) -> dict[str, str]:
    return dict(db.query("SELECT customer_id, collector FROM coll_customers"))


def worklist(db: ViewDatabase, as_of: date, collectors: Sequence[str], collector: str | None = None,
             grade_of: Callable[[str], tuple[str | None, int]] | None = None) -> list[dict[str, Any]]:
    """Customers with overdue open items, highest priority first, with the actions due.
    ``grade_of`` (credit management): customer_id -> (grade, rank, 0 = best)."""
    iso = as_of.isoformat()
    assigned = _assigned(db)
    overdue = db.query(
        "SELECT i.customer_id, c.name, i.currency, SUM(i.open_minor), MIN(i.due_date), COUNT(*) FROM ar_installments i"
        " JOIN ar_customers c ON c.customer_id = i.customer_id WHERE i.open_minor > 0 AND i.due_date < ?"
        " GROUP BY i.customer_id, c.name, i.currency", (iso,),
    )
    broken = dict(db.query("SELECT customer_id, COUNT(*) FROM coll_promises WHERE status = 'broken' GROUP BY customer_id"))
    rows = []
    for customer, name, currency, amount, oldest_due, items in overdue:
        who = collector_of(customer, assigned, collectors)
        if collector is not None and who != collector:
            continue
        dpd = (as_of - date.fromisoformat(oldest_due)).days
        grade, rank = grade_of(customer) if grade_of else (None, 0)
        rows.append({
            "customer_id": customer, "name": name, "collector": who, "currency": currency, "overdue_minor": int(amount),
            "overdue_items": int(items), "days_past_due": dpd, "broken_promises": int(broken.get(customer, 0)),
            "grade": grade, "priority": priority(int(amount), dpd, int(broken.get(customer, 0)), rank),
        })
    rows.sort(key=lambda r: (-r["priority"], -r["days_past_due"], r["customer_id"]))
    _next_actions(db, rows, iso)
    return rows


def _next_actions(db: ViewDatabase, rows: list[dict[str, Any]], iso: str) -> None:
    """Steps due and not yet answered by a contact, the collector's own next action
    date, and open promises - for the customers on the list."""
    wanted = {r["customer_id"] for r in rows}
    steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for customer, inv, inst, step, channel, template, day, event_id in db.query(
        "SELECT s.customer_id, s.invoice_number, s.installment, s.step, s.channel, s.template, s.business_date, s.event_id"
        " FROM coll_steps s JOIN ar_installments i ON i.invoice_number = s.invoice_number AND i.installment = s.installment"
        " WHERE i.open_minor > 0 AND s.business_date <= ?"
        " AND NOT EXISTS (SELECT 1 FROM coll_contacts c WHERE c.dunning_event_id = s.event_id)"
        " ORDER BY s.business_date DESC, s.invoice_number", (iso,),
    ):
        if customer in wanted:
            steps[customer].append({"invoice_number": inv, "installment": int(inst), "step": step, "channel": channel,
                                    "template": template, "due_on": day, "dunning_event_id": event_id})
    next_dates = dict(db.query("SELECT customer_id, MAX(next_action_date) FROM coll_contacts GROUP BY customer_id"))
    promises: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pid, customer, amount, promised in db.query(
        "SELECT promise_id, customer_id, amount_minor, promised_date FROM coll_promises WHERE status = 'open' ORDER BY promised_date"
    ):
        promises[customer].append({"promise_id": pid, "amount_minor": int(amount), "promised_date": promised})
    for row in rows:
        customer = row["customer_id"]
        row["actions_due"] = steps.get(customer, [])
        row["next_action_date"] = next_dates.get(customer)
        row["open_promises"] = promises.get(customer, [])


def results(db: ViewDatabase, collectors: Sequence[str]) -> dict[str, Any]:
    """Amount recovered, recovery rate, days to collect after a step and cost per unit
    recovered, by collector, track, step and channel; promise-kept rate by collector."""
    assigned = _assigned(db)
    steps: dict[tuple[str, int], list[tuple[int, int, tuple[str, str, str, str]]]] = defaultdict(list)
    for customer, inv, inst, track, step, channel, day, open_minor in db.query(
        "SELECT customer_id, invoice_number, installment, track, step, channel, business_date, open_minor FROM coll_steps"
    ):
        who = collector_of(customer, assigned, collectors)
        steps[(inv, int(inst))].append((date.fromisoformat(day).toordinal(), int(open_minor), (who, track, f"{track}/{step}", channel)))
    payments: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for inv, inst, day, amount in db.query(
        "SELECT invoice_number, installment, effective_date, amount_minor FROM ar_movements WHERE kind = 'allocated'"
    ):
        if (inv, int(inst)) in steps:
            payments[(inv, int(inst))].append((date.fromisoformat(day).toordinal(), -int(amount)))
    groups: dict[str, dict[str, ResultRow]] = {g: {} for g in ("collector", "track", "step", "channel")}
    for key, fired in steps.items():
        fired.sort()
        outcomes = attribute([f[0] for f in fired], [f[1] for f in fired], payments.get(key, []))
        for (_, _, dims), outcome in zip(fired, outcomes, strict=True):
            _add(groups, dims, outcome)
    _costs(db, groups)
    return {
        **{f"by_{g}": [row.as_dict() for _, row in sorted(rows.items())] for g, rows in groups.items()},
        "promises_by_collector": _promises(db),
    }


def _add(groups: dict[str, dict[str, ResultRow]], dims: tuple[str, str, str, str], outcome: StepOutcome) -> None:
    for group, key in zip(("collector", "track", "step", "channel"), dims, strict=True):
        groups[group].setdefault(key, ResultRow(key=key)).add(outcome)


def _costs(db: ViewDatabase, groups: dict[str, dict[str, ResultRow]]) -> None:
    """Costs name a collector and/or a channel; those two groups are measured net of cost."""
    for group in ("collector", "channel"):
        for row in groups[group].values():
            row.cost_minor = 0
    for collector, channel, amount in db.query("SELECT collector, channel, SUM(amount_minor) FROM coll_costs GROUP BY collector, channel"):
        for group, key in (("collector", collector), ("channel", channel)):
            if key:
                row = groups[group].setdefault(key, ResultRow(key=key, cost_minor=0))
                row.cost_minor = (row.cost_minor or 0) + int(amount)


def _promises(db: ViewDatabase) -> list[dict[str, Any]]:
    out = []
    for collector, made, kept, broken in db.query(
        "SELECT collector, COUNT(*), SUM(CASE WHEN status = 'kept' THEN 1 ELSE 0 END), SUM(CASE WHEN status = 'broken' THEN 1 ELSE 0 END)"
        " FROM coll_promises GROUP BY collector ORDER BY collector"
    ):
        kept, broken = int(kept or 0), int(broken or 0)
        out.append({"collector": collector or UNASSIGNED, "promises": int(made), "kept": kept, "broken": broken,
                    "kept_rate": ratio(kept, kept + broken)})
    return out
