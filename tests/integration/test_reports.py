"""Aging and KPI reports on SQLite and PostgreSQL: hand-computed figures, bitemporal
answers, byte-for-byte reproduction and the JSON contract of the CLI."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
import structlog

from domain import commands as c
from projections.aging import aging_report
from projections.kpi import kpi_report
from services.cli import main
from tests.integration.test_ar_items import run as catch_up
from tests.integration.test_ar_items import view_db  # noqa: F401 - the shared fixture

AGING_KEYS = {"as_of", "position", "currency", "buckets", "total_minor", "unapplied_minor"}
KPI_KEYS = {"from", "to", "credit_sales_minor", "ar_start_minor", "ar_end_minor", "current_ar_end_minor", "dso",
            "countback_dso", "best_possible_dso", "add", "cei", "turnover"}


def march_ledger(app) -> None:
    """Feb: I1 10,000. March: I2 20,000 and I3 10,000 issued, 6,000 paid on I1, 1,000 credited on I2."""
    x = app.ledger.execute
    x(c.RegisterCustomer(customer_id="A", name="Acme", currency="EUR", region="north", salesperson="kim"), actor="s")
    x(c.RegisterCustomer(customer_id="B", name="Bolt", currency="EUR", region="south", salesperson="kim"), actor="s")
    x(c.IssueInvoice(customer_id="A", invoice_number="I1", currency="EUR", amount_minor=10_000, issue_date=date(2026, 2, 10),
                     due_date=date(2026, 3, 12)), actor="s")
    x(c.IssueInvoice(customer_id="B", invoice_number="I2", currency="EUR", amount_minor=20_000, issue_date=date(2026, 3, 5),
                     due_date=date(2026, 4, 4)), actor="s")
    x(c.IssueInvoice(customer_id="A", invoice_number="I3", currency="EUR", amount_minor=10_000, issue_date=date(2026, 3, 20),
                     due_date=date(2026, 4, 19)), actor="s")
    x(c.ReceivePayment(customer_id="A", payment_id="P1", currency="EUR", amount_minor=6_000, value_date=date(2026, 3, 15)), actor="s")
    x(c.AllocatePayment(payment_id="P1", invoice_number="I1"), actor="s")
    x(c.IssueCreditNote(customer_id="B", credit_note_number="CN1", currency="EUR", amount_minor=1_000, issue_date=date(2026, 3, 25),
                        invoice_number="I2"), actor="s")


def late_payment(app, clock) -> None:
    """10,000 value-dated 28 March, recorded a week later, settles I3."""
    clock.advance(days=7)
    app.ledger.execute(c.ReceivePayment(customer_id="A", payment_id="P2", currency="EUR", amount_minor=10_000,
                                        value_date=date(2026, 3, 28)), actor="s")
    app.ledger.execute(c.AllocatePayment(payment_id="P2", invoice_number="I3"), actor="s")


def buckets(report) -> list[int]:
    return [b["amount_minor"] for b in report["buckets"]]


def test_aging_buckets_and_groups(app, view_db):
    march_ledger(app)
    catch_up(app, view_db)
    [report] = aging_report(view_db, date(2026, 3, 31), by="customer")
    assert buckets(report) == [29_000, 4_000, 0, 0, 0]  # I1 19 days late; I2, I3 not yet due
    assert report["total_minor"] == 33_000 and report["unapplied_minor"] == 0
    assert report["reconciliation"] == {"invoiced_minor": 40_000, "credited_minor": 1_000, "allocated_minor": 6_000, "written_off_minor": 0}
    assert [(r["customer_id"], r["total_minor"]) for r in report["by_customer"]] == [("A", 14_000), ("B", 19_000)]
    [april] = aging_report(view_db, date(2026, 4, 30), by="region")
    assert buckets(april) == [0, 29_000, 4_000, 0, 0]
    assert [(r["region"], buckets(r)) for r in april["by_region"]] == [("north", [0, 10_000, 4_000, 0, 0]), ("south", [0, 19_000, 0, 0, 0])]
    [custom] = aging_report(view_db, date(2026, 4, 30), by="salesperson", buckets=__import__("domain.aging").aging.parse_edges("0,20"))
    assert [b["label"] for b in custom["buckets"]] == ["current", "1-20", "21+"]
    assert custom["by_salesperson"] == [{"salesperson": "kim", "buckets": custom["buckets"], "total_minor": 33_000}]
    [before] = aging_report(view_db, date(2026, 3, 14))  # the payment is value-dated the 15th
    assert before["total_minor"] == 10_000 + 20_000


def test_kpis_of_march_by_hand(app, clock, view_db):
    march_ledger(app)
    then = clock.now
    late_payment(app, clock)
    catch_up(app, view_db)
    [known_then] = kpi_report(view_db, date(2026, 3, 1), date(2026, 3, 31), known_at=then)
    assert {k: known_then[k] for k in ("credit_sales_minor", "ar_start_minor", "ar_end_minor", "current_ar_end_minor", "days")} == {
        "credit_sales_minor": 30_000, "ar_start_minor": 10_000, "ar_end_minor": 33_000, "current_ar_end_minor": 29_000, "days": 31}
    assert known_then["dso"] == Decimal("34.1000")               # 33,000 / 30,000 x 31
    assert known_then["best_possible_dso"] == Decimal("29.9667")  # 29,000 / 30,000 x 31
    assert known_then["add"] == Decimal("4.1333")                 # 4,000 / 30,000 x 31
    assert known_then["cei"] == Decimal("63.6364")                # 7,000 / 11,000 x 100
    assert known_then["turnover"] == Decimal("1.3953")            # 30,000 / 21,500
    assert known_then["turnover_days"] == Decimal("22.2167")      # 31 / 1.39534..
    assert known_then["countback_dso"] == Decimal("39.4000")      # 31 + 3,000 / 10,000 x 28
    [now] = kpi_report(view_db, date(2026, 3, 1), date(2026, 3, 31))
    assert now["ar_end_minor"] == 23_000 and now["current_ar_end_minor"] == 19_000
    assert now["dso"] == Decimal("23.7667") and now["cei"] == Decimal("80.9524")  # 17,000 / 21,000


def test_a_late_payment_changes_now_but_not_then(app, clock, view_db):
    march_ledger(app)
    then = clock.now
    late_payment(app, clock)
    runner = catch_up(app, view_db)
    [now] = aging_report(view_db, date(2026, 3, 31))
    [known_then] = aging_report(view_db, date(2026, 3, 31), known_at=then)
    assert now["total_minor"] == 23_000 and known_then["total_minor"] == 33_000
    assert now["position"] == runner.position("ar_items") and known_then["position"] < now["position"]
    [at_then] = aging_report(view_db, date(2026, 3, 31), at_position=known_then["position"])
    assert at_then == known_then  # same rows, same stated position
    [at_head] = aging_report(view_db, date(2026, 3, 31), at_position=now["position"])
    assert at_head == now  # the movement scan and the pre-summed grid agree


def run_cli(url: str, *args: str) -> int:
    try:
        return main(["--database-url", url, *args])
    finally:
        structlog.reset_defaults()  # the CLI points logs at the captured stderr, closed after the test


def cli(capsys, url: str, *args: str) -> str:
    capsys.readouterr()  # drop the log lines of the commands recorded before
    assert run_cli(url, *args) == 0
    return capsys.readouterr().out


def test_cli_json_contract_and_byte_for_byte_reproduction(app, clock, database_url, capsys):
    march_ledger(app)
    first = cli(capsys, database_url, "aging", "--as-of", "2026-03-31", "--by", "customer", "--json")
    report = json.loads(first)
    assert AGING_KEYS | {"by_customer"} <= set(report)
    assert report["currency"] == "EUR" and isinstance(report["position"], int) and report["total_minor"] == 33_000
    assert all(set(b) == {"label", "amount_minor"} for b in report["buckets"])
    assert all(set(r) == {"customer_id", "buckets", "total_minor"} for r in report["by_customer"])
    assert "by_customer" not in json.loads(cli(capsys, database_url, "aging", "--as-of", "2026-03-31", "--json"))
    kpi_first = cli(capsys, database_url, "kpi", "--from", "2026-03-01", "--to", "2026-03-31", "--json")
    figures = json.loads(kpi_first)
    assert KPI_KEYS <= set(figures) and figures["dso"] == 34.1 and figures["cei"] == 63.6364
    assert '"dso":34.1000' in kpi_first  # a JSON number with 4 places, not a string
    known_at = clock.now.isoformat()
    known_first = cli(capsys, database_url, "aging", "--as-of", "2026-03-31", "--known-at", known_at, "--json")
    late_payment(app, clock)
    position = str(report["position"])
    assert cli(capsys, database_url, "aging", "--as-of", "2026-03-31", "--by", "customer", "--at-position", position, "--json") == first
    assert cli(capsys, database_url, "kpi", "--from", "2026-03-01", "--to", "2026-03-31", "--at-position", position, "--json") == kpi_first
    assert cli(capsys, database_url, "aging", "--as-of", "2026-03-31", "--known-at", known_at, "--json") == known_first
    assert json.loads(cli(capsys, database_url, "aging", "--as-of", "2026-03-31", "--json"))["total_minor"] == 23_000


def test_cli_prints_one_object_per_currency(app, database_url, capsys):
    march_ledger(app)
    app.ledger.execute(c.RegisterCustomer(customer_id="U", name="Us", currency="USD"), actor="s")
    app.ledger.execute(c.IssueInvoice(customer_id="U", invoice_number="U1", currency="USD", amount_minor=700,
                                      issue_date=date(2026, 3, 1)), actor="s")
    reports = json.loads(cli(capsys, database_url, "aging", "--as-of", "2026-03-31", "--json"))
    assert [(r["currency"], r["total_minor"]) for r in reports] == [("EUR", 33_000), ("USD", 700)]
    kpis = json.loads(cli(capsys, database_url, "kpi", "--period", "month", "--year", "2026", "--number", "3", "--json"))
    assert [(k["currency"], k["credit_sales_minor"]) for k in kpis] == [("EUR", 30_000), ("USD", 700)]


def test_cli_refuses_bad_input(app, database_url, capsys):
    march_ledger(app)
    capsys.readouterr()
    assert run_cli(database_url, "aging", "--as-of", "2026-13-01", "--json") == 2
    assert json.loads(capsys.readouterr().err)["error"]["field"] == "as_of"
    assert run_cli(database_url, "aging", "--as-of", "2026-03-01", "--buckets", "5,10", "--json") == 2
    assert json.loads(capsys.readouterr().err)["error"]["rule"] == "starts_at_zero"
    assert run_cli(database_url, "aging", "--at-position", "999999", "--json") == 2
    assert json.loads(capsys.readouterr().err)["error"]["rule"] == "not_after_head"
