"""The HTTP API end to end on both stores: commands, queries, errors, idempotency, actors."""

from __future__ import annotations

import pytest

from domain.registry import account_id

CUSTOMER = {"customer_id": "ACME", "name": "Acme GmbH", "currency": "EUR", "payment_terms_days": 30}
INVOICE = {"customer_id": "ACME", "invoice_number": "INV-1", "currency": "EUR", "amount_minor": 10_000, "issue_date": "2026-01-15"}


def seed(api) -> None:
    assert api.call("POST", "/v1/customers", "sales", CUSTOMER).status_code == 201
    assert api.call("POST", "/v1/invoices", "sales", INVOICE).status_code == 201


def test_a_sale_is_paid_and_the_account_shows_it(api):
    seed(api)
    paid = api.call("POST", "/v1/payments", "finance", {"customer_id": "ACME", "payment_id": "PAY-1", "currency": "EUR", "amount_minor": 4_000, "value_date": "2026-02-01"})
    assert paid.status_code == 201 and paid.json()["events"][0]["type"] == "PaymentReceived"
    allocated = api.call("POST", "/v1/payments/PAY-1/allocations", "finance", {"invoice_number": "INV-1"})
    assert allocated.status_code == 201 and allocated.json()["command"] == "AllocatePayment"
    account = api.call("GET", "/v1/customers/ACME", "auditor").json()
    assert account["open_minor"] == 6_000
    assert account["open_invoices"][0]["invoice_number"] == "INV-1"
    assert account["payments"][0]["unallocated_minor"] == 0
    invoice = api.call("GET", "/v1/invoices/INV-1", "collector").json()
    assert (invoice["customer_id"], invoice["open_minor"], invoice["status"]) == ("ACME", 6_000, "open")
    credited = api.call("POST", "/v1/credit-notes", "finance", {"customer_id": "ACME", "credit_note_number": "CN-1", "currency": "EUR", "amount_minor": 6_000, "issue_date": "2026-02-02", "invoice_number": "INV-1"})
    assert credited.status_code == 201
    assert api.call("GET", "/v1/invoices/INV-1", "sales").json()["status"] == "settled"
    reversed_ = api.call("POST", "/v1/payments/PAY-1/reversal", "finance", {"reversed_on": "2026-02-03", "reason": "bounced"})
    assert reversed_.status_code == 200
    assert api.call("GET", "/v1/invoices/INV-1", "sales").json()["open_minor"] == 4_000


def test_disputes_terms_and_customer_updates(api):
    seed(api)
    assert api.call("POST", "/v1/invoices/INV-1/disputes", "collector", {"disputed_on": "2026-02-01", "reason": "damaged"}).status_code == 201
    assert api.call("GET", "/v1/invoices/INV-1", "auditor").json()["disputed"] is True
    assert api.call("POST", "/v1/invoices/INV-1/dispute-resolution", "collector", {"resolved_on": "2026-02-05", "resolution": "ok"}).status_code == 200
    assert api.call("PUT", "/v1/customers/ACME/payment-terms", "credit_manager", {"payment_terms_days": 45}).status_code == 200
    assert api.call("PATCH", "/v1/customers/ACME", "sales", {"email": "ap@acme.test"}).status_code == 200
    account = api.call("GET", "/v1/customers/ACME", "auditor").json()
    assert (account["payment_terms_days"], account["email"], account["version"]) == (45, "ap@acme.test", 6)


def test_write_off_needs_a_second_person_and_recoveries_follow(api):
    seed(api)
    requested = api.call("POST", "/v1/write-offs", "finance", {"write_off_id": "WO-1", "invoice_number": "INV-1", "amount_minor": 10_000, "reason": "insolvent"}, name="pat")
    assert requested.status_code == 201
    # pat changes job: the finance key is revoked and pat becomes a credit manager
    api.keys.revoke("pat")
    api.forget("pat")
    before = api.head()
    refused = api.call("POST", "/v1/write-offs/WO-1/approval", "credit_manager", {"effective_date": "2026-03-31"}, name="pat")
    assert refused.status_code == 422
    assert (refused.json()["field"], refused.json()["rule"]) == ("actor", "four_eyes")
    assert api.head() == before
    approved = api.call("POST", "/v1/write-offs/WO-1/approval", "credit_manager", {"effective_date": "2026-03-31"})
    assert approved.status_code == 200
    assert api.call("POST", "/v1/invoices/INV-1/recoveries", "finance", {"amount_minor": 500, "received_on": "2026-06-01"}).status_code == 201
    invoice = api.call("GET", "/v1/invoices/INV-1", "auditor").json()
    assert (invoice["written_off_minor"], invoice["recovered_minor"]) == (10_000, 500)
    assert api.call("POST", "/v1/write-offs", "finance", {"write_off_id": "WO-2", "invoice_number": "INV-1", "amount_minor": 1, "reason": "x"}).status_code == 422
    assert api.call("POST", "/v1/write-offs/WO-1/rejection", "credit_manager", {"reason": "late"}).json()["rule"] == "is_pending"


def test_the_actor_is_the_key_name_never_the_body(api):
    assert api.call("POST", "/v1/customers", "sales", CUSTOMER, name="alice").status_code == 201
    sneaky = api.call("POST", "/v1/invoices", "sales", {**INVOICE, "actor": "mallory"}, name="alice")
    assert sneaky.status_code == 422 and sneaky.json()["rule"] == "unknown_field"
    assert api.call("POST", "/v1/invoices", "sales", INVOICE, name="alice").status_code == 201
    events = list(api.ledger_app.store.events.get(account_id("ACME")))
    assert {e.actor for e in events} == {"alice"}


def test_correlation_id_is_echoed_and_recorded(api):
    response = api.call("POST", "/v1/customers", "sales", CUSTOMER, **{"X-Correlation-ID": "0b0e5d2c-8c1a-4a57-9a55-b2f1c6a0d111"})
    assert response.headers["x-correlation-id"] == "0b0e5d2c-8c1a-4a57-9a55-b2f1c6a0d111"
    event = next(iter(api.ledger_app.store.events.get(account_id("ACME"))))
    assert str(event.correlation_id) == "0b0e5d2c-8c1a-4a57-9a55-b2f1c6a0d111"
    generated = api.call("GET", "/v1/customers/ACME", "sales")
    assert len(generated.headers["x-correlation-id"]) == 36


def test_the_customer_list_pages_with_a_cursor(api):
    for i in range(5):
        assert api.call("POST", "/v1/customers", "sales", {**CUSTOMER, "customer_id": f"C{i}"}).status_code == 201
    seen, cursor = [], None
    while True:
        page = api.call("GET", "/v1/customers?limit=2" + (f"&cursor={cursor}" if cursor else ""), "auditor").json()
        seen += [c["customer_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"C{i}" for i in range(5)]


BAD_REQUESTS = [
    ("malformed JSON", b'{"customer_id": ', 400, "body", "json"),
    ("not an object", b"[1, 2]", 422, "body", "type"),
    ("unknown field", b'{"customer_id":"ACME","invoice_number":"I","currency":"EUR","amount_minor":1,"issue_date":"2026-01-01","colour":"red"}', 422, "colour", "unknown_field"),
    ("wrong type", b'{"customer_id":"ACME","invoice_number":"I","currency":"EUR","amount_minor":"100","issue_date":"2026-01-01"}', 422, "amount_minor", "type"),
    ("out of range", b'{"customer_id":"ACME","invoice_number":"I","currency":"EUR","amount_minor":0,"issue_date":"2026-01-01"}', 422, "amount_minor", "range"),
    ("bad date", b'{"customer_id":"ACME","invoice_number":"I","currency":"EUR","amount_minor":1,"issue_date":"2026-02-30"}', 422, "issue_date", "format"),
    ("missing field", b'{"customer_id":"ACME","invoice_number":"I","currency":"EUR","amount_minor":1}', 422, "issue_date", "required"),
    ("unknown customer", b'{"customer_id":"NOPE","invoice_number":"I","currency":"EUR","amount_minor":1,"issue_date":"2026-01-01"}', 404, "customer_id", "must_exist"),
    ("duplicate invoice", b'{"customer_id":"ACME","invoice_number":"INV-1","currency":"EUR","amount_minor":1,"issue_date":"2026-01-01"}', 409, "invoice_number", "must_be_unique"),
    ("business rule", b'{"customer_id":"ACME","invoice_number":"I","currency":"EUR","amount_minor":1,"issue_date":"2026-01-02","due_date":"2026-01-01"}', 422, "due_date", "not_before_issue_date"),
]


@pytest.mark.parametrize(("case", "body", "status", "field", "rule"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_is_a_problem_naming_field_and_rule_and_records_nothing(api, case, body, status, field, rule):
    seed(api)
    before = api.head()
    response = api.client.post("/v1/invoices", content=body, headers=api.headers("sales", **{"Content-Type": "application/json"}))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert (problem["status"], problem["field"], problem["rule"]) == (status, field, rule)
    assert problem["type"].endswith(rule) and problem["title"] and problem["detail"]
    assert api.head() == before


def test_oversized_bodies_unknown_ids_and_routes_are_problems(api):
    seed(api)
    before = api.head()
    huge = {**INVOICE, "invoice_number": "BIG", "description": "x" * 100_000}
    assert api.call("POST", "/v1/invoices", "sales", huge).status_code == 413
    unknown = api.call("POST", "/v1/payments/NOPE/allocations", "finance", {})
    assert (unknown.status_code, unknown.json()["field"]) == (404, "payment_id")
    assert api.call("GET", "/v1/invoices/NOPE", "auditor").status_code == 404
    missing = api.client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    assert api.head() == before


def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(api):
    seed(api)
    body = {"customer_id": "ACME", "payment_id": "PAY-1", "currency": "EUR", "amount_minor": 100, "value_date": "2026-02-01"}
    first = api.call("POST", "/v1/payments", "finance", body, **{"Idempotency-Key": "pay-1"})
    head = api.head()
    again = api.call("POST", "/v1/payments", "finance", body, **{"Idempotency-Key": "pay-1"})
    assert again.status_code == first.status_code == 201
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert again.json()["events"] == first.json()["events"]
    assert api.head() == head
    other = api.call("POST", "/v1/payments", "finance", {**body, "amount_minor": 200}, **{"Idempotency-Key": "pay-1"})
    assert (other.status_code, other.json()["rule"], other.json()["field"]) == (422, "same_request", "Idempotency-Key")
    assert api.head() == head


def test_query_and_header_parameters_are_validated_as_problems(api):
    limit = api.call("GET", "/v1/customers?limit=0", "auditor")
    assert (limit.status_code, limit.json()["field"], limit.json()["rule"]) == (422, "limit", "range")
    cursor = api.call("GET", "/v1/customers?cursor=abc", "auditor")
    assert (cursor.status_code, cursor.json()["field"], cursor.json()["rule"]) == (422, "cursor", "type")
    seed(api)
    before = api.head()
    long_key = api.call("POST", "/v1/invoices", "sales", {**INVOICE, "invoice_number": "INV-2"}, **{"Idempotency-Key": "k" * 201})
    assert (long_key.status_code, long_key.json()["field"]) == (422, "Idempotency-Key")
    assert api.head() == before
