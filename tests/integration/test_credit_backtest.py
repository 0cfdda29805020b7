"""The policy backtest replays recorded order checks under a candidate policy, records
nothing, and follows the orders it would have stopped to their later losses."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import msgspec

from domain import commands as c
from domain import credit_commands as cc
from domain.credit_events import FinancialIndicators, PaymentBehaviour
from services.credit import CreditService
from services.credit_backtest import backtest


def test_backtest_reports_changed_decisions_and_losses_avoided(app):
    credit = CreditService(app.store, app.ledger)
    for customer, current_ratio in (("GOOD", "2.5"), ("WEAK", "1.2")):
        app.ledger.execute(c.RegisterCustomer(customer_id=customer, name=customer, currency="EUR"), actor="alice")
        financial = FinancialIndicators(current_ratio=Decimal(current_ratio), debt_ratio=Decimal("0.2"), profitability=Decimal("0.12"), years_trading=20, external_rating="AA")
        credit.execute(cc.AssessCredit(customer_id=customer, assessed_on=date(2026, 1, 1), financial=financial,
                                       behaviour=PaymentBehaviour(average_days_late=Decimal(5))), actor="alice")
        credit.execute(cc.SetCreditLimit(customer_id=customer, limit_minor=1_000_000, reason="opening"), actor="alice")
        credit.execute(cc.PlaceSalesOrder(customer_id=customer, order_id=f"SO-{customer}", currency="EUR", amount_minor=400_000, ordered_on=date(2026, 1, 5)), actor="sales")
        credit.execute(cc.InvoiceSalesOrder(order_id=f"SO-{customer}", invoice_number=f"INV-{customer}", issue_date=date(2026, 1, 6)), actor="sales")
    # WEAK scores 90 (A), GOOD 98 under the recorded policy; its invoice goes bad: part written off, the rest overdue
    app.ledger.execute(c.RequestWriteOff(write_off_id="WO-1", invoice_number="INV-WEAK", amount_minor=150_000, reason="insolvency"), actor="alice")
    app.ledger.execute(c.ApproveWriteOff(write_off_id="WO-1", effective_date=date(2026, 6, 30)), actor="controller")
    policy, _ = credit.active_policy()
    # candidate: stricter cut-offs (WEAK falls to D, GOOD stays A) and D needs a guarantee
    candidate = msgspec.structs.replace(policy, scorecard=msgspec.structs.replace(policy.scorecard, cutoffs={"A": 95, "B": 94, "C": 93, "D": 85, "E": 0}))
    before = app.store.max_position()
    report = backtest(app.store, candidate, date(2026, 1, 1), date(2026, 12, 31))
    assert app.store.max_position() == before  # nothing recorded
    assert (report.checks, report.recorded, report.candidate) == (2, {"approve": 2}, {"approve": 1, "hold": 1})
    [changed] = report.changed
    assert (changed.order_id, changed.recorded, changed.candidate, changed.candidate_grade, changed.reasons) == (
        "SO-WEAK", "approve", "hold", "D", ("GUARANTEE_REQUIRED",))
    assert (changed.written_off_minor, changed.overdue_minor) == (150_000, 250_000)  # due 2026-02-05, still open on 12-31
    assert (report.approved_exposure_recorded_minor, report.approved_exposure_candidate_minor) == (800_000, 400_000)
    assert (report.losses_avoided_written_off_minor, report.losses_avoided_overdue_minor) == (150_000, 250_000)
    assert backtest(app.store, candidate, date(2026, 2, 1), date(2026, 12, 31)).checks == 0  # outside the range
