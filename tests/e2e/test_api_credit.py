"""Credit over HTTP on both stores: limits with four eyes, holds, sales orders."""

from __future__ import annotations


def _setup(api) -> None:
    assert api.call("POST", "/v1/customers", "sales", {"customer_id": "ACME", "name": "Acme", "currency": "EUR"}).status_code == 201
    assert api.call("POST", "/v1/customers/ACME/credit-assessments", "credit_manager", {"assessed_on": "2026-01-10"}).status_code == 201
    assert api.call("PUT", "/v1/customers/ACME/credit-limit", "credit_manager", {"limit_minor": 100_000, "reason": "start"}).status_code == 200


def test_a_large_limit_increase_needs_a_second_credit_manager(api):
    _setup(api)
    requested = api.call("PUT", "/v1/customers/ACME/credit-limit", "credit_manager", {"limit_minor": 15_000_000, "reason": "growth", "request_id": "R1"}, name="carl")
    assert requested.status_code == 200, requested.text
    assert [e["type"] for e in requested.json()["events"]] == ["CreditLimitIncreaseRequested"]
    before = api.head()
    same = api.call("POST", "/v1/customers/ACME/credit-limit-requests/R1/approval", "credit_manager", {}, name="carl")
    assert same.status_code == 422 and same.json()["field"] == "actor"
    assert api.head() == before
    other = api.call("POST", "/v1/customers/ACME/credit-limit-requests/R1/approval", "credit_manager", {}, name="dana")
    assert other.status_code == 200, other.text


def test_orders_are_checked_held_released_and_invoiced(api):
    _setup(api)
    placed = api.call("POST", "/v1/sales-orders", "sales", {"customer_id": "ACME", "order_id": "SO-1", "currency": "EUR", "amount_minor": 5_000, "ordered_on": "2026-01-11"})
    assert [e["type"] for e in placed.json()["events"]] == ["SalesOrderPlaced", "OrderCreditChecked"]
    invoiced = api.call("POST", "/v1/sales-orders/SO-1/invoices", "sales", {"invoice_number": "INV-9", "issue_date": "2026-01-12"})
    assert invoiced.status_code == 201 and api.call("GET", "/v1/invoices/INV-9", "auditor").json()["amount_minor"] == 5_000
    assert api.call("POST", "/v1/customers/ACME/credit-hold", "credit_manager", {"reason": "late", "placed_on": "2026-01-12"}).status_code == 201
    held = api.call("POST", "/v1/sales-orders", "sales", {"customer_id": "ACME", "order_id": "SO-2", "currency": "EUR", "amount_minor": 5_000, "ordered_on": "2026-01-13"})
    assert held.status_code == 201
    assert api.call("POST", "/v1/sales-orders/SO-2/release", "sales", {"reason": "ok"}).status_code == 403
    assert api.call("POST", "/v1/sales-orders/SO-2/release", "credit_manager", {"reason": "ok"}).status_code == 200
    assert api.call("POST", "/v1/customers/ACME/credit-hold/release", "credit_manager", {"reason": "paid", "released_on": "2026-01-14"}).status_code == 200
    unknown = api.call("POST", "/v1/sales-orders/NOPE/cancellation", "sales", {"cancelled_on": "2026-01-14", "reason": "x"})
    assert (unknown.status_code, unknown.json()["field"]) == (404, "order_id")
