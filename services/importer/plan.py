"""Decide an import in memory: run every row through the account aggregate's own rules.

The import records exactly the events the :class:`~services.ledger.LedgerService` would
record for the same commands, because it calls the same :class:`CustomerAccount` methods
with a :class:`CommandContext` per row, plus the :class:`ReferenceClaimed` registry event
of each invoice, credit note and payment. Nothing touches the store here except reads:
which customers and references already exist (one bulk query) and the accounts the
files refer to without registering them. Every bad row is collected, with its file,
line, column and rule; the writer only runs when there is none.

Rows are applied in the import order customers, invoices, credit notes, payments, each
file top to bottom. After a bad row the remaining rows are still checked against the
state built so far, so one bad invoice can also make a later allocation to it fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import msgspec
from eventsourcing.application import AggregateNotFoundError

from domain.account import CommandContext, CustomerAccount, project_account
from domain.errors import AlreadyExists, NotFound, RuleViolation
from domain.events import Event
from domain.registry import account_id, claim, reference_id
from services.importer.rows import AUTO_ALLOCATION, ParsedFile, ParsedRow, RowError, column_of
from services.importer.store_io import existing_originators
from services.ledger import decide
from services.persistence import LedgerStore

ORDER: tuple[str, ...] = ("customers", "invoices", "credit_notes", "payments")
#: registry kind and command field of the document each file creates
CLAIMS: dict[str, tuple[str, str]] = {"invoices": ("invoice", "invoice_number"), "credit_notes": ("credit_note", "credit_note_number"), "payments": ("payment", "payment_id")}

Progress = Callable[[int], None]
#: Called with the plan's events so far (while no row was bad), every few thousand rows:
#: the import streams them to its writer while the rest is still being checked.
EventSink = Callable[[list[Event]], None]


@dataclass
class ImportPlan:
    events: list[Event] = field(default_factory=list)
    accounts: dict[str, CustomerAccount] = field(default_factory=dict)
    start_versions: dict[str, int] = field(default_factory=dict)  # version before the import
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

    def look_up_store(self, files: dict[str, ParsedFile]) -> None:
        if "customers" in files:
            self.row_ids["customers"] = [account_id(r.command.customer_id) for r in files["customers"].rows]
        for kind, (registry, attr) in CLAIMS.items():
            if kind in files:
                self.row_ids[kind] = [reference_id(registry, getattr(r.command, attr)) for r in files[kind].rows]
        self.taken = {u.int for u in existing_originators(self.store, (i for ids in self.row_ids.values() for i in ids))}
        # Accounts to load: referenced by invoices/credit notes/payments and not new in this
        # import (a customer row for an existing customer is refused, but the rows that
        # refer to it are still checked against the stored account).
        new = {r.command.customer_id for r, aid in zip(files["customers"].rows, self.row_ids["customers"]) if aid.int not in self.taken} if "customers" in files else set()
        referenced = {r.command.customer_id for kind in CLAIMS if kind in files for r in files[kind].rows} - new
        for customer_id in sorted(referenced):
            try:
                account = self.store.repository.get(account_id(customer_id), projector_func=project_account)
            except AggregateNotFoundError:
                continue
            self.plan.accounts[customer_id] = account
            self.plan.start_versions[customer_id] = account.version

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

    def _record(self, kind: str, row: ParsedRow, rid: UUID, decide_row: Callable[[CustomerAccount], object]) -> None:
        """Check the row's customer and reference claim, run its rules on the account,
        and keep its events followed by the claim (the order a command saves them in)."""
        cmd = row.command
        try:
            account = self.plan.accounts[cmd.customer_id]
        except KeyError:
            raise NotFound("customer_id", cmd.customer_id, "customer") from None
        registry, attr = CLAIMS[kind]
        key = rid.int
        if key in self.taken or key in self.claimed:
            raise AlreadyExists(attr, getattr(cmd, attr), registry.replace("_", " "))
        try:
            decide_row(account)
        except RuleViolation:
            account.collect_events()  # a half-applied row (payment received, allocation refused) is dropped
            raise
        self.claimed.add(key)
        self.plan.reference_claims += 1
        self.plan.events += account.collect_events()
        self.plan.events.append(claim(registry, getattr(cmd, attr), cmd.customer_id, rid=rid, **self.ctx_fields))

    def _invoices(self, row: ParsedRow, rid: UUID) -> None:
        self._record("invoices", row, rid, lambda account: decide(account, self.ctx, row.command))

    def _credit_notes(self, row: ParsedRow, rid: UUID) -> None:
        self._record("credit_notes", row, rid, lambda account: decide(account, self.ctx, row.command))

    def _payments(self, row: ParsedRow, rid: UUID) -> None:
        self._record("payments", row, rid, lambda account: self._pay(account, row))

    def _pay(self, account: CustomerAccount, row: ParsedRow) -> None:
        """Receive the payment, then allocate it as the row says: to the named invoices,
        or oldest due first (``auto``); the same account methods the commands call."""
        ctx, payment_id = self.ctx, row.command.payment_id
        decide(account, ctx, row.command)
        if row.allocations is None:
            return
        try:
            if row.allocations == AUTO_ALLOCATION:
                account.allocate_payment(ctx, payment_id=payment_id)
            else:
                for number, amount in row.allocations:
                    account.allocate_payment(ctx, payment_id=payment_id, invoice_number=number, amount_minor=amount)
        except RuleViolation as exc:
            raise RuleViolation("allocations", exc.rule, f"{exc.field}: {exc.message}") from None


def build_plan(
    store: LedgerStore, files: dict[str, ParsedFile], *, actor: str, recorded_at: datetime, correlation_id: UUID,
    progress: Progress = lambda n: None, sink: EventSink | None = None,
) -> ImportPlan:
    """Check every row of every file and build the events; ``plan.errors`` lists bad rows."""
    planner = _Planner(store, actor, recorded_at, correlation_id, progress, sink)
    for parsed in files.values():
        planner.plan.errors += parsed.errors
        planner.plan.rows[parsed.kind] = parsed.total_rows
    planner.look_up_store(files)
    for kind in ORDER:
        if kind in files:
            planner.run(files[kind])
    planner.plan.errors.sort(key=lambda e: (ORDER.index(_kind_of(files, e.file)), e.line))
    return planner.plan


def _kind_of(files: dict[str, ParsedFile], name: str) -> str:
    return next((kind for kind, parsed in files.items() if parsed.name == name), ORDER[0])
