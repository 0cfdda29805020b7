"""The credit service: the active policy, the credit command handlers, and the sweeps.

The policy is ledger-wide: the latest ``CreditPolicyChanged`` in the store, or - before
one was recorded - the file named by ``ARLEDGER_SCORECARD`` (settings ``scorecard``, or
``--policy``), or the
default shipped with arledger (``services/credit_policy.toml``). The account handlers
get it from :data:`_POLICY`, which :meth:`CreditService.submit` sets around each command,
so the domain functions receive the policy as a plain argument.
"""

from __future__ import annotations

import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError

from domain import commands as cmd
from domain import credit as cr
from domain import credit_commands as cc
from domain.account import CommandContext, CustomerAccount
from domain.credit_events import POLICY_ID, CreditAssessed, CreditPolicyChanged, PaymentBehaviour
from domain.credit_monitoring import herfindahl, needs_update, pending_review, reconcile_warnings, record_review, share_pct
from domain.errors import LedgerError, RuleViolation
from domain.events import CustomerRegistered
from domain.registry import event_id
from domain.scorecard import CreditPolicy, decode_policy
from projections.ar_items import ArItemsProjection
from projections.db import ViewDatabase
from projections.risk import broken_promise_dates, customer_profile, resolve_cut
from projections.runner import PositionMoved, ProjectionRunner
from services.ledger import CommandResult, LedgerService, register_handler
from services.persistence import LedgerStore, topic_of

log = structlog.get_logger("arledger.credit")

ActivePolicy = tuple[CreditPolicy, int]  # the policy and its version (0: not recorded yet)
_POLICY: ContextVar[ActivePolicy | None] = ContextVar("credit_policy", default=None)
#: the most recently built service's policy source (weak: a closed app is not kept alive)
_fallback: list[weakref.WeakMethod[Callable[[], ActivePolicy]]] = []


def load_policy_file(path: str | Path) -> CreditPolicy:
    """Decode a TOML or JSON policy file; errors name the file and the key."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuleViolation("policy", "readable_file", f"cannot read {path}: {exc.strerror}") from None
    try:
        return decode_policy(data, "json" if path.suffix == ".json" else "toml")
    except RuleViolation as exc:
        raise RuleViolation(exc.field, exc.rule, f"{path}: {exc.message}") from None


def default_policy(path: str | None = None) -> CreditPolicy:
    """The policy file in force before a policy is recorded (parsed once per file version)."""
    if path:
        try:
            modified = Path(path).stat().st_mtime_ns
        except OSError:
            modified = 0
        return _parsed_file(path, modified)
    return _shipped_policy()


@lru_cache(maxsize=8)
def _parsed_file(path: str, modified: int) -> CreditPolicy:
    return load_policy_file(path)


@lru_cache(maxsize=1)
def _shipped_policy() -> CreditPolicy:
    return decode_policy(resources.files("services").joinpath("credit_policy.toml").read_bytes())


def current_policy() -> ActivePolicy:
    """The policy of the command being handled (set by :meth:`CreditService.execute`);
    for credit-relevant ledger commands sent straight to the ledger (SetPaymentTerms),
    the policy of the most recently bootstrapped credit service, else the default."""
    active = _POLICY.get()
    if active is not None:
        return active
    source = _fallback[-1]() if _fallback else None
    return source() if source is not None else (default_policy(), 0)


def _policy() -> CreditPolicy:
    return current_policy()[0]


# ---- handlers: (account, context, command) -> events ------------------------------------------

Handler = Callable[[CustomerAccount, CommandContext, Any], Any]


def _place_order(a: CustomerAccount, ctx: CommandContext, c: cc.PlaceSalesOrder) -> None:
    cr.place_order(a, ctx, order_id=c.order_id, currency=c.currency, amount_minor=c.amount_minor, ordered_on=c.ordered_on, description=c.description)
    if c.check:
        policy, version = current_policy()
        cr.check_order(a, ctx, policy, order_id=c.order_id, checked_on=c.ordered_on, policy_version=version)


def _check_order(a: CustomerAccount, ctx: CommandContext, c: cc.CheckOrderCredit) -> None:
    policy, version = current_policy()
    cr.check_order(a, ctx, policy, order_id=c.order_id, checked_on=c.checked_on, policy_version=version)


def _warnings(a: CustomerAccount, ctx: CommandContext, c: cc.EvaluateEarlyWarnings) -> None:
    cr.reconcile_holds(a, ctx, _policy(), c.as_of)
    reconcile_warnings(a, ctx, _policy(), c.as_of, c.book_ar_minor, c.broken_promises)


HANDLERS: dict[type[cmd.Command], Handler] = {
    cc.AssessCredit: lambda a, ctx, c: cr.assess(
        a, ctx, _policy(), assessed_on=c.assessed_on, financial=c.financial, operating_state=c.operating_state, behaviour=c.behaviour),
    cc.SetCreditLimit: lambda a, ctx, c: cr.set_limit(a, ctx, _policy(), limit_minor=c.limit_minor, reason=c.reason, request_id=c.request_id),
    cc.ApproveCreditLimitIncrease: lambda a, ctx, c: cr.approve_limit(a, ctx, _policy(), request_id=c.request_id),
    cc.RejectCreditLimitIncrease: lambda a, ctx, c: cr.reject_limit(a, ctx, request_id=c.request_id, reason=c.reason),
    cc.RecordCreditInsurance: lambda a, ctx, c: cr.record_cover(
        a, ctx, kind="insurance", cover_id=c.cover_id, provider=c.insurer, currency=c.currency, covered_minor=c.covered_minor,
        valid_from=c.valid_from, valid_until=c.valid_until),
    cc.RecordGuarantee: lambda a, ctx, c: cr.record_cover(
        a, ctx, kind="guarantee", cover_id=c.cover_id, provider=c.guarantor, currency=c.currency, covered_minor=c.covered_minor,
        valid_from=c.valid_from, valid_until=c.valid_until),
    cc.PlaceSalesOrder: _place_order,
    cc.CheckOrderCredit: _check_order,
    cc.ReleaseHeldOrder: lambda a, ctx, c: cr.release_order(a, ctx, _policy(), order_id=c.order_id, reason=c.reason),
    cc.RejectHeldOrder: lambda a, ctx, c: cr.reject_order(a, ctx, _policy(), order_id=c.order_id, reason=c.reason),
    cc.CancelSalesOrder: lambda a, ctx, c: cr.cancel_order(a, ctx, order_id=c.order_id, cancelled_on=c.cancelled_on, reason=c.reason),
    cc.InvoiceSalesOrder: lambda a, ctx, c: cr.invoice_order(
        a, ctx, order_id=c.order_id, invoice_number=c.invoice_number, issue_date=c.issue_date, amount_minor=c.amount_minor, due_date=c.due_date),
    cc.PlaceCreditHold: lambda a, ctx, c: cr.place_hold(a, ctx, reason=c.reason, placed_on=c.placed_on),
    cc.ReleaseCreditHold: lambda a, ctx, c: cr.release_hold(a, ctx, reason=c.reason, released_on=c.released_on, cause=c.cause),
    cc.ReviewCredit: lambda a, ctx, c: record_review(a, ctx, _policy(), c.as_of, c.broken_promises_on),
    cc.EvaluateEarlyWarnings: _warnings,
    # the ledger's own command, now also bounded by the grade's maximum terms
    cmd.SetPaymentTerms: lambda a, ctx, c: cr.set_terms(a, ctx, _policy, payment_terms_days=c.payment_terms_days, reason=c.reason),
}

for _command, _handler in HANDLERS.items():
    register_handler(_command, _handler)


# ---- the service -----------------------------------------------------------------------------


class CreditService:
    def __init__(self, store: LedgerStore, ledger: LedgerService, policy_file: str | None = None, policy_ttl: float = 1.0) -> None:
        self.store = store
        self.ledger = ledger
        self.policy_file = policy_file
        #: how long a process reuses the policy it read (a change elsewhere shows within this)
        self.policy_ttl = policy_ttl
        self._cached: tuple[float, ActivePolicy] | None = None
        _fallback[:] = [weakref.WeakMethod(self.active_policy)]  # one process, one store: the latest

    # ---- the policy ------------------------------------------------------------------------

    def active_policy(self) -> ActivePolicy:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self.policy_ttl:
            return self._cached[1]
        recorded = list(self.store.events.get(POLICY_ID, desc=True, limit=1))
        active = (recorded[0].policy, recorded[0].originator_version) if recorded else (default_policy(self.policy_file), 0)
        self._cached = (now, active)
        return active

    def change_policy(self, policy: CreditPolicy, *, reason: str, actor: str) -> CreditPolicyChanged:
        """Record a new version of the policy table (optimistic: a concurrent change fails)."""
        if not reason.strip():
            raise RuleViolation("reason", "required", "say why the policy changes")
        self._cached = None  # decide the next version on what the store says now
        _, version = self.active_policy()
        event = CreditPolicyChanged(
            originator_id=POLICY_ID, originator_version=version + 1, event_id=event_id(POLICY_ID, version + 1),
            recorded_at=self.ledger.clock(), actor=actor, correlation_id=uuid.uuid4(), causation_id=uuid.uuid4(),
            policy=policy, reason=reason,
        )
        try:
            self.store.save(event)
        except IntegrityError:
            raise LedgerError("the credit policy changed meanwhile; retry") from None
        self._cached = (time.monotonic(), (policy, version + 1))
        log.info("credit_policy_changed", version=version + 1, actor=actor)
        return event

    @contextmanager
    def view(self) -> Iterator[ViewDatabase]:
        """The view database with ``ar_items`` caught up to the head of the stream."""
        db = ViewDatabase(self.store.settings.resolved_database_url)
        try:
            runner = ProjectionRunner(self.store, db, [ArItemsProjection()])
            runner.setup()
            try:
                runner.catch_up()
            except PositionMoved:  # a worker is advancing the view right now: read at its position
                pass
            yield db
        finally:
            db.close()

    def behaviour_from_risk(self, customer_id: str, as_of: date, *, broken_promises: int | None = None) -> PaymentBehaviour:
        """Payment behaviour from the customer's risk profile on ``as_of``, broken promises
        included (the clock's PromiseToPayBroken facts decided by then) unless given."""
        with self.view() as db:
            profile = customer_profile(db, customer_id, resolve_cut(db, as_of), trend_months=0)
        return cr.behaviour_from_profile(profile, broken_promises=broken_promises)

    # ---- commands --------------------------------------------------------------------------

    def execute(self, command: cmd.Command, *, actor: str, correlation_id: uuid.UUID | None = None, idempotency_key: str | None = None) -> CommandResult:
        return self.submit(command, actor=actor, correlation_id=correlation_id, idempotency_key=idempotency_key).result()

    async def execute_async(self, command: cmd.Command, *, actor: str, correlation_id: uuid.UUID | None = None, idempotency_key: str | None = None) -> CommandResult:
        """:meth:`execute` for an event loop (the HTTP API)."""
        token = _POLICY.set(self.active_policy())
        try:  # the ledger queues the command, in a copy of this context, before it first waits
            return await self.ledger.execute_async(command, actor=actor, correlation_id=correlation_id, idempotency_key=idempotency_key)
        finally:
            _POLICY.reset(token)

    def submit(self, command: cmd.Command, *, actor: str, correlation_id: uuid.UUID | None = None, idempotency_key: str | None = None) -> Future[CommandResult]:
        """Queue a command under the policy in force now (the ledger decides it in a copy
        of this context, so the policy travels with the command)."""
        token = _POLICY.set(self.active_policy())
        try:
            return self.ledger.submit(command, actor=actor, correlation_id=correlation_id, idempotency_key=idempotency_key)
        finally:
            _POLICY.reset(token)

    # ---- sweeps ----------------------------------------------------------------------------

    def customer_ids(self, event_type: type = CustomerRegistered) -> Iterator[str]:
        """Every registered customer, in registration order (read from the stream); with
        ``event_type`` (CreditAssessed), the customers with such an event, in order of the first."""
        topic, last, seen = topic_of(event_type), None, set()
        while True:
            batch = self.store.recorder.select_notifications(start=last, limit=1000, topics=[topic], inclusive_of_start=last is None)
            if not batch:
                return
            for n in batch:
                customer_id = self.store.mapper.to_domain_event(n).customer_id
                if customer_id not in seen:
                    seen.add(customer_id)
                    yield customer_id
            last = batch[-1].id

    def reviews(self, as_of: date, *, actor: str, db: ViewDatabase | None = None, assessed_only: bool = False) -> list[dict[str, Any]]:
        """Record CreditReviewDue for every customer due on ``as_of`` (idempotent). Broken
        promises to pay (read from the ``ar_items`` view, ``db`` if the caller has caught it
        up - the clock - else caught up here) bring a review forward like the account's signals.
        ``assessed_only`` (the clock): only reviews that time or a signal caused, not the
        first assessment of customers never assessed."""
        if db is None:
            with self.view() as fresh:
                return self.reviews(as_of, actor=actor, db=fresh, assessed_only=assessed_only)
        broken = broken_promise_dates(db, as_of)
        recorded = []
        token = _POLICY.set(self.active_policy())
        try:
            policy = _policy()
            for customer_id in self.customer_ids(CreditAssessed if assessed_only else CustomerRegistered):
                signals = broken.get(customer_id, ())
                pending = pending_review(self.ledger.account(customer_id).state, policy, as_of, signals)
                if pending is None:
                    continue  # nothing due or already recorded: no command, no save
                command = cc.ReviewCredit(customer_id=customer_id, as_of=as_of, broken_promises_on=signals)
                result = self.ledger.execute(command, actor=actor)
                if result.events:
                    recorded.append({"customer_id": customer_id, "review_id": pending[0]})
        finally:
            _POLICY.reset(token)
        return recorded

    def book(self, as_of: date) -> dict[str, dict[str, int]]:
        """Open AR per customer, per currency: the whole book (for concentration)."""
        book: dict[str, dict[str, int]] = {}
        for customer_id in self.customer_ids():
            state = self.ledger.account(customer_id).state
            book.setdefault(state.currency, {})[customer_id] = cr.open_ar(state)
        return book

    def warnings(self, as_of: date, *, actor: str) -> dict[str, Any]:
        """Raise/clear early warnings (and reconcile automatic holds) for every customer;
        report the concentration of the book (largest shares, Herfindahl index)."""
        book = self.book(as_of)
        with self.view() as db:
            broken = broken_promise_dates(db, as_of)
        totals = {currency: sum(amounts.values()) for currency, amounts in book.items()}
        changes: list[dict[str, Any]] = []
        token = _POLICY.set(self.active_policy())
        try:
            policy = _policy()
            window_from = as_of - timedelta(days=policy.warnings.broken_promises_window_days)
            for currency, amounts in book.items():
                for customer_id in amounts:
                    promises = sum(1 for day in broken.get(customer_id, ()) if day > window_from)
                    state = self.ledger.account(customer_id).state
                    if not needs_update(state, policy, as_of, totals[currency], promises):
                        continue
                    command = cc.EvaluateEarlyWarnings(customer_id=customer_id, as_of=as_of, book_ar_minor=totals[currency],
                                                       broken_promises=promises)
                    result = self.ledger.execute(command, actor=actor)
                    changes += [{"customer_id": customer_id, "event": ref.type} for ref in result.events]
        finally:
            _POLICY.reset(token)
        concentration = {
            currency: {
                "total_ar_minor": totals[currency],
                "herfindahl": str(herfindahl(amounts.values())),
                "largest": [
                    {"customer_id": c, "open_ar_minor": a, "share_pct": str(share_pct(a, totals[currency]))}
                    for c, a in sorted(amounts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
                ],
            }
            for currency, amounts in sorted(book.items())
        }
        return {"as_of": as_of.isoformat(), "recorded": changes, "concentration": concentration}
