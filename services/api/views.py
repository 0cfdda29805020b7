"""Read shapes of the query endpoints, built from a customer account's state.

They are the account aggregate's state plus what a reader wants computed (open
amounts, unallocated cash), so ``GET`` answers are always as current as the last
recorded command: no projection lag.
"""

from __future__ import annotations

from datetime import date

import msgspec

from domain.account import AccountState, InvoiceState, PaymentState
from domain.events import AllocationLine


class InstallmentView(msgspec.Struct, kw_only=True):
    number: int
    due_date: date
    amount_minor: int
    open_minor: int


class InvoiceView(msgspec.Struct, kw_only=True):
    invoice_number: str
    customer_id: str
    currency: str
    amount_minor: int
    open_minor: int
    status: str  # open | settled
    issue_date: date
    due_date: date
    disputed: bool
    written_off_minor: int
    recovered_minor: int
    installments: list[InstallmentView]


class PaymentView(msgspec.Struct, kw_only=True):
    payment_id: str
    currency: str
    amount_minor: int
    unallocated_minor: int
    value_date: date
    reversed: bool
    allocations: list[AllocationLine]


class CreditNoteView(msgspec.Struct, kw_only=True):
    credit_note_number: str
    open_minor: int


class WriteOffView(msgspec.Struct, kw_only=True):
    write_off_id: str
    invoice_number: str
    amount_minor: int
    requested_by: str
    status: str


class CustomerView(msgspec.Struct, kw_only=True):
    customer_id: str
    name: str
    currency: str
    payment_terms_days: int
    region: str
    industry: str
    salesperson: str
    country: str
    email: str
    version: int
    open_minor: int
    settled_invoices: int
    open_invoices: list[InvoiceView]
    payments: list[PaymentView]
    credit_notes: list[CreditNoteView]
    write_offs: list[WriteOffView]


class CustomerSummary(msgspec.Struct, kw_only=True):
    customer_id: str
    name: str
    currency: str
    payment_terms_days: int
    open_minor: int


class CustomerPage(msgspec.Struct, kw_only=True):
    items: list[CustomerSummary]
    next_cursor: int | None = None


def invoice_view(customer_id: str, inv: InvoiceState) -> InvoiceView:
    return InvoiceView(
        invoice_number=inv.number, customer_id=customer_id, currency=inv.currency, amount_minor=inv.amount_minor,
        open_minor=inv.open_minor, status="open" if inv.open_minor else "settled", issue_date=inv.issue_date,
        due_date=inv.due_date, disputed=inv.disputed, written_off_minor=inv.written_off_minor, recovered_minor=inv.recovered_minor,
        installments=[InstallmentView(number=i.number, due_date=i.due_date, amount_minor=i.amount_minor, open_minor=i.open_minor) for i in inv.installments],
    )


def payment_view(p: PaymentState) -> PaymentView:
    return PaymentView(
        payment_id=p.payment_id, currency=p.currency, amount_minor=p.amount_minor, unallocated_minor=p.unallocated_minor,
        value_date=p.value_date, reversed=p.reversed, allocations=list(p.allocations),
    )


def customer_view(s: AccountState, version: int) -> CustomerView:
    invoices = [invoice_view(s.customer_id, inv) for inv in s.invoices.values()]
    open_invoices = [i for i in invoices if i.open_minor]
    return CustomerView(
        customer_id=s.customer_id, name=s.name, currency=s.currency, payment_terms_days=s.payment_terms_days,
        region=s.region, industry=s.industry, salesperson=s.salesperson, country=s.country, email=s.email, version=version,
        open_minor=sum(i.open_minor for i in open_invoices), settled_invoices=len(invoices) - len(open_invoices),
        open_invoices=open_invoices, payments=[payment_view(p) for p in s.payments.values()],
        credit_notes=[CreditNoteView(credit_note_number=n, open_minor=v) for n, v in s.credit_notes.items()],
        write_offs=[WriteOffView(write_off_id=w.write_off_id, invoice_number=w.invoice_number, amount_minor=w.amount_minor, requested_by=w.requested_by, status=w.status) for w in s.write_offs.values()],
    )


def customer_summary(s: AccountState) -> CustomerSummary:
    return CustomerSummary(
        customer_id=s.customer_id, name=s.name, currency=s.currency, payment_terms_days=s.payment_terms_days,
        open_minor=sum(inv.open_minor for inv in s.invoices.values()),
    )
