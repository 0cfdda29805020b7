"""Property: the account's running open-AR and open-order totals always equal what the
invoices and orders say, whatever sequence of money events happened."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain import credit as cr
from domain.account import CustomerAccount
from domain.errors import RuleViolation
from tests.unit.test_credit import ctx

step = st.tuples(st.sampled_from(["invoice", "usd_invoice", "credit", "pay", "reverse", "write_off", "order", "invoice_order"]),
                 st.integers(min_value=1, max_value=50_000), st.integers(min_value=0, max_value=9))


@settings(max_examples=60, deadline=None)
@given(st.lists(step, max_size=30))
def test_running_totals_match_the_documents(steps):
    acc = CustomerAccount.register(ctx(), customer_id="P", name="Prop", currency="EUR")
    day = date(2026, 1, 1)
    for n, (kind, amount, pick) in enumerate(steps):
        day += timedelta(days=1)
        invoices = [i for i in acc.state.invoices.values() if i.open_minor > 0 and i.currency == "EUR"]
        try:
            if kind in ("invoice", "usd_invoice"):
                acc.issue_invoice(ctx(), invoice_number=f"I{n}", currency="EUR" if kind == "invoice" else "USD", amount_minor=amount, issue_date=day)
            elif kind == "credit" and invoices:
                target = invoices[pick % len(invoices)]
                acc.issue_credit_note(ctx(), credit_note_number=f"CN{n}", currency="EUR", amount_minor=min(amount, target.open_minor), issue_date=day, invoice_number=target.number)
            elif kind == "pay":
                acc.receive_payment(ctx(), payment_id=f"P{n}", currency="EUR", amount_minor=amount, value_date=day)
                acc.allocate_payment(ctx(), payment_id=f"P{n}")
            elif kind == "reverse":
                payments = [p for p in acc.state.payments.values() if not p.reversed]
                if payments:
                    acc.reverse_payment(ctx(), payment_id=payments[pick % len(payments)].payment_id, reversed_on=day, reason="bounced")
            elif kind == "write_off" and invoices:
                target = invoices[pick % len(invoices)]
                acc.request_write_off(ctx(), write_off_id=f"W{n}", invoice_number=target.number, amount_minor=min(amount, target.open_minor), reason="bad")
                acc.approve_write_off(ctx("controller"), write_off_id=f"W{n}", effective_date=day)
            elif kind == "order":
                cr.place_order(acc, ctx(), order_id=f"SO{n}", currency="EUR", amount_minor=amount, ordered_on=day)
            elif kind == "invoice_order":
                open_orders = [o for o in acc.state.credit.orders.values() if o.counts_in_exposure]
                if open_orders:
                    order = open_orders[pick % len(open_orders)]
                    acc.issue_invoice(ctx(), invoice_number=f"I{n}", currency="EUR", amount_minor=amount, issue_date=day, sales_order_id=order.order_id)
        except RuleViolation:
            pass  # e.g. nothing open to allocate to: the account refused and recorded nothing
    assert cr.open_ar(acc.state) == sum(i.open_minor for i in acc.state.invoices.values() if i.currency == "EUR")
    assert acc.state.credit.open_orders_minor == sum(o.open_minor for o in acc.state.credit.orders.values() if o.counts_in_exposure)
