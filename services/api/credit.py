"""Credit management: assessments, limits (four-eyes increases), covers, holds, sales orders.

Commands run through the credit service (the ledger under the active credit policy).
Approving a limit increase by the actor who requested it is refused by the domain.
"""

from __future__ import annotations

from functools import partial

from litestar import Request, Response, Router
from litestar.params import JSONBody

from domain import credit_commands as cc
from services.api.commands import IdempotencyKey, body_without, command_post, command_put, execute, path_id, with_path
from services.ledger import CommandResult

TAGS = ["credit"]
ORDER_TAGS = ["sales orders"]
CustomerId = path_id("Customer code")
RequestId = path_id("Limit increase request id")
OrderId = path_id("Sales order id")
credit_post = partial(command_post, tags=TAGS, service="credit")
order_post = partial(command_post, tags=ORDER_TAGS, service="credit")

AssessmentBody = body_without(cc.AssessCredit, "customer_id")
LimitBody = body_without(cc.SetCreditLimit, "customer_id")
LimitApprovalBody = body_without(cc.ApproveCreditLimitIncrease, "customer_id", "request_id")
LimitRejectionBody = body_without(cc.RejectCreditLimitIncrease, "customer_id", "request_id")
InsuranceBody = body_without(cc.RecordCreditInsurance, "customer_id")
GuaranteeBody = body_without(cc.RecordGuarantee, "customer_id")
HoldBody = body_without(cc.PlaceCreditHold, "customer_id")
HoldReleaseBody = body_without(cc.ReleaseCreditHold, "customer_id")
OrderCheckBody = body_without(cc.CheckOrderCredit, "order_id")
OrderReleaseBody = body_without(cc.ReleaseHeldOrder, "order_id")
OrderRejectionBody = body_without(cc.RejectHeldOrder, "order_id")
OrderCancellationBody = body_without(cc.CancelSalesOrder, "order_id")
OrderInvoiceBody = body_without(cc.InvoiceSalesOrder, "order_id")


@credit_post("/{customer_id:str}/credit-assessments", operation_id="assessCredit", summary="Score a customer with the credit policy", body=AssessmentBody)
async def assess_credit(request: Request, customer_id: CustomerId, data: JSONBody[AssessmentBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.AssessCredit, customer_id=customer_id), idempotency_key)


@command_put("/{customer_id:str}/credit-limit", operation_id="setCreditLimit", summary="Set the credit limit (a large increase becomes a request)", tags=TAGS, body=LimitBody, service="credit")
async def set_credit_limit(request: Request, customer_id: CustomerId, data: JSONBody[LimitBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.SetCreditLimit, customer_id=customer_id), idempotency_key)


@credit_post("/{customer_id:str}/credit-limit-requests/{request_id:str}/approval", operation_id="approveCreditLimitIncrease", summary="Approve a limit increase (not by its requester)", body=LimitApprovalBody, status_code=200)
async def approve_limit(request: Request, customer_id: CustomerId, request_id: RequestId, data: JSONBody[LimitApprovalBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.ApproveCreditLimitIncrease, customer_id=customer_id, request_id=request_id), idempotency_key)


@credit_post("/{customer_id:str}/credit-limit-requests/{request_id:str}/rejection", operation_id="rejectCreditLimitIncrease", summary="Reject a limit increase", body=LimitRejectionBody, status_code=200)
async def reject_limit(request: Request, customer_id: CustomerId, request_id: RequestId, data: JSONBody[LimitRejectionBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.RejectCreditLimitIncrease, customer_id=customer_id, request_id=request_id), idempotency_key)


@credit_post("/{customer_id:str}/credit-insurance", operation_id="recordCreditInsurance", summary="Record credit insurance cover", body=InsuranceBody)
async def record_insurance(request: Request, customer_id: CustomerId, data: JSONBody[InsuranceBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.RecordCreditInsurance, customer_id=customer_id), idempotency_key)


@credit_post("/{customer_id:str}/guarantees", operation_id="recordGuarantee", summary="Record a guarantee", body=GuaranteeBody)
async def record_guarantee(request: Request, customer_id: CustomerId, data: JSONBody[GuaranteeBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.RecordGuarantee, customer_id=customer_id), idempotency_key)


@credit_post("/{customer_id:str}/credit-hold", operation_id="placeCreditHold", summary="Place the customer on credit hold", body=HoldBody)
async def place_hold(request: Request, customer_id: CustomerId, data: JSONBody[HoldBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.PlaceCreditHold, customer_id=customer_id), idempotency_key)


@credit_post("/{customer_id:str}/credit-hold/release", operation_id="releaseCreditHold", summary="Release a credit hold", body=HoldReleaseBody, status_code=200)
async def release_hold(request: Request, customer_id: CustomerId, data: JSONBody[HoldReleaseBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.ReleaseCreditHold, customer_id=customer_id), idempotency_key)


@order_post("/", operation_id="placeSalesOrder", summary="Place a sales order (credit-checked unless check is false)", body=cc.PlaceSalesOrder)
async def place_order(request: Request, data: JSONBody[cc.PlaceSalesOrder], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, data, idempotency_key)


@order_post("/{order_id:str}/credit-check", operation_id="checkOrderCredit", summary="Credit-check (or re-check) an order", body=OrderCheckBody, status_code=200)
async def check_order(request: Request, order_id: OrderId, data: JSONBody[OrderCheckBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.CheckOrderCredit, order_id=order_id), idempotency_key)


@order_post("/{order_id:str}/release", operation_id="releaseHeldOrder", summary="Release an order held by the credit check", body=OrderReleaseBody, status_code=200)
async def release_order(request: Request, order_id: OrderId, data: JSONBody[OrderReleaseBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.ReleaseHeldOrder, order_id=order_id), idempotency_key)


@order_post("/{order_id:str}/rejection", operation_id="rejectHeldOrder", summary="Reject an order held by the credit check", body=OrderRejectionBody, status_code=200)
async def reject_order(request: Request, order_id: OrderId, data: JSONBody[OrderRejectionBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.RejectHeldOrder, order_id=order_id), idempotency_key)


@order_post("/{order_id:str}/cancellation", operation_id="cancelSalesOrder", summary="Cancel an order", body=OrderCancellationBody, status_code=200)
async def cancel_order(request: Request, order_id: OrderId, data: JSONBody[OrderCancellationBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.CancelSalesOrder, order_id=order_id), idempotency_key)


@order_post("/{order_id:str}/invoices", operation_id="invoiceSalesOrder", summary="Invoice an approved order", body=OrderInvoiceBody)
async def invoice_order(request: Request, order_id: OrderId, data: JSONBody[OrderInvoiceBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.InvoiceSalesOrder, order_id=order_id), idempotency_key)


customers = Router("/v1/customers", route_handlers=[assess_credit, set_credit_limit, approve_limit, reject_limit, record_insurance, record_guarantee, place_hold, release_hold])
orders = Router("/v1/sales-orders", route_handlers=[place_order, check_order, release_order, reject_order, cancel_order, invoice_order])
