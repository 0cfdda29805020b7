"""A generated ledger for benchmarks: customers, invoices, payments as import CSVs.

Deterministic (seeded): customer i has ``invoices`` invoices and, for every second
invoice, a payment allocated to it in full (one PaymentReceived + one PaymentAllocated).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path


@dataclass(frozen=True)
class LedgerSize:
    customers: int
    invoices: int  # per customer

    @property
    def commands(self) -> int:
        return self.customers * (1 + self.invoices + self.invoices // 2)


def write_ledger_csv(directory: Path, size: LedgerSize, seed: int = 7) -> dict[str, Path]:
    """Write customers.csv, invoices.csv and payments.csv; returns kind -> path."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {kind: directory / f"{kind}.csv" for kind in ("customers", "invoices", "payments")}
    start = date(2025, 1, 1)
    with paths["customers"].open("w", newline="") as cf, paths["invoices"].open("w", newline="") as inf, paths["payments"].open("w", newline="") as pf:
        customers, invoices, payments = csv.writer(cf), csv.writer(inf), csv.writer(pf)
        customers.writerow(["customer_id", "name", "currency", "payment_terms_days", "region", "industry", "salesperson", "country", "email"])
        invoices.writerow(["customer_id", "invoice_number", "currency", "amount", "issue_date", "due_date"])
        payments.writerow(["customer_id", "payment_id", "currency", "amount", "value_date", "method", "reference", "allocations"])
        for c in range(size.customers):
            cid = f"C{c:06d}"
            customers.writerow([cid, f"Customer {c}", "EUR", 30, "EU", "retail", "anna", "DE", f"ap{c}@example.com"])
            for i in range(size.invoices):
                number = f"INV-{c:06d}-{i:04d}"
                issued = start + timedelta(days=rng.randrange(0, 300))
                cents = rng.randrange(1_000, 5_000_000)
                amount = f"{cents // 100}.{cents % 100:02d}"
                invoices.writerow([cid, number, "EUR", amount, issued.isoformat(), (issued + timedelta(days=30)).isoformat()])
                if i % 2 == 0:
                    paid = issued + timedelta(days=rng.randrange(10, 60))
                    payments.writerow([cid, f"PAY-{c:06d}-{i:04d}", "EUR", amount, paid.isoformat(), "transfer", number, f"{number}:{amount}"])
    return paths
