"""A small demo ledger: a handful of customers with invoices spread over the aging
buckets, part payments, a credit note, a dispute and a write-off. Dates are relative
to the day it is loaded, so the aging report always has something in every bucket."""

from __future__ import annotations

from datetime import date, timedelta

from domain import commands as c
from services.ledger import LedgerService

CUSTOMERS = [
    ("ACME", "Acme Industrial GmbH", "EUR", 30, "DACH", "manufacturing", "anna"),
    ("BOLT", "Bolt Logistics BV", "EUR", 45, "Benelux", "logistics", "anna"),
    ("CAFE", "Cafe Central SARL", "EUR", 14, "France", "hospitality", "marc"),
    ("DYNA", "Dyna Retail Ltd", "GBP", 30, "UK", "retail", "marc"),
    ("ECHO", "Echo Software Inc", "USD", 60, "US", "software", "lena"),
]


def demo_commands(today: date) -> list[tuple[str, c.Command]]:
    """(actor, command) pairs in the order they are recorded."""
    d = lambda days: today - timedelta(days=days)  # noqa: E731 - tiny local helper
    out: list[tuple[str, c.Command]] = []
    for cid, name, cur, terms, region, industry, sales in CUSTOMERS:
        out.append(("sales.demo", c.RegisterCustomer(customer_id=cid, name=name, currency=cur, payment_terms_days=terms, region=region, industry=industry, salesperson=sales)))
    invoices = [
        ("ACME", "INV-1001", "EUR", 1_250_000, d(150), None), ("ACME", "INV-1002", "EUR", 380_000, d(70), None),
        ("ACME", "INV-1003", "EUR", 512_500, d(20), None), ("BOLT", "INV-1004", "EUR", 99_990, d(100), None),
        ("BOLT", "INV-1005", "EUR", 245_000, d(40), None), ("CAFE", "INV-1006", "EUR", 18_950, d(50), None),
        ("CAFE", "INV-1007", "EUR", 7_425, d(5), None), ("DYNA", "INV-1008", "GBP", 640_000, d(95), None),
        ("DYNA", "INV-1009", "GBP", 120_000, d(10), None), ("ECHO", "INV-1010", "USD", 2_400_000, d(120), None),
    ]
    for cid, number, cur, amount, issued, _ in invoices:
        out.append(("sales.demo", c.IssueInvoice(customer_id=cid, invoice_number=number, currency=cur, amount_minor=amount, issue_date=issued)))
    out.append(("sales.demo", c.IssueInvoice(
        customer_id="ECHO", invoice_number="INV-1011", currency="USD", amount_minor=900_000, issue_date=d(80),
        installments=[c.InstallmentSpec(due_date=d(50), amount_minor=300_000), c.InstallmentSpec(due_date=d(20), amount_minor=300_000), c.InstallmentSpec(due_date=d(-10), amount_minor=300_000)],
    )))
    out += [
        ("finance.demo", c.ReceivePayment(customer_id="ACME", payment_id="PAY-5001", currency="EUR", amount_minor=1_000_000, value_date=d(60))),
        ("finance.demo", c.AllocatePayment(payment_id="PAY-5001")),
        ("finance.demo", c.ReceivePayment(customer_id="BOLT", payment_id="PAY-5002", currency="EUR", amount_minor=99_990, value_date=d(30))),
        ("finance.demo", c.AllocatePayment(payment_id="PAY-5002", invoice_number="INV-1004")),
        ("finance.demo", c.ReceivePayment(customer_id="ECHO", payment_id="PAY-5003", currency="USD", amount_minor=300_000, value_date=d(45))),
        ("finance.demo", c.AllocatePayment(payment_id="PAY-5003", invoice_number="INV-1011", installment=1)),
        ("finance.demo", c.ReceivePayment(customer_id="DYNA", payment_id="PAY-5004", currency="GBP", amount_minor=50_000, value_date=d(3))),
        ("finance.demo", c.IssueCreditNote(customer_id="CAFE", credit_note_number="CN-301", currency="EUR", amount_minor=2_950, issue_date=d(40), invoice_number="INV-1006", reason="price correction")),
        ("collector.demo", c.DisputeInvoice(invoice_number="INV-1005", disputed_on=d(8), reason="pallets arrived damaged")),
        ("finance.demo", c.RequestWriteOff(write_off_id="WO-1", invoice_number="INV-1010", amount_minor=400_000, reason="partial insolvency settlement")),
        ("controller.demo", c.ApproveWriteOff(write_off_id="WO-1", effective_date=d(15))),
    ]
    return out


def load_demo(ledger: LedgerService, today: date | None = None) -> int:
    """Record the demo ledger once; returns how many commands were recorded (0 if it was there)."""
    today = today or date.today()
    try:
        ledger.account(CUSTOMERS[0][0])
        return 0
    except Exception:  # noqa: BLE001 - NotFound: not loaded yet
        pass
    commands = demo_commands(today)
    for actor, command in commands:
        ledger.execute(command, actor=actor, idempotency_key=f"demo:{type(command).__name__}:{hash_of(command)}")
    return len(commands)


def hash_of(command: c.Command) -> str:
    from services.ledger import fingerprint

    return fingerprint(command)[:16]
