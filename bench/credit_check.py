"""Order credit check latency on a ledger of many customers.

Generates N customers (default 100,000), each with two invoices, an assessment, a credit
limit and an open sales order, inserting the mapped events in bulk through the store's
recorder (plus the order-id claims the service resolves orders with). Then times the
full command path of ``arledger credit check-order`` on random customers - resolve the
order's customer, load the account (not cached), decide, save OrderCreditChecked - and
the pure decision on a loaded account, and prints p50/p99 in milliseconds.

    python -m bench.credit_check              # 100,000 customers, temporary SQLite file
    python -m bench.credit_check --quick      # 5,000 customers
    python -m bench.credit_check --database-url postgresql://postgres@127.0.0.1:5432/test?schema=bench_credit
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from domain import credit as cr
from domain import credit_commands as cc
from domain.account import CommandContext, CustomerAccount, project_account
from domain.credit_events import FinancialIndicators, PaymentBehaviour
from domain.registry import ReferenceClaimed, account_id, event_id, reference_id
from services.bootstrap import bootstrap
from services.credit import CreditService, default_policy
from services.settings import Settings

DAY = date(2026, 3, 1)


def customer_events(n: int, policy, ctx: CommandContext) -> list:
    rng = random.Random(n)
    customer_id = f"C{n:06d}"
    account = CustomerAccount.register(ctx, customer_id=customer_id, name=f"Customer {n}", currency="EUR", payment_terms_days=30)
    for k in (1, 2):
        account.issue_invoice(ctx, invoice_number=f"INV-{n}-{k}", currency="EUR", amount_minor=rng.randint(10_000, 500_000), issue_date=date(2026, 1, 10 * k))
    financial = FinancialIndicators(current_ratio=Decimal(rng.randint(50, 300)) / 100, debt_ratio=Decimal(rng.randint(10, 95)) / 100, years_trading=rng.randint(1, 30))
    cr.assess(account, ctx, policy, assessed_on=date(2026, 1, 1), financial=financial, operating_state="normal",
              behaviour=PaymentBehaviour(average_days_late=Decimal(rng.randint(0, 40))))
    cap = policy.grade_policy(account.state.credit.grade).max_limit_minor
    cr.set_limit(account, ctx, policy, limit_minor=min(cap, 1_000_000), reason="bench")
    cr.place_order(account, ctx, order_id=f"SO-{n}", currency="EUR", amount_minor=rng.randint(1_000, 400_000), ordered_on=DAY)
    rid = reference_id("sales_order", f"SO-{n}")
    claim = ReferenceClaimed(originator_id=rid, originator_version=1, event_id=event_id(rid, 1), recorded_at=ctx.recorded_at, actor=ctx.actor,
                             correlation_id=ctx.correlation_id, causation_id=ctx.causation_id, kind="sales_order", reference=f"SO-{n}", customer_id=customer_id)
    return [*account.collect_events(), claim]


def generate(store, customers: int) -> float:
    policy = default_policy()
    ctx = CommandContext(actor="bench", recorded_at=datetime(2026, 1, 1, tzinfo=UTC), correlation_id=uuid.uuid4(), causation_id=uuid.uuid4())
    started = time.perf_counter()
    batch: list = []
    for n in range(customers):
        batch += customer_events(n, policy, ctx)
        if len(batch) >= 5_000 or n == customers - 1:
            store.recorder.insert_events([store.mapper.to_stored_event(e) for e in batch])
            batch = []
    return time.perf_counter() - started


def _ctx() -> CommandContext:
    return CommandContext(actor="bench", recorded_at=datetime.now(UTC), correlation_id=uuid.uuid4(), causation_id=uuid.uuid4())


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="5,000 customers")
    parser.add_argument("--checks", type=int, default=2_000)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    args = parser.parse_args()
    customers = 5_000 if args.quick else args.customers
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        app = bootstrap(Settings.from_env({}, database_url=url, log_level="WARNING"), configure_logs=True)
        credit = CreditService(app.store, app.ledger)
        seconds = generate(app.store, customers)
        events = app.store.max_position()
        gc.collect()
        gc.freeze()  # the generated objects are long-lived: keep the collector from rescanning them mid-measurement
        print(f"generated {customers:,} customers, {events:,} events in {seconds:.1f} s ({events / seconds:,.0f} events/s) on {url.split('?')[0].split(':')[0]}")
        rng = random.Random(7)
        picks = rng.sample(range(customers), min(args.checks, customers))
        answer_ms, decide_ms, command_ms, decisions = [], [], [], {}
        half = len(picks) // 2
        for n in picks[:half]:  # the answer: resolve the order, load the account (not cached), decide
            t0 = time.perf_counter()
            policy, _ = credit.active_policy()
            customer_id = app.ledger.owner_of("sales_order", f"SO-{n}", "order_id")
            account = app.store.repository.get(account_id(customer_id), projector_func=project_account)
            t1 = time.perf_counter()
            checked = cr.check_order(account, _ctx(), policy, order_id=f"SO-{n}", checked_on=DAY)
            t2 = time.perf_counter()
            answer_ms.append((t2 - t0) * 1000)
            decide_ms.append((t2 - t1) * 1000)
            decisions[checked.decision] = decisions.get(checked.decision, 0) + 1
        for n in picks[half:]:  # the command: the same, and the decision saved (durable commit)
            t0 = time.perf_counter()
            credit.execute(cc.CheckOrderCredit(order_id=f"SO-{n}", checked_on=DAY), actor="bench")  # order id only: resolved
            command_ms.append((time.perf_counter() - t0) * 1000)
        for label, samples in (("answer (resolve order, load account, decide)", answer_ms),
                               ("decision alone on the loaded account", decide_ms),
                               ("full command incl. saving OrderCreditChecked", command_ms)):
            p50, p99 = percentiles(samples)
            print(f"credit check, {label}: p50 {p50:.3f} ms, p99 {p99:.3f} ms ({len(samples):,} checks)")
        print(f"decisions: {decisions}")
        app.close()


if __name__ == "__main__":
    main()
