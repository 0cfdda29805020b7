"""A large synthetic stream, fast: for load tests and benchmarks of the stream's readers
(relay, projections), not for the command path.

The accounts are built with the real aggregate (so every event is a valid, decodable
event of the catalogue) and saved many accounts per atomic save, which is about ten
times faster than one command at a time. Invoice numbers are not claimed in the
registry: do not mix this stream with commands on the same customers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from domain.account import CommandContext, CustomerAccount
from services.persistence import LedgerStore


def record_bulk(store: LedgerStore, *, customers: int, invoices_per_customer: int, prefix: str = "BULK", accounts_per_save: int = 200) -> int:
    """Register ``customers`` accounts and issue ``invoices_per_customer`` invoices to
    each, interleaved across customers. Returns the number of events recorded."""
    now = datetime.now(UTC)
    ctx = CommandContext(actor="bulk", recorded_at=now, correlation_id=uuid.uuid4(), causation_id=uuid.uuid4())
    issue = date(2026, 1, 1)
    recorded = 0
    for first in range(0, customers, accounts_per_save):
        accounts = [
            CustomerAccount.register(ctx, customer_id=f"{prefix}{n:06d}", name=f"Customer {n}", currency="EUR")
            for n in range(first, min(first + accounts_per_save, customers))
        ]
        for k in range(invoices_per_customer):
            for account in accounts:
                account.issue_invoice(ctx, invoice_number=f"{account.state.customer_id}-{k}", currency="EUR", amount_minor=1000 + k, issue_date=issue + timedelta(days=k % 90))
        recorded += sum(len(a.pending) for a in accounts)
        store.save(*accounts)
    return recorded
