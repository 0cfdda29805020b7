"""The ledger application service: load an account, decide, save atomically.

One entry point, :meth:`LedgerService.execute` (or :meth:`~LedgerService.submit`, which
returns a future), handles every ledger command:

* it resolves which customer account a command is about (directly, or through the
  registry of invoice/payment/write-off references);
* runs the account's rule checks (nothing is recorded if one fails);
* saves the account's new events together with any reference claim and the
  idempotency record atomically, so a duplicate invoice number, a repeated
  idempotency key or a concurrent writer makes that command's save fail as a whole;
* on an optimistic-concurrency clash decides it again on the store's state, a few
  times, then reports :class:`ConcurrencyConflict` (HTTP 409) - a clash is never lost
  or half-applied.

Commands submitted while a save is being flushed are decided one after another on the
accounts as the earlier ones leave them, and saved together with one durable commit
(:mod:`services.group_commit`), each in its own savepoint: a refused or colliding
command never fails the others, and each caller gets its own answer.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import structlog
from eventsourcing.application import AggregateNotFoundError

from domain import commands as cmd
from domain.account import CommandContext, CustomerAccount, project_account, take_snapshot
from domain.errors import AlreadyExists, LedgerError, NotFound, RuleViolation
from domain.registry import CommandRecorded, account_id, claim, event_id, idempotency_id, reference_id
from services.group_commit import Group, Outcome, Reader, row_maker, write_groups
from services.persistence import LedgerStore

log = structlog.get_logger("arledger.ledger")

MAX_ATTEMPTS = 10


def _log(level: str, event: str, **fields: Any) -> None:
    """Log from the committer. A log stream that fails (closed, full) must not change any
    command's outcome, as the standard library's logging handlers ensure."""
    try:
        getattr(log, level)(event, **fields)
    except Exception:  # noqa: BLE001, S110 - nothing better to do with a broken log stream
        pass


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


class CommitStats(msgspec.Struct):
    """What a ledger's committer wrote: transactions, commands saved, seconds spent."""

    commits: int = 0
    commands: int = 0
    seconds: float = 0.0


class _Pending:
    """A submitted command: what to run, as whom, in whose context, and where to answer
    (a thread's future, or an event loop's future)."""

    __slots__ = ("command", "actor", "correlation_id", "idempotency_key", "fingerprint", "context", "future", "loop", "attempt", "started",
                 "answered", "seq", "collided")

    def __init__(self, command: cmd.Command, actor: str, correlation_id: UUID, idempotency_key: str | None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.command = command
        self.actor = actor
        self.correlation_id = correlation_id
        self.idempotency_key = idempotency_key
        self.fingerprint = fingerprint(command) if idempotency_key else ""
        # The caller's context: the credit policy in force and the request's log context
        # (correlation id) apply while the committer decides and logs this command.
        self.context = contextvars.copy_context()
        self.loop = loop
        self.future: Any = Future() if loop is None else loop.create_future()
        self.attempt = 1  # store collisions count towards MAX_ATTEMPTS, waiting behind a refusal does not
        self.started = False
        self.answered = False
        self.seq = 0  # arrival order
        self.collided = False

    def wanted(self) -> bool:
        """False if the caller gave up (cancelled) before the command ran: skip it."""
        if self.started:
            return True
        self.started = True
        if self.loop is None:
            return self.future.set_running_or_notify_cancel()
        return not self.future.cancelled()


def _deliver(replies: list[tuple[Any, CommandResult | None, BaseException | None]]) -> None:
    """On the caller's event loop: settle the futures of one batch (one wake-up for all)."""
    for future, result, error in replies:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class _Decided:
    """A command decided in the current batch: its events and the rows to save."""

    __slots__ = ("item", "account", "events", "rows", "result", "version")

    def __init__(self, item: _Pending, account: CustomerAccount, events: list[Any], rows: list[Any], result: CommandResult) -> None:
        self.item, self.account, self.events, self.rows, self.result = item, account, events, rows, result
        self.version = events[-1].originator_version if events else account.version


class _Defer(Exception):
    """Decide this command in the next batch: a command before it in this batch was
    refused on the same account (whatever it did to the account, nothing builds on it),
    or used the same idempotency key (its saved record will answer this one)."""


class LedgerService:
    """Commands go through one committer thread per service, which decides them in
    arrival order and saves each batch with **one** durable commit (group commit, see
    :mod:`services.group_commit`): while one batch is being flushed to disk the next
    one queues, so under load many commands share a flush and each still gets its own
    result or error. ``execute`` waits for the answer, ``submit`` returns a future and
    ``execute_async`` is awaited by the HTTP API without holding a thread."""

    def __init__(self, store: LedgerStore, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock
        self._to_row = row_maker(store)
        self._reader = Reader(store)  # the committer's reads
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: list[_Pending] = []
        self._arrivals = 0
        self._idle = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._committer: int | None = None
        self._replies: dict[asyncio.AbstractEventLoop, list[tuple[Any, CommandResult | None, BaseException | None]]] = {}
        # The committer's own accounts, as its saved commands left them. Only the committer
        # thread touches them, and an account is dropped as soon as a command on it fails,
        # so they need no defensive copy (the shared repository cache copies every read).
        self._working: OrderedDict[UUID, CustomerAccount] = OrderedDict()
        self._working_size = max(store.settings.aggregate_cache_size, 1)
        self._stats = CommitStats()

    def commit_stats(self) -> CommitStats:
        """Transactions written so far, the commands saved in them, and the time spent
        writing and flushing them (for metrics: commands per commit shows the grouping)."""
        return msgspec.structs.replace(self._stats)

    def close(self) -> None:
        """Finish what was submitted, then stop the committer thread."""
        with self._lock:
            self._closed = True
            self._wakeup.notify()
            thread = self._thread
        if thread is not None and thread.ident != threading.get_ident():
            thread.join()
            self._reader.close()

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
        return self._reader.first_event(idempotency_id(actor, key))

    # ---- the command path --------------------------------------------------------------

    def execute(self, command: cmd.Command, *, actor: str, correlation_id: UUID | None = None, idempotency_key: str | None = None) -> CommandResult:
        """Run a command and wait until it is recorded (or refused)."""
        if threading.get_ident() == self._committer:
            raise RuntimeError("a command cannot run another command while it is being decided")
        return self.submit(command, actor=actor, correlation_id=correlation_id, idempotency_key=idempotency_key).result()

    def submit(self, command: cmd.Command, *, actor: str, correlation_id: UUID | None = None, idempotency_key: str | None = None) -> Future[CommandResult]:
        """Queue a command for the committer; the future holds its result or its error."""
        item = self._pending(command, actor, correlation_id, idempotency_key, None)
        self._enqueue(item)
        return item.future

    async def execute_async(self, command: cmd.Command, *, actor: str, correlation_id: UUID | None = None, idempotency_key: str | None = None) -> CommandResult:
        """Run a command from an event loop: queued now (in the caller's context), answered
        on this loop when its batch is saved. Cancelling the wait before the command runs
        records nothing; once it runs it is recorded or refused as usual."""
        item = self._pending(command, actor, correlation_id, idempotency_key, asyncio.get_running_loop())
        self._enqueue(item)
        return await item.future

    @staticmethod
    def _pending(command: cmd.Command, actor: str, correlation_id: UUID | None, key: str | None, loop: asyncio.AbstractEventLoop | None) -> _Pending:
        if not actor or not actor.strip():
            raise RuleViolation("actor", "required", "every command needs an actor")
        return _Pending(command, actor, correlation_id or uuid.uuid4(), key, loop)

    def _enqueue(self, item: _Pending) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the ledger service is closed")
            item.seq = self._arrivals = self._arrivals + 1
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._commit_loop, name="ledger-commit", daemon=True)
                self._thread.start()
            elif self._idle:
                self._wakeup.notify()

    def _commit_loop(self) -> None:
        """The committer: take everything queued, run it as one batch; sleep when idle."""
        self._committer = threading.get_ident()
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._idle = True
                    self._wakeup.wait()
                self._idle = False
                if not self._queue:  # closed and nothing left
                    return
                batch, self._queue = self._queue, []
            try:
                retry = self._run_batch(batch)
                self._send_replies()
            except BaseException as exc:  # a bug: never leave a caller waiting
                for item in batch:
                    if not item.answered:
                        self._answer(item, error=exc)
                self._send_replies()
                _log("exception", "command_batch_failed", commands=len(batch))
                if not isinstance(exc, Exception):
                    with self._lock:
                        self._thread = None  # the next command starts a new committer
                    raise
                continue
            if retry:
                with self._lock:
                    self._queue[:0] = retry  # first in the next batch, in their order

    def _answer(self, item: _Pending, result: CommandResult | None = None, error: BaseException | None = None) -> None:
        item.answered = True
        if item.loop is None:
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(result)
            return
        self._replies.setdefault(item.loop, []).append((item.future, result, error))

    def _send_replies(self) -> None:
        replies, self._replies = self._replies, {}
        for loop, batch in replies.items():
            try:
                loop.call_soon_threadsafe(_deliver, batch)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _run_batch(self, batch: list[_Pending]) -> list[_Pending]:
        """Decide every command of ``batch`` on the accounts as the batch leaves them,
        save all in one transaction, answer each; return those to decide again."""
        accounts: dict[UUID, tuple[CustomerAccount, int]] = {}  # account id -> (account, version loaded)
        tainted: set[UUID] = set()
        keys: set[tuple[str, str]] = set()  # (actor, idempotency key) of this batch's commands
        decided: list[_Decided] = []
        retry: list[_Pending] = []
        for item in batch:
            if not item.wanted():
                item.answered = True  # the caller gave up before it ran: nothing recorded
                continue
            try:
                outcome = item.context.run(self._decide_item, item, accounts, tainted, keys)
            except _Defer:
                retry.append(item)
            except Exception as exc:  # noqa: BLE001 - a refused command: its caller gets the error
                self._answer(item, error=exc)
            else:
                if isinstance(outcome, CommandResult):
                    self._answer(item, outcome)
                else:
                    decided.append(outcome)
        if not decided:
            return self._again(retry)
        self._send_replies()  # replays and refusals need not wait for the flush
        started = time.perf_counter()
        try:
            outcomes = write_groups(self.store, [Group(d.account.id, d.rows) for d in decided])
        except Exception as exc:  # noqa: BLE001 - the transaction failed: nothing of it was recorded
            for d in decided:
                self._answer(d.item, error=exc)
            return self._again(retry)
        stats = self._stats
        stats.commits += 1
        stats.commands += outcomes.count(Outcome.SAVED)
        stats.seconds += time.perf_counter() - started
        unsaved: set[UUID] = set()
        for d, saved in zip(decided, outcomes):
            if saved is Outcome.SAVED:
                self._answer(d.item, d.result)
                continue
            unsaved.add(d.account.id)
            d.item.collided = True
            if saved is Outcome.SKIPPED:
                retry.append(d.item)
                continue
            try:
                replay = d.item.context.run(self._after_conflict, d)
            except Exception as exc:  # noqa: BLE001 - the conflict broke a rule (duplicate number...)
                self._answer(d.item, error=exc)
                continue
            if replay is not None:
                self._answer(d.item, replay)
            else:
                retry.append(d.item)
        self._send_replies()
        # Saved and answered: what follows may fail without failing a command.
        for d, saved in zip(decided, outcomes):
            if saved is Outcome.SAVED:
                d.item.context.run(self._recorded, d)
        for aid, (account, loaded) in accounts.items():
            if aid not in unsaved and aid not in tainted:
                self._remember(account, loaded)
        return self._again(retry)

    def _again(self, items: list[_Pending]) -> list[_Pending]:
        """The commands to decide again, in arrival order; one that collided in the store
        MAX_ATTEMPTS times is answered with :class:`ConcurrencyConflict`."""
        again = []
        for item in sorted(items, key=lambda i: i.seq):
            if item.collided:
                item.collided = False
                item.attempt += 1
            if item.attempt > MAX_ATTEMPTS:
                self._answer(item, error=ConcurrencyConflict(f"account kept changing under {MAX_ATTEMPTS} attempts; retry the command"))
            else:
                again.append(item)
        return again

    def _decide_item(
        self, item: _Pending, accounts: dict[UUID, tuple[CustomerAccount, int]], tainted: set[UUID], keys: set[tuple[str, str]],
    ) -> _Decided | CommandResult:
        command, key = item.command, item.idempotency_key
        if key:
            replay = self._replay(item.actor, key, item.fingerprint)
            if replay is not None:
                _log("info", "command_replayed", actor=item.actor, correlation_id=str(item.correlation_id), command=type(command).__name__, idempotency_key=key)
                return replay
            if (item.actor, key) in keys:
                raise _Defer  # a repeat of a command in this batch: answered from its record once saved
            keys.add((item.actor, key))
        ctx = CommandContext(actor=item.actor, recorded_at=self.clock(), correlation_id=item.correlation_id, causation_id=uuid.uuid4())
        account = self._decide(command, ctx, accounts, tainted)
        events = account.collect_events()
        result = CommandResult(
            customer_id=account.state.customer_id, command=type(command).__name__,
            events=[EventRef(type(e).__name__, str(e.event_id), e.originator_version) for e in events],
        )
        extras = self._claims(command, ctx, account.state.customer_id)
        if key:
            extras.append(self._idempotency_record(ctx, key, item.fingerprint, result))
        to_row = self._to_row
        return _Decided(item, account, events, [to_row(e) for e in events] + [to_row(e) for e in extras], result)

    def _decide(self, command: cmd.Command, ctx: CommandContext, accounts: dict[UUID, tuple[CustomerAccount, int]], tainted: set[UUID]) -> CustomerAccount:
        """Run the command's rules on the account as this batch has left it."""
        if isinstance(command, cmd.RegisterCustomer):
            account = CustomerAccount.register(ctx, **msgspec.structs.asdict(command))
            if account.id in tainted:
                raise _Defer
            if account.id not in accounts:  # (a second registration collides when saved)
                accounts[account.id] = (account, 0)
            return account
        customer_id = getattr(command, "customer_id", None)
        if customer_id is None:
            kind, field = type(command).targets  # type: ignore[misc]
            reference = getattr(command, field)
            claimed = self._reader.first_event(reference_id(kind, reference))
            if claimed is None:
                raise NotFound(field, reference, kind.replace("_", " "))
            customer_id = claimed.customer_id
        aid = account_id(customer_id)
        if aid in tainted:
            raise _Defer
        if aid in accounts:
            account = accounts[aid][0]
        else:
            account = self._load(customer_id, aid)
            accounts[aid] = (account, account.version)
        try:
            decide(account, ctx, command)
        except Exception:
            tainted.add(aid)  # whatever a refused command did to the account, nothing builds on it
            raise
        return account

    def _load(self, customer_id: str, aid: UUID) -> CustomerAccount:
        """The committer's account, caught up with what other processes saved since."""
        account = self._working.pop(aid, None)
        if account is None:
            return self.account(customer_id)  # a copy from the shared cache, or loaded
        newer = self._reader.events_after(aid, account.version)
        return project_account(account, newer) or account

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

    def _after_conflict(self, d: _Decided) -> CommandResult | None:
        """A command's save collided: the rule it broke (raised), the first answer to
        its idempotency key, or None to decide it again on the store's current state."""
        item = d.item
        self._explain_conflict(item.command, item.actor, item.idempotency_key)
        replay = self._replay(item.actor, item.idempotency_key, item.fingerprint) if item.idempotency_key else None
        if replay is None:
            _log("warning", "command_conflict_retry", actor=item.actor, correlation_id=str(item.correlation_id), command=type(item.command).__name__,
                 attempt=item.attempt, customer_id=d.result.customer_id)
        return replay

    def _explain_conflict(self, command: cmd.Command, actor: str, key: str | None) -> None:
        """Turn a store conflict that is not a concurrent write into the rule it broke."""
        if key is not None and self._recorded_command(actor, key) is not None:
            return  # the key's first answer is replayed
        if isinstance(command, cmd.RegisterCustomer):
            raise AlreadyExists("customer_id", command.customer_id, "customer")
        if command.creates is not None:
            kind, field = command.creates
            reference = getattr(command, field)
            if self._reader.first_event(reference_id(kind, reference)) is not None:
                raise AlreadyExists(field, reference, kind.replace("_", " "))

    def _recorded(self, d: _Decided) -> None:
        _log("info", "command_recorded", actor=d.item.actor, correlation_id=str(d.item.correlation_id), command=d.result.command,
                 customer_id=d.result.customer_id, events=[r.type for r in d.result.events], version=d.version)

    def _remember(self, account: CustomerAccount, loaded: int) -> None:
        """A batch saved every change it made to ``account``: the committer keeps it for
        the next command on it, and snapshots it when due."""
        self._working[account.id] = account
        if len(self._working) > self._working_size:
            self._working.popitem(last=False)
        interval = self.store.settings.snapshot_interval
        if self.store.snapshots is None or interval <= 0:
            return
        if account.version // interval > loaded // interval:
            try:
                self.store.snapshots.put([take_snapshot(account)])
            except Exception:  # noqa: BLE001 - a snapshot only speeds up loading; the events are saved
                _log("exception", "snapshot_failed", customer_id=account.state.customer_id, version=account.version)
