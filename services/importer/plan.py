"""Decide an import in memory, with the account aggregate's own rules.

The import records exactly the events the :class:`~services.ledger.LedgerService` would
record for the same commands: each row goes through the same rule checks
(:meth:`CustomerAccount.check_invoice`, ``check_credit_note``, ``check_payment``,
``allocation_lines``) and gets the same events, built here directly with the same ids,
plus the :class:`ReferenceClaimed` registry event of each invoice, credit note and
payment. What the import skips is per-event plumbing a command needs and a batch of
100,000 rows does not: the command dispatch, the pending-events queue, and the
appliers other contexts chain onto the account (credit's running figures), which no
import rule reads. Only the ledger's own appliers (:data:`LEDGER_APPLIERS`) keep each
account's state current between rows; a snapshot, which must hold the full state, is
built by replaying the account's events through the whole chain
(:func:`snapshot_accounts`). tests/integration/test_import_same_events.py and the
property test in tests/unit/test_import_planner.py hold the two paths to the same events.

Nothing touches the store here except reads: which customers and references already
exist (one bulk query) and the accounts the files refer to without registering them.
Every bad row is collected, with its file, line, column and rule; the writer only
commits when there is none.

Rows are applied in the import order customers, invoices, credit notes, payments, each
file top to bottom. After a bad row the remaining rows are still checked against the
state built so far, so one bad invoice can also make a later allocation to it fail.
"""

from __future__ import annotations

import uuid
import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.application import AggregateNotFoundError

from domain import events as ev
from domain.account import LEDGER_APPLIERS, AccountSnapshot, CommandContext, CustomerAccount, project_account, take_snapshot
from domain.errors import AlreadyExists, NotFound, RuleViolation
from domain.events import Event
from domain.registry import ReferenceClaimed, account_id, event_id, event_id_of, reference_id
from services.importer.rows import AUTO_ALLOCATION, ParsedFile, ParsedRow, RowError, column_of
from services.importer.store_io import existing_originators
from services.persistence import LedgerStore

ORDER: tuple[str, ...] = ("customers", "invoices", "credit_notes", "payments")
#: registry kind and command field of the document each file creates
CLAIMS: dict[str, tuple[str, str]] = {"invoices": ("invoice", "invoice_number"), "credit_notes": ("credit_note", "credit_note_number"), "payments": ("payment", "payment_id")}

#: the events the planner builds from templates (customers register through the aggregate)
TEMPLATED = (ev.InvoiceIssued, ev.CreditNoteIssued, ev.PaymentReceived, ev.PaymentAllocated, ReferenceClaimed)
_replace = msgspec.structs.replace

Progress = Callable[[int], None]
#: Called with the plan's events so far (while no row was bad), every few thousand rows:
#: the import streams them to its writer while the rest is still being checked.
EventSink = Callable[[list[Event]], None]


@dataclass
class ImportPlan:
    events: list[Event] = field(default_factory=list)
    #: customer id -> its account as the import leaves it (ledger state only, see above)
    accounts: dict[str, CustomerAccount] = field(default_factory=dict)
    start_versions: dict[str, int] = field(default_factory=dict)  # version before the import
    #: customer id -> a stored account as loaded, untouched: where a snapshot replay starts
    start_accounts: dict[str, CustomerAccount] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    reference_claims: int = 0  # of ``events``, the ReferenceClaimed ones

    @property
    def ok(self) -> bool:
        return not self.errors


class _Planner:
    def __init__(self, store: LedgerStore, actor: str, recorded_at: datetime, correlation_id: UUID, progress: Progress, sink: EventSink | None) -> None:
        self.store, self.progress, self.sink = store, progress, sink
        self.plan = ImportPlan()
        # The import is one command: every event it records has the same actor, time,
        # correlation id (this run) and causation id (the import command).
        self.ctx = CommandContext(actor=actor, recorded_at=recorded_at, correlation_id=correlation_id, causation_id=uuid.uuid4())
        self.ctx_fields = msgspec.structs.asdict(self.ctx)
        # Ids as ints: a UUID's __hash__ is Python code, an int's is not (one set probe per row).
        self.taken: set[int] = set()  # account and reference ids already in the store
        self.claimed: set[int] = set()  # reference ids claimed by earlier rows of this import
        self.row_ids: dict[str, list[UUID]] = {}  # kind -> per row: the account (customers) or reference id it creates
        self.new_customers: set[str] = set()  # created by this import's customers file (not in the store)
        self.id_bytes: dict[str, bytes] = {}  # customer id -> its account id's 16 bytes, for event ids
        self.appliers = LEDGER_APPLIERS
        self.templates = {cls: cls(**{**dict.fromkeys(cls.__struct_fields__), **self.ctx_fields}) for cls in TEMPLATED}

    def look_up_store(self, parsed: ParsedFile) -> None:
        """What the store holds for one file's rows, before they are run: which of the
        accounts or references they create already exist (one bulk query), and the
        stored accounts they refer to that no earlier file created or loaded."""
        kind, rows = parsed.kind, parsed.rows
        if kind == "customers":
            ids = self.row_ids[kind] = [account_id(r.command.customer_id) for r in rows]
        else:
            registry, attr = CLAIMS[kind]
            ids = self.row_ids[kind] = [reference_id(registry, getattr(r.command, attr)) for r in rows]
        self.taken.update(u.int for u in existing_originators(self.store, ids))
        if kind == "customers":
            # Customers this import creates: never in the store, not worth a query each.
            self.new_customers.update(r.command.customer_id for r, aid in zip(rows, ids) if aid.int not in self.taken)
            return
        # A customer row for an existing customer is refused, but the rows that refer to
        # it are still checked against the stored account.
        referenced = {r.command.customer_id for r in rows} - self.new_customers - self.plan.accounts.keys()
        for customer_id in sorted(referenced):
            try:
                account = self.store.repository.get(account_id(customer_id), projector_func=project_account)
            except AggregateNotFoundError:
                continue
            self.plan.accounts[customer_id] = account
            self.plan.start_versions[customer_id] = account.version
            self.plan.start_accounts[customer_id] = copy.deepcopy(account)

    def run(self, parsed: ParsedFile) -> None:
        apply = getattr(self, f"_{parsed.kind}")
        errors = self.plan.errors
        for n, (row, oid) in enumerate(zip(parsed.rows, self.row_ids[parsed.kind]), start=1):
            try:
                apply(row, oid)
            except RuleViolation as exc:
                column = exc.field if exc.field == "allocations" else column_of(exc.field, row.amount_column)
                errors.append(RowError(parsed.name, row.line, column, exc.rule, exc.message))
            if n % 2000 == 0:
                self.progress(2000)
                if self.sink is not None and not errors:
                    self.sink(self.plan.events)
        self.progress(len(parsed.rows) % 2000)

    def _customers(self, row: ParsedRow, aid: UUID) -> None:
        cmd = row.command
        if aid.int in self.taken or cmd.customer_id in self.plan.accounts:
            raise AlreadyExists("customer_id", cmd.customer_id, "customer")
        fields = {f: getattr(cmd, f) for f in cmd.__struct_fields__}
        account = CustomerAccount.register(self.ctx, **fields)
        self.plan.accounts[cmd.customer_id] = account
        self.plan.start_versions[cmd.customer_id] = 0
        self.plan.events += account.collect_events()

    def _account(self, kind: str, cmd: Any, rid: UUID) -> CustomerAccount:
        """The row's account, once its customer exists and its reference is free."""
        try:
            account = self.plan.accounts[cmd.customer_id]
        except KeyError:
            raise NotFound("customer_id", cmd.customer_id, "customer") from None
        key = rid.int
        if key in self.taken or key in self.claimed:
            registry, attr = CLAIMS[kind]
            raise AlreadyExists(attr, getattr(cmd, attr), registry.replace("_", " "))
        return account

    def _next(self, account: CustomerAccount) -> tuple[int, UUID]:
        """The account's next version and that event's id (as ``_record`` derives it)."""
        version = account.version = account.version + 1
        account_bytes = self.id_bytes.get(account.state.customer_id)
        if account_bytes is None:
            account_bytes = self.id_bytes[account.state.customer_id] = account.id.int.to_bytes(16)
        return version, event_id_of(account_bytes, version)

    def _claim(self, kind: str, cmd: Any, rid: UUID) -> ReferenceClaimed:
        """The reference's registry event, saved after the account's (as a command does)."""
        self.claimed.add(rid.int)
        self.plan.reference_claims += 1
        registry, attr = CLAIMS[kind]
        return _replace(self.templates[ReferenceClaimed], originator_id=rid, originator_version=1, event_id=event_id(rid, 1),
                        kind=registry, reference=getattr(cmd, attr), customer_id=cmd.customer_id)

    # Each event is a copy of a template holding this import's actor, time, correlation
    # and causation ids, every other field given here (a template's are None, so one
    # left out would not even decode): msgspec's replace is ~2x cheaper than the class
    # call with 17 keyword arguments, over 100,000s of events.

    def _invoices(self, row: ParsedRow, rid: UUID) -> None:
        cmd = row.command
        account = self._account("invoices", cmd, rid)
        installments = [(i.due_date, i.amount_minor) for i in cmd.installments] or None
        schedule = account.check_invoice(cmd.invoice_number, cmd.currency, cmd.amount_minor, cmd.issue_date, cmd.due_date, installments)
        version, eid = self._next(account)
        issued = _replace(self.templates[ev.InvoiceIssued], originator_id=account.id, originator_version=version, event_id=eid,
                          customer_id=cmd.customer_id, invoice_number=cmd.invoice_number, currency=cmd.currency, amount_minor=cmd.amount_minor,
                          issue_date=cmd.issue_date, due_date=schedule[-1].due_date, installments=schedule,
                          description=cmd.description, sales_order_id=cmd.sales_order_id)
        self.appliers[ev.InvoiceIssued](account.state, issued)
        self.plan.events += (issued, self._claim("invoices", cmd, rid))

    def _credit_notes(self, row: ParsedRow, rid: UUID) -> None:
        cmd = row.command
        account = self._account("credit_notes", cmd, rid)
        applied = account.check_credit_note(cmd.credit_note_number, cmd.currency, cmd.amount_minor, cmd.issue_date, cmd.invoice_number)
        version, eid = self._next(account)
        issued = _replace(self.templates[ev.CreditNoteIssued], originator_id=account.id, originator_version=version, event_id=eid,
                          customer_id=cmd.customer_id, credit_note_number=cmd.credit_note_number, currency=cmd.currency,
                          amount_minor=cmd.amount_minor, issue_date=cmd.issue_date, invoice_number=cmd.invoice_number,
                          applied=applied, reason=cmd.reason)
        self.appliers[ev.CreditNoteIssued](account.state, issued)
        self.plan.events += (issued, self._claim("credit_notes", cmd, rid))

    def _payments(self, row: ParsedRow, rid: UUID) -> None:
        """Receive the payment, then allocate it as the row says: to the named invoices,
        or oldest due first (``auto``); the rules of the same account methods the
        commands call. A row refused half-way (payment received, an allocation refused)
        records none of its events."""
        cmd = row.command
        account = self._account("payments", cmd, rid)
        account.check_payment(cmd.payment_id, cmd.currency, cmd.amount_minor)
        version, eid = self._next(account)
        received = _replace(self.templates[ev.PaymentReceived], originator_id=account.id, originator_version=version, event_id=eid,
                            customer_id=cmd.customer_id, payment_id=cmd.payment_id, currency=cmd.currency, amount_minor=cmd.amount_minor,
                            value_date=cmd.value_date, method=cmd.method, reference=cmd.reference)
        self.appliers[ev.PaymentReceived](account.state, received)
        events = [received]
        if row.allocations is not None:
            try:
                if row.allocations == AUTO_ALLOCATION:
                    self._allocate(account, events, cmd.payment_id, None, None)
                else:
                    for number, amount in row.allocations:
                        self._allocate(account, events, cmd.payment_id, number, amount)
            except RuleViolation as exc:
                raise RuleViolation("allocations", exc.rule, f"{exc.field}: {exc.message}") from None
        events.append(self._claim("payments", cmd, rid))
        self.plan.events += events

    def _allocate(self, account: CustomerAccount, events: list[Any], payment_id: str, invoice_number: str | None, amount: int | None) -> None:
        payment, lines = account.allocation_lines(payment_id, invoice_number, None, amount)
        apply, template = self.appliers[ev.PaymentAllocated], self.templates[ev.PaymentAllocated]
        for line in lines:
            version, eid = self._next(account)
            allocated = _replace(template, originator_id=account.id, originator_version=version, event_id=eid, customer_id=account.state.customer_id,
                                 payment_id=payment_id, invoice_number=line.invoice_number, installment=line.installment,
                                 currency=payment.currency, amount_minor=line.amount_minor, value_date=payment.value_date)
            apply(account.state, allocated)
            events.append(allocated)


def build_plan(
    store: LedgerStore, files: Mapping[str, ParsedFile | Iterable[ParsedFile]], *, actor: str, recorded_at: datetime,
    correlation_id: UUID, progress: Progress = lambda n: None, sink: EventSink | None = None,
    on_read: Callable[[ParsedFile], None] = lambda parsed: None,
) -> ImportPlan:
    """Check every row of every file and build the events; ``plan.errors`` lists bad rows.

    Files are planned one after the other in :data:`ORDER`, each given whole or as
    consecutive pieces (:func:`~services.importer.rows.read_chunks`) that are parsed
    only when their turn comes (then ``on_read`` is told): an import's writer inserts
    the events of the first rows while later ones are still being parsed, instead of
    waiting for every file to be read before the first event is built."""
    planner = _Planner(store, actor, recorded_at, correlation_id, progress, sink)
    names: dict[str, str] = {}
    for kind in ORDER:
        if kind not in files:
            continue
        source = files[kind]
        planner.plan.rows[kind] = 0
        for parsed in [source] if isinstance(source, ParsedFile) else source:
            names.setdefault(parsed.name, kind)
            on_read(parsed)
            planner.plan.errors += parsed.errors
            planner.plan.rows[kind] += parsed.total_rows
            planner.look_up_store(parsed)
            planner.run(parsed)
    planner.plan.errors.sort(key=lambda e: (ORDER.index(names.get(e.file, ORDER[0])), e.line))
    return planner.plan


def snapshot_accounts(plan: ImportPlan, interval: int) -> list[AccountSnapshot]:
    """Snapshots of the accounts the import took across a multiple of ``interval``, as
    :class:`~services.ledger.LedgerService` takes one after a command: each account is
    rebuilt from its state before the import and its imported events through every
    applier (the credit context's too), so the snapshot holds what a full replay would."""
    due = {account.id.int: customer_id for customer_id, account in plan.accounts.items()
           if account.version // interval > plan.start_versions.get(customer_id, 0) // interval}
    if not due:
        return []
    streams: dict[str, list[Event]] = {customer_id: [] for customer_id in due.values()}
    for event in plan.events:
        customer_id = due.get(event.originator_id.int)
        if customer_id is not None:
            streams[customer_id].append(event)
    snapshots = []
    for customer_id, events in streams.items():
        account = project_account(plan.start_accounts.get(customer_id), events)
        assert account is not None and account.version == plan.accounts[customer_id].version
        snapshots.append(take_snapshot(account))
    return snapshots
