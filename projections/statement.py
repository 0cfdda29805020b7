"""Statement of account: for one customer on a business date, the open items, the
payments and credits received, unapplied cash and the aging - what a collector brings
to a meeting. Read from ``ar_items`` as of the date (movements effective by then)."""

from __future__ import annotations

from datetime import date
from typing import Any

from domain.collections import CURRENT, AgingRule, days_past_due
from domain.errors import NotFound
from projections.ar_items import CASH_KINDS, open_items
from projections.db import ViewDatabase


def statement(db: ViewDatabase, customer_id: str, as_of: date, rule: AgingRule) -> dict[str, Any]:
    found = db.query("SELECT name, currency, payment_terms_days FROM ar_customers WHERE customer_id = ?", (customer_id,))
    if not found:
        raise NotFound("customer_id", customer_id, "customer")
    name, currency, terms = found[0]
    iso = as_of.isoformat()
    items = []
    aging = {label: 0 for label in (CURRENT, *rule.labels())}
    for _, cur, invoice, installment, issue, due, open_minor in open_items(db, as_of, customer_id=customer_id):
        dpd = days_past_due(date.fromisoformat(due), as_of)
        bucket = rule.bucket(dpd)
        aging[bucket] += open_minor
        items.append({"invoice_number": invoice, "installment": installment, "issue_date": issue, "due_date": due,
                      "currency": cur, "open_minor": open_minor, "days_past_due": dpd, "bucket": bucket})
    payments = _documents(db, customer_id, iso, ("cash_received",))
    reversals = _documents(db, customer_id, iso, ("cash_reversed", "unallocated"))
    credits = _documents(db, customer_id, iso, ("credited", "open_credit"))
    unapplied = _sum(db, customer_id, iso, CASH_KINDS)
    open_credit = _sum(db, customer_id, iso, ("open_credit",))
    total_open = sum(i["open_minor"] for i in items)
    return {
        "customer_id": customer_id, "name": name, "currency": currency, "payment_terms_days": int(terms), "as_of": iso,
        "open_items": items, "payments": payments, "reversals": reversals, "credits": credits,
        "aging": [{"bucket": k, "amount_minor": v} for k, v in aging.items()], "aging_rule": rule.version,
        "total_open_minor": total_open, "unapplied_cash_minor": unapplied, "open_credits_minor": open_credit,
        "balance_minor": total_open - unapplied - open_credit,
    }


def _documents(db: ViewDatabase, customer_id: str, iso: str, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT document, kind, MIN(effective_date), SUM(amount_minor) FROM ar_movements WHERE customer_id = ? AND effective_date <= ?"
        f" AND kind IN ({', '.join('?' * len(kinds))}) GROUP BY document, kind ORDER BY MIN(effective_date), document",
        (customer_id, iso, *kinds),
    )
    return [{"document": doc, "kind": kind, "date": day, "amount_minor": abs(int(amount))} for doc, kind, day, amount in rows]


def _sum(db: ViewDatabase, customer_id: str, iso: str, kinds: tuple[str, ...]) -> int:
    rows = db.query(
        f"SELECT COALESCE(SUM(amount_minor), 0) FROM ar_movements WHERE customer_id = ? AND effective_date <= ? AND kind IN ({', '.join('?' * len(kinds))})",
        (customer_id, iso, *kinds),
    )
    return int(rows[0][0])
