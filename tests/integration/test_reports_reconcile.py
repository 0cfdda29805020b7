"""Property: on any generated ledger, at any as-of date, the aging total equals the sum of
the open amounts computed straight from the stored events, equals invoiced - credited -
allocated - written off; as known now it also equals the accounts' own open amounts.
Runs on SQLite (each example is a fresh store)."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import commands as c
from domain import events as ev
from domain.errors import RuleViolation
from projections.aging import aging_report
from projections.ar_items import ArItemsProjection
from projections.db import ViewDatabase
from projections.runner import ProjectionRunner
from services.bootstrap import bootstrap
from services.persistence import decode_event
from services.settings import Settings
from tests.conftest import FakeClock

START = date(2026, 1, 1)
CUSTOMERS = (("A", "EUR"), ("B", "EUR"), ("U", "USD"))
day = st.integers(0, 150)
amount = st.integers(1, 5_000)
ops = st.one_of(
    st.tuples(st.just("invoice"), st.integers(0, 2), amount, day, st.integers(1, 3)),
    st.tuples(st.just("credit"), st.integers(0, 30), amount, day),
    st.tuples(st.just("open_credit"), st.integers(0, 2), amount, day),
    st.tuples(st.just("payment"), st.integers(0, 2), amount, day),
    st.tuples(st.just("allocate"), st.integers(0, 30)),
    st.tuples(st.just("reverse"), st.integers(0, 30), st.integers(0, 40)),
    st.tuples(st.just("write_off"), st.integers(0, 30), amount, day),
)


def apply(app, ops_) -> None:
    invoices: list[tuple[str, str, date]] = []  # (number, customer, issue date)
    payments: list[tuple[str, date]] = []
    x = app.ledger.execute
    for cid, currency in CUSTOMERS:
        x(c.RegisterCustomer(customer_id=cid, name=cid, currency=currency), actor="s")
    for n, op in enumerate(ops_):
        kind = op[0]
        try:
            if kind == "invoice":
                cid, cur = CUSTOMERS[op[1]]
                issued = START + timedelta(days=op[3])
                parts = [op[2] // op[4]] * (op[4] - 1)
                schedule = [c.InstallmentSpec(due_date=issued + timedelta(days=15 * (k + 1)), amount_minor=a)
                            for k, a in enumerate([*parts, op[2] - sum(parts)]) if a > 0]
                x(c.IssueInvoice(customer_id=cid, invoice_number=f"I{n}", currency=cur, amount_minor=op[2], issue_date=issued,
                                 installments=schedule if len(schedule) == op[4] else []), actor="s")
                invoices.append((f"I{n}", cid, issued))
            elif kind == "credit" and invoices:
                number, cid, issued = invoices[op[1] % len(invoices)]
                x(c.IssueCreditNote(customer_id=cid, credit_note_number=f"CN{n}", currency=dict(CUSTOMERS)[cid], amount_minor=op[2],
                                    issue_date=issued + timedelta(days=op[3] % 40), invoice_number=number), actor="s")
            elif kind == "open_credit":
                cid, cur = CUSTOMERS[op[1]]
                x(c.IssueCreditNote(customer_id=cid, credit_note_number=f"CN{n}", currency=cur, amount_minor=op[2],
                                    issue_date=START + timedelta(days=op[3])), actor="s")
            elif kind == "payment":
                cid, cur = CUSTOMERS[op[1]]
                x(c.ReceivePayment(customer_id=cid, payment_id=f"P{n}", currency=cur, amount_minor=op[2],
                                   value_date=START + timedelta(days=op[3])), actor="s")
                payments.append((f"P{n}", START + timedelta(days=op[3])))
            elif kind == "allocate" and payments:
                x(c.AllocatePayment(payment_id=payments[op[1] % len(payments)][0]), actor="s")
            elif kind == "reverse" and payments:
                pid, value_date = payments[op[1] % len(payments)]
                x(c.ReversePayment(payment_id=pid, reversed_on=value_date + timedelta(days=op[2]), reason="bounced"), actor="s")
            elif kind == "write_off" and invoices:
                number, _, issued = invoices[op[1] % len(invoices)]
                x(c.RequestWriteOff(write_off_id=f"W{n}", invoice_number=number, amount_minor=op[2], reason="bad debt"), actor="s")
                x(c.ApproveWriteOff(write_off_id=f"W{n}", effective_date=issued + timedelta(days=op[3] % 60)), actor="controller")
        except RuleViolation:
            pass  # refused commands record nothing; the ledger stays consistent


def from_events(app, as_of: date) -> dict[str, dict[str, int]]:
    """Per currency, straight from the stored events: invoiced, credited, allocated
    (net of bounced payments), written off, and the open amount of every installment."""
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    currency_of: dict[str, str] = {}
    for n in app.store.recorder.select_notifications(start=1, limit=100_000):
        e = decode_event(n.topic, n.state)
        if isinstance(e, ev.InvoiceIssued):
            currency_of[e.invoice_number] = e.currency
            if e.issue_date <= as_of:
                sums[e.currency]["invoiced"] += e.amount_minor
        elif isinstance(e, ev.CreditNoteIssued) and e.invoice_number and e.issue_date <= as_of:
            sums[e.currency]["credited"] += sum(line.amount_minor for line in e.applied)
        elif isinstance(e, ev.PaymentAllocated) and e.value_date <= as_of:
            sums[e.currency]["allocated"] += e.amount_minor
        elif isinstance(e, ev.PaymentReversed) and e.reversed_on <= as_of:
            sums[e.currency]["allocated"] -= sum(line.amount_minor for line in e.unallocated)
        elif isinstance(e, ev.WriteOffApproved) and e.effective_date <= as_of:
            sums[e.currency]["written_off"] += sum(line.amount_minor for line in e.applied)
    return sums


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=30))
def test_aging_reconciles_to_the_ledger(ops_):
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.sqlite'}"
        app = bootstrap(Settings.from_env({}, database_url=url), clock=FakeClock(), configure_logs=False)
        db = ViewDatabase(url)
        try:
            apply(app, ops_)
            runner = ProjectionRunner(app.store, db, [ArItemsProjection()], batch_size=9)
            runner.setup()
            runner.catch_up()
            for as_of in (START - timedelta(days=1), START + timedelta(days=30), START + timedelta(days=95), date(2030, 1, 1)):
                expected = from_events(app, as_of)
                reports = {r["currency"]: r for r in aging_report(db, as_of)}
                scanned = {r["currency"]: r for r in aging_report(db, as_of, at_position=runner.position("ar_items"))}
                assert scanned == reports  # the movement scan and the pre-summed grid agree
                for currency, report in reports.items():
                    s = expected[currency]
                    ledger_total = s["invoiced"] - s["credited"] - s["allocated"] - s["written_off"]
                    assert report["total_minor"] == sum(b["amount_minor"] for b in report["buckets"]) == ledger_total
                    assert report["reconciliation"] == {"invoiced_minor": s["invoiced"], "credited_minor": s["credited"],
                                                        "allocated_minor": s["allocated"], "written_off_minor": s["written_off"]}
            accounts = [app.ledger.account(cid).state for cid, _ in CUSTOMERS]
            for currency, report in {r["currency"]: r for r in aging_report(db, date(2030, 1, 1))}.items():
                mine = [a for a in accounts if a.currency == currency]
                assert report["total_minor"] == sum(i.open_minor for a in mine for i in a.invoices.values())
                assert report["unapplied_minor"] == sum(p.unallocated_minor for a in mine for p in a.payments.values())
                assert report["open_credits_minor"] == sum(v for a in mine for v in a.credit_notes.values())
        finally:
            db.close()
            app.close()
