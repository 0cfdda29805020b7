"""The ledger application service: load an account, decide, save atomically.

One public entry point, :meth:`LedgerService.execute`, handles every ledger command:

* it resolves which customer account a command is about (directly, or through the
  registry of invoice/payment/write-off references);
* runs the account's rule checks (nothing is recorded if one fails);
* saves the account's new events together with any reference claim and the
  idempotency record in **one** atomic save, so a duplicate invoice number, a
  repeated idempotency key or a concurrent writer makes the whole save fail;
* on an optimistic-concurrency clash reloads and retries a few times, then reports
  :class:`ConcurrencyConflict` (HTTP 409) - a clash is never lost or half-applied.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import structlog
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from domain import commands as cmd
from domain.account import CommandContext, CustomerAccount, project_account, take_snapshot
from domain.errors import AlreadyExists, LedgerError, NotFound, RuleViolation
from domain.registry import CommandRecorded, account_id, claim, event_id, idempotency_id, reference_id
from services.persistence import LedgerStore

log = structlog.get_logger("arledger.ledger")

MAX_ATTEMPTS = 10


class ConcurrencyConflict(LedgerError):
    """Another writer kept changing the same account; the caller should retry."""


class IdempotencyKeyReused(RuleViolation):
    def __init__(self) -> None:
        super().__init__("Idempotency-Key", "same_request", "this idempotency key was already used for a different request")


class EventRef(msgspec.Struct, frozen=True):
    type: str
    event_id: str
    originator_version: int


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str
    command: str
    events: list[EventRef]
    replayed: bool = False


def utc_now() -> datetime:
    return datetime.now(UTC)


def fingerprint(command: cmd.Command) -> str:
    return hashlib.sha256(type(command).__name__.encode() + b"\0" + msgspec.json.encode(command)).hexdigest()


Handler = Callable[[CustomerAccount, CommandContext, Any], Any]

_HANDLERS: dict[type[cmd.Command], Handler] = {
    cmd.UpdateCustomer: lambda a, ctx, c: a.update(ctx, **{f: getattr(c, f) for f in ("name", "region", "industry", "salesperson", "country", "email")}),
    cmd.SetPaymentTerms: lambda a, ctx, c: a.set_payment_terms(ctx, c.payment_terms_days, c.reason),
    cmd.IssueInvoice: lambda a, ctx, c: a.issue_invoice(
        ctx, invoice_number=c.invoice_number, currency=c.currency, amount_minor=c.amount_minor, issue_date=c.issue_date,
        due_date=c.due_date, installments=[(i.due_date, i.amount_minor) for i in c.installments] or None,
        description=c.description, sales_order_id=c.sales_order_id,
    ),
    cmd.IssueCreditNote: lambda a, ctx, c: a.issue_credit_note(
        ctx, credit_note_number=c.credit_note_number, currency=c.currency, amount_minor=c.amount_minor,
        issue_date=c.issue_date, invoice_number=c.invoice_number, reason=c.reason,
    ),
    cmd.ReceivePayment: lambda a, ctx, c: a.receive_payment(
        ctx, payment_id=c.payment_id, currency=c.currency, amount_minor=c.amount_minor, value_date=c.value_date, method=c.method, reference=c.reference,
    ),
    cmd.AllocatePayment: lambda a, ctx, c: a.allocate_payment(
        ctx, payment_id=c.payment_id, invoice_number=c.invoice_number, installment=c.installment, amount_minor=c.amount_minor,
    ),
    cmd.ReversePayment: lambda a, ctx, c: a.reverse_payment(ctx, payment_id=c.payment_id, reversed_on=c.reversed_on, reason=c.reason),
    cmd.DisputeInvoice: lambda a, ctx, c: a.dispute_invoice(ctx, invoice_number=c.invoice_number, disputed_on=c.disputed_on, reason=c.reason, amount_minor=c.amount_minor),
    cmd.ResolveDispute: lambda a, ctx, c: a.resolve_dispute(ctx, invoice_number=c.invoice_number, resolved_on=c.resolved_on, resolution=c.resolution),
    cmd.RequestWriteOff: lambda a, ctx, c: a.request_write_off(ctx, write_off_id=c.write_off_id, invoice_number=c.invoice_number, amount_minor=c.amount_minor, reason=c.reason),
    cmd.ApproveWriteOff: lambda a, ctx, c: a.approve_write_off(ctx, write_off_id=c.write_off_id, effective_date=c.effective_date),
    cmd.RejectWriteOff: lambda a, ctx, c: a.reject_write_off(ctx, write_off_id=c.write_off_id, reason=c.reason),
    cmd.RecordRecovery: lambda a, ctx, c: a.record_recovery(ctx, invoice_number=c.invoice_number, amount_minor=c.amount_minor, received_on=c.received_on, reference=c.reference),
}


def register_handler(command_type: type[cmd.Command], handler: Handler) -> None:
    """Other contexts (credit, collections) add commands that act on the account."""
    _HANDLERS[command_type] = handler


def decide(account: CustomerAccount, ctx: CommandContext, command: cmd.Command) -> Any:
    """Run a command's rules on an account, which records its events (not yet saved).
    The bulk import calls this too, so imported rows get exactly a command's events."""
    try:
        handler = _HANDLERS[type(command)]
    except KeyError:
        raise RuleViolation("command", "known_command", f"no handler for {type(command).__name__}") from None
    return handler(account, ctx, command)


class LedgerService:
    def __init__(self, store: LedgerStore, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock

    # ---- queries used by commands ------------------------------------------------------

    def account(self, customer_id: str) -> CustomerAccount:
        try:
            return self.store.repository.get(account_id(customer_id), projector_func=project_account)
        except AggregateNotFoundError:
            raise NotFound("customer_id", customer_id, "customer") from None

    def owner_of(self, kind: str, reference: str, field: str) -> str:
        """The customer a document reference (invoice number, payment id...) belongs to."""
        claims = list(self.store.events.get(reference_id(kind, reference), limit=1))
        if not claims:
            raise NotFound(field, reference, kind.replace("_", " "))
        return claims[0].customer_id

    def _recorded_command(self, actor: str, key: str) -> CommandRecorded | None:
        found = list(self.store.events.get(idempotency_id(actor, key), limit=1))
        return found[0] if found else None

    # ---- the command path --------------------------------------------------------------

    def execute(self, command: cmd.Command, *, actor: str, correlation_id: UUID | None = None, idempotency_key: str | None = None) -> CommandResult:
        if not actor or not actor.strip():
            raise RuleViolation("actor", "required", "every command needs an actor")
        correlation_id = correlation_id or uuid.uuid4()
        print_ = fingerprint(command) if idempotency_key else ""
        bound = log.bind(actor=actor, correlation_id=str(correlation_id), command=type(command).__name__)
        if idempotency_key:
            replay = self._replay(actor, idempotency_key, print_)
            if replay is not None:
                bound.info("command_replayed", idempotency_key=idempotency_key)
                return replay
        for attempt in range(1, MAX_ATTEMPTS + 1):
            ctx = CommandContext(actor=actor, recorded_at=self.clock(), correlation_id=correlation_id, causation_id=uuid.uuid4())
            account = self._decide(command, ctx)
            events = account.collect_events()
            result = CommandResult(
                customer_id=account.state.customer_id, command=type(command).__name__,
                events=[EventRef(type(e).__name__, str(e.event_id), e.originator_version) for e in events],
            )
            extras = self._claims(command, ctx, account.state.customer_id)
            if idempotency_key:
                extras.append(self._idempotency_record(ctx, idempotency_key, print_, result))
            try:
                self.store.save(*events, *extras)
            except IntegrityError:
                self._explain_conflict(command, account, actor, idempotency_key, print_)
                replay = self._replay(actor, idempotency_key, print_) if idempotency_key else None
                if replay is not None:
                    return replay
                bound.warning("command_conflict_retry", attempt=attempt, customer_id=account.state.customer_id)
                time.sleep(random.uniform(0, 0.002 * 2**attempt))  # jittered backoff: let the other writer finish
                continue
            self._maybe_snapshot(account, len(events))
            bound.info("command_recorded", customer_id=account.state.customer_id, events=[r.type for r in result.events], version=account.version)
            return result
        raise ConcurrencyConflict(f"account kept changing under {MAX_ATTEMPTS} attempts; retry the command")

    def _decide(self, command: cmd.Command, ctx: CommandContext) -> CustomerAccount:
        if isinstance(command, cmd.RegisterCustomer):
            fields = msgspec.structs.asdict(command)
            return CustomerAccount.register(ctx, **fields)
        customer_id = getattr(command, "customer_id", None)
        if customer_id is None:
            kind, field = type(command).targets  # type: ignore[misc]
            customer_id = self.owner_of(kind, getattr(command, field), field)
        account = self.account(customer_id)
        decide(account, ctx, command)
        return account

    def _claims(self, command: cmd.Command, ctx: CommandContext, customer_id: str) -> list[Any]:
        if command.creates is None:
            return []
        kind, field = command.creates
        return [claim(kind, getattr(command, field), customer_id, **msgspec.structs.asdict(ctx))]

    @staticmethod
    def _idempotency_record(ctx: CommandContext, key: str, print_: str, result: CommandResult) -> CommandRecorded:
        iid = idempotency_id(ctx.actor, key)
        return CommandRecorded(
            originator_id=iid, originator_version=1, event_id=event_id(iid, 1), recorded_at=ctx.recorded_at, actor=ctx.actor,
            correlation_id=ctx.correlation_id, causation_id=ctx.causation_id, idempotency_key=key, fingerprint=print_,
            result=msgspec.to_builtins(result),
        )

    def _replay(self, actor: str, key: str, print_: str) -> CommandResult | None:
        recorded = self._recorded_command(actor, key)
        if recorded is None:
            return None
        if recorded.fingerprint != print_:
            raise IdempotencyKeyReused()
        first = msgspec.convert(recorded.result, CommandResult)
        return msgspec.structs.replace(first, replayed=True)

    def _explain_conflict(self, command: cmd.Command, account: CustomerAccount, actor: str, key: str | None, print_: str) -> None:
        """Turn a store conflict that is not a concurrent write into the rule it broke."""
        if isinstance(command, cmd.RegisterCustomer) and account.version == 1 and (key is None or self._recorded_command(actor, key) is None):
            raise AlreadyExists("customer_id", command.customer_id, "customer")
        if command.creates is not None and (key is None or self._recorded_command(actor, key) is None):
            kind, field = command.creates
            reference = getattr(command, field)
            if list(self.store.events.get(reference_id(kind, reference), limit=1)):
                raise AlreadyExists(field, reference, kind.replace("_", " "))

    def _maybe_snapshot(self, account: CustomerAccount, new_events: int) -> None:
        interval = self.store.settings.snapshot_interval
        if self.store.snapshots is None or interval <= 0:
            return
        if account.version // interval > (account.version - new_events) // interval:
            self.store.snapshots.put([take_snapshot(account)])
