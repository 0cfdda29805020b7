"""Customers: register, update, payment terms; the account and the customer list."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request, Response, Router, get
from litestar.params import JSONBody, QueryParameter

from domain import commands as c
from domain.events import CustomerRegistered
from services.api.commands import IdempotencyKey, QUERY_ERRORS, body_without, command_patch, command_post, command_put, execute, path_id, with_path
from services.api.views import CustomerPage, CustomerView, customer_summary, customer_view
from services.ledger import CommandResult, LedgerService
from services.persistence import topic_of

TAGS = ["customers"]
CustomerId = path_id("Customer code")
UpdateCustomerBody = body_without(c.UpdateCustomer, "customer_id")
SetPaymentTermsBody = body_without(c.SetPaymentTerms, "customer_id")


@command_post("/", operation_id="registerCustomer", summary="Register a customer account", tags=TAGS, body=c.RegisterCustomer)
async def register_customer(request: Request, data: JSONBody[c.RegisterCustomer], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, data, idempotency_key)


@command_patch("/{customer_id:str}", operation_id="updateCustomer", summary="Change a customer's master data", tags=TAGS, body=UpdateCustomerBody)
async def update_customer(request: Request, customer_id: CustomerId, data: JSONBody[UpdateCustomerBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, c.UpdateCustomer, customer_id=customer_id), idempotency_key)


@command_put("/{customer_id:str}/payment-terms", operation_id="setPaymentTerms", summary="Set a customer's payment terms", tags=TAGS, body=SetPaymentTermsBody)
async def set_payment_terms(request: Request, customer_id: CustomerId, data: JSONBody[SetPaymentTermsBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, c.SetPaymentTerms, customer_id=customer_id), idempotency_key)


@get("/{customer_id:str}", operation_id="getCustomer", summary="A customer account: open invoices, payments, credits, write-offs", tags=TAGS, responses=QUERY_ERRORS, sync_to_thread=True)
def get_customer(request: Request, customer_id: CustomerId) -> CustomerView:
    account = request.app.state.ledger.account(customer_id)
    return customer_view(account.state, account.version)


@get("/", operation_id="listCustomers", summary="Customers in registration order, paginated", tags=TAGS, responses=QUERY_ERRORS, sync_to_thread=True)
def list_customers(
    request: Request,
    limit: Annotated[int, QueryParameter(ge=1, le=200, description="Page size")] = 50,
    cursor: Annotated[int, QueryParameter(ge=0, le=2**53, description="next_cursor of the previous page (0: from the start)")] = 0,
) -> CustomerPage:
    ledger: LedgerService = request.app.state.ledger
    found = ledger.store.recorder.select_notifications(start=cursor, limit=limit, topics=[topic_of(CustomerRegistered)], inclusive_of_start=False)
    items = [customer_summary(ledger.account(_customer_id(n.state)).state) for n in found]
    return CustomerPage(items=items, next_cursor=found[-1].id if len(found) == limit else None)


class _RegisteredId(msgspec.Struct):
    customer_id: str


_registered_id = msgspec.json.Decoder(_RegisteredId)


def _customer_id(state: bytes) -> str:
    """Only the id of a stored CustomerRegistered event (the account has the rest)."""
    return _registered_id.decode(state).customer_id


router = Router("/v1/customers", route_handlers=[register_customer, update_customer, set_payment_terms, get_customer, list_customers])
