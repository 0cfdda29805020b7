"""``arledger import`` as a user runs it: a real process, CSV files, a real SQLite store."""

from __future__ import annotations

import json

from tests.e2e.test_cli import run
from tests.integration.test_import import CREDIT_NOTES, CUSTOMERS, INVOICES, PAYMENTS, write_files


def import_args(paths):
    return ["import", *(arg for kind, path in paths.items() for arg in ("--" + kind.replace("_", "-"), str(path)))]


def test_import_then_commands_then_a_refused_rerun(tmp_path):
    paths = write_files(tmp_path, customers=CUSTOMERS, invoices=INVOICES, credit_notes=CREDIT_NOTES, payments=PAYMENTS)
    dry = json.loads(run([*import_args(paths), "--dry-run"], tmp_path, check=True).stdout)
    assert dry["dry_run"] and not dry["recorded"] and dry["events"] == 21
    summary = json.loads(run(import_args(paths), tmp_path, check=True).stdout)
    assert summary["recorded"] and summary["rows"] == {"customers": 2, "invoices": 3, "credit_notes": 2, "payments": 3}
    assert summary["events"] == 21 and summary["events_per_second"] > 0 and summary["bad_rows"] == 0
    allocated = json.loads(run(["allocate-payment", "--payment-id", "PAY-3"], tmp_path, check=True).stdout)
    assert allocated["customer_id"] == "ACME"
    again = run(import_args(paths), tmp_path)
    assert again.returncode == 2
    assert "invoices.csv:2: column invoice_number: rule must_be_unique: invoice 'INV-1' already exists" in again.stderr.splitlines()
    assert json.loads(again.stdout)["bad_rows"] == 10


def test_bad_rows_exit_2_and_are_all_listed(tmp_path):
    paths = write_files(tmp_path, customers=CUSTOMERS, invoices=INVOICES.replace("55.94", "55.945").replace("12000", "12000.5"))
    proc = run(import_args(paths), tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[:2] == ["invoices.csv:2: column amount: rule minor_unit_precision: '55.945' has more than 2 decimals for EUR",
                         "invoices.csv:4: column amount: rule minor_unit_precision: '12000.5' has more than 0 decimals for JPY"]
    assert json.loads(proc.stdout)["recorded"] is False
    missing = run(["import", "--payments", str(tmp_path / "nope.csv")], tmp_path)
    assert missing.returncode == 2 and json.loads(missing.stderr.splitlines()[-1])["error"]["rule"] == "file_exists"
