"""Cash: receive payments, allocate them to invoices, reverse them; credit notes."""

from __future__ import annotations

from litestar import Request, Response, Router
from litestar.params import JSONBody

from domain import commands as c
from services.api.commands import IdempotencyKey, body_without, command_post, execute, path_id, with_path
from services.ledger import CommandResult

TAGS = ["payments"]
PaymentId = path_id("Payment id")
AllocationBody = body_without(c.AllocatePayment, "payment_id")
ReversalBody = body_without(c.ReversePayment, "payment_id")


@command_post("/", operation_id="receivePayment", summary="Record a payment received", tags=TAGS, body=c.ReceivePayment)
async def receive_payment(request: Request, data: JSONBody[c.ReceivePayment], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, data, idempotency_key)


@command_post("/{payment_id:str}/allocations", operation_id="allocatePayment", summary="Allocate a payment (named invoice, or oldest due first)", tags=TAGS, body=AllocationBody)
async def allocate_payment(request: Request, payment_id: PaymentId, data: JSONBody[AllocationBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, c.AllocatePayment, payment_id=payment_id), idempotency_key)


@command_post("/{payment_id:str}/reversal", operation_id="reversePayment", summary="Reverse a payment (un-allocates it)", tags=TAGS, body=ReversalBody, status_code=200)
async def reverse_payment(request: Request, payment_id: PaymentId, data: JSONBody[ReversalBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, c.ReversePayment, payment_id=payment_id), idempotency_key)


@command_post("/", operation_id="issueCreditNote", summary="Issue a credit note", tags=["credit notes"], body=c.IssueCreditNote)
async def issue_credit_note(request: Request, data: JSONBody[c.IssueCreditNote], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, data, idempotency_key)


router = Router("/v1/payments", route_handlers=[receive_payment, allocate_payment, reverse_payment])
credit_notes = Router("/v1/credit-notes", route_handlers=[issue_credit_note])
