"""Concurrent HTTP commands share commits and each gets its own answer (both stores).

Each request is sent from its own thread; the test client runs them as concurrent tasks
on the app's event loop, as uvicorn does for concurrent connections."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.integration.test_group_commit import Gate


def invoice(n: int, number: str | None = None, **extra: object) -> dict:
    return {"customer_id": f"C{n % 3}", "invoice_number": number or f"INV-{n}", "currency": "EUR", "amount_minor": 100 + n,
            "issue_date": "2026-01-15", **extra}


def test_concurrent_requests_are_answered_each_and_saved_in_shared_commits(api, monkeypatch):
    for n in range(3):
        assert api.call("POST", "/v1/customers", "sales", {"customer_id": f"C{n}", "name": f"C{n}", "currency": "EUR"}, name="clerk").status_code == 201
    gate = Gate(monkeypatch)
    post = lambda body, **headers: api.call("POST", "/v1/invoices", "sales", body, name="clerk", **headers)  # noqa: E731
    with ThreadPoolExecutor(max_workers=40) as pool:
        first = pool.submit(post, invoice(99))
        assert gate.entered.wait(30)
        requests = [pool.submit(post, invoice(n), **{"Idempotency-Key": f"k{n}"}) for n in range(30)]
        requests.append(pool.submit(post, invoice(5), **{"Idempotency-Key": "k5"}))  # a repeat
        requests.append(pool.submit(post, invoice(7, "INV-8")))  # a number taken meanwhile
        requests.append(pool.submit(post, invoice(1, "INV-X", due_date="2025-01-01")))  # a broken rule
        deadline_ok = gate.queued(api.ledger_app.ledger, len(requests))
        gate.release.set()
        responses = [r.result(60) for r in requests]
        assert first.result(60).status_code == 201
    assert deadline_ok
    assert [r.status_code for r in responses[:30]] == [201] * 30
    replay, taken, broken = responses[30:]
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["events"] == responses[5].json()["events"]
    assert taken.status_code == 409 and taken.json()["field"] == "invoice_number"
    assert broken.status_code == 422 and broken.json()["field"] == "due_date"
    assert len(gate.sizes) < len(requests)  # shared commits
    invoices = {}
    for n in range(3):
        account = api.ledger_app.ledger.account(f"C{n}")
        invoices.update(account.state.invoices)
        events = list(api.ledger_app.store.events.get(account.id))
        assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
        assert all(e.actor == "clerk" for e in events)  # the key's name, never the body
    assert sorted(invoices) == sorted([f"INV-{n}" for n in range(30)] + ["INV-99"])
