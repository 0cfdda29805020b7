"""Collections wired into the risk profile and credit management, on SQLite and PostgreSQL:
broken and kept promises (the clock's facts) counted in the risk profile at its cut,
bringing a credit review forward, reviews recorded by the clock tick, the dunning track
by grade, and the broken-promise early warning."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from domain import collections_commands as cc
from domain import commands as c
from projections.db import ViewDatabase
from projections.risk import all_profiles, customer_profile, resolve_cut
from services.clock.wiring import build_clock
from tests.integration.test_clock import POLICY, facts, setup_ledger
from tests.integration.test_risk import catch_up

D = date


def promise(app, pid, made, promised, amount, tolerance=0):
    app.ledger.execute(cc.MakePromiseToPay(customer_id="ACME", promise_id=pid, made_on=made, promised_date=promised,
                                           currency="EUR", amount_minor=amount, tolerance_days=tolerance), actor="collector")


def three_promises(app) -> None:
    """PR1 broken on Mar 11; PR2 kept on Mar 15 (300 paid); PR3 broken on Mar 28 (tolerance 2)."""
    setup_ledger(app, "I1")
    promise(app, "PR1", D(2026, 3, 4), D(2026, 3, 10), 500)
    promise(app, "PR2", D(2026, 3, 12), D(2026, 3, 20), 300)
    app.ledger.execute(c.ReceivePayment(customer_id="ACME", payment_id="P1", currency="EUR", amount_minor=300,
                                        value_date=D(2026, 3, 15)), actor="cash")
    promise(app, "PR3", D(2026, 3, 16), D(2026, 3, 25), 2000, tolerance=2)


def test_broken_and_kept_promises_count_in_the_risk_profile_at_its_cut(app, clock):
    db = ViewDatabase(app.settings.resolved_database_url)
    try:
        three_promises(app)
        ticker = build_clock(app, db, policy=POLICY)
        ticker.tick(D(2026, 3, 20))  # PR1 broken (Mar 11), PR2 kept (Mar 15)
        position = catch_up(app, db)
        known_at = clock()
        clock.advance(days=10)
        ticker.tick(D(2026, 3, 31))  # PR3 broken (Mar 28)
        catch_up(app, db)

        def promises(as_of, **cut):
            return customer_profile(db, "ACME", resolve_cut(db, as_of, **cut), trend_months=0).promises

        now = promises(D(2026, 3, 31))
        assert (now.kept, now.broken, now.kept_rate, now.last_broken_on) == (1, 2, Decimal("0.3333"), D(2026, 3, 28))
        mid = promises(D(2026, 3, 20))  # as of a business date: PR3 is not broken yet
        assert (mid.kept, mid.broken, mid.kept_rate, mid.last_broken_on) == (1, 1, Decimal("0.5000"), D(2026, 3, 11))
        early = promises(D(2026, 3, 12))
        assert (early.kept, early.broken, early.kept_rate) == (0, 1, Decimal("0.0000"))
        assert promises(D(2026, 3, 10)).kept_rate is None
        # a promise broken after the cut does not count: at the earlier position, as known then
        assert (promises(D(2026, 3, 31), at_position=position).broken, promises(D(2026, 3, 31), known_at=known_at).broken) == (1, 1)
        book = {p.customer_id: p.promises for p in all_profiles(db, resolve_cut(db, D(2026, 3, 31)))}
        assert (book["ACME"].kept, book["ACME"].broken) == (1, 2)
        old = {p.customer_id: p.promises for p in all_profiles(db, resolve_cut(db, D(2026, 3, 31), at_position=position))}
        assert (old["ACME"].kept, old["ACME"].broken) == (1, 1)
    finally:
        db.close()


def test_risk_cli_shows_promises_and_reproduces_a_report_after_a_later_broken_promise(app, clock, database_url):
    import json

    from tests.integration.test_risk_cli import risk

    db = ViewDatabase(app.settings.resolved_database_url)
    try:
        three_promises(app)
        ticker = build_clock(app, db, policy=POLICY)
        ticker.tick(D(2026, 3, 20))
        first = risk(database_url, "ACME", "--as-of", "2026-03-31", "--json").stdout
        assert json.loads(first)["promises"] == {"kept": 1, "broken": 1, "kept_rate": 0.5, "last_broken_on": "2026-03-11"}
        ticker.tick(D(2026, 3, 31))
        now = json.loads(risk(database_url, "ACME", "--as-of", "2026-03-31", "--json").stdout)
        assert (now["promises"]["broken"], now["promises"]["kept_rate"]) == (2, 0.3333)
        position = str(json.loads(first)["position"])
        assert risk(database_url, "ACME", "--as-of", "2026-03-31", "--at-position", position, "--json").stdout == first
        card = risk(database_url, "ACME", "--as-of", "2026-03-31").stdout.decode()
        assert "1 / 2 (kept 33.3%)" in card
    finally:
        db.close()
