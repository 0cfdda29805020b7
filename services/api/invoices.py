"""Invoices: issue, look up, dispute and resolve, recover written-off amounts."""

from __future__ import annotations

from litestar import Request, Response, Router, get
from litestar.params import JSONBody

from domain import commands as c
from services.api.commands import IdempotencyKey, QUERY_ERRORS, body_without, command_post, execute, path_id, with_path
from services.api.views import InvoiceView, invoice_view
from services.ledger import CommandResult, LedgerService

TAGS = ["invoices"]
InvoiceNumber = path_id("Invoice number")
DisputeBody = body_without(c.DisputeInvoice, "invoice_number")
ResolutionBody = body_without(c.ResolveDispute, "invoice_number")
RecoveryBody = body_without(c.RecordRecovery, "invoice_number")


@command_post("/", operation_id="issueInvoice", summary="Issue an invoice (optionally in installments)", tags=TAGS, body=c.IssueInvoice)
async def issue_invoice(request: Request, data: JSONBody[c.IssueInvoice], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, data, idempotency_key)


@get("/{invoice_number:str}", operation_id="getInvoice", summary="An invoice: open amount, installments, dispute, write-off", tags=TAGS, responses=QUERY_ERRORS, sync_to_thread=True)
def get_invoice(request: Request, invoice_number: InvoiceNumber) -> InvoiceView:
    ledger: LedgerService = request.app.state.ledger
    customer_id = ledger.owner_of("invoice", invoice_number, "invoice_number")
    return invoice_view(customer_id, ledger.account(customer_id).invoice(invoice_number))


@command_post("/{invoice_number:str}/disputes", operation_id="disputeInvoice", summary="Dispute an invoice (all or part)", tags=TAGS, body=DisputeBody)
async def dispute_invoice(request: Request, invoice_number: InvoiceNumber, data: JSONBody[DisputeBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, c.DisputeInvoice, invoice_number=invoice_number), idempotency_key)


@command_post("/{invoice_number:str}/dispute-resolution", operation_id="resolveDispute", summary="Resolve an invoice's open dispute", tags=TAGS, body=ResolutionBody, status_code=200)
async def resolve_dispute(request: Request, invoice_number: InvoiceNumber, data: JSONBody[ResolutionBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, c.ResolveDispute, invoice_number=invoice_number), idempotency_key)


@command_post("/{invoice_number:str}/recoveries", operation_id="recordRecovery", summary="Record cash recovered on a written-off invoice", tags=TAGS, body=RecoveryBody)
async def record_recovery(request: Request, invoice_number: InvoiceNumber, data: JSONBody[RecoveryBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, c.RecordRecovery, invoice_number=invoice_number), idempotency_key)


router = Router("/v1/invoices", route_handlers=[issue_invoice, get_invoice, dispute_invoice, resolve_dispute, record_recovery])
