"""Collections over HTTP: the collections commands on a customer account, collector
worklists, collection results and the statement of account (JSON or printable HTML).

Commands are the Structs of :mod:`domain.collections_commands` (the same the CLI's
sub-commands are generated from); queries call the same report functions as
``arledger collections worklist|results`` and ``arledger statement``, so both answer alike.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from litestar import Request, Response, Router, get
from litestar.params import JSONBody

from domain import collections_commands as cc
from projections.ar_items import ArItemsProjection
from projections.collections_reports import results, worklist
from projections.collections_worklist import CollectionsHoldsProjection, CollectionsWorklistProjection
from projections.statement import statement
from services.api.commands import QUERY_ERRORS, IdempotencyKey, body_without, command_post, command_put, execute, path_id, with_path
from services.api.readviews import BusinessDate, day_or_today, views_of
from services.clock.policy import load_policy
from services.collections.statement_html import render
from services.collections.worklist_inputs import collectors, grades
from services.ledger import CommandResult

TAGS = ["collections"]
CustomerId = path_id("Customer code")
InvoiceNumber = path_id("Invoice number")
CaseId = path_id("Collection case id")
Collector = path_id("Collector name")
post = partial(command_post, tags=TAGS)
query = partial(get, tags=TAGS, responses=QUERY_ERRORS, sync_to_thread=True)
VIEWS = (ArItemsProjection(), CollectionsHoldsProjection(), CollectionsWorklistProjection())

ContactBody = body_without(cc.LogCollectionContact, "customer_id")
PromiseBody = body_without(cc.MakePromiseToPay, "customer_id")
ExemptionBody = body_without(cc.GrantDunningExemption, "customer_id")
RevocationBody = body_without(cc.RevokeDunningExemption, "customer_id", "invoice_number")
CollectorBody = body_without(cc.AssignCollector, "customer_id")
LegalBody = body_without(cc.EscalateToLegal, "customer_id")
AgencyBody = body_without(cc.AssignToAgency, "customer_id")
CloseBody = body_without(cc.CloseCollectionCase, "customer_id", "case_id")
CostBody = body_without(cc.IncurCollectionCost, "customer_id")


@post("/{customer_id:str}/collection-contacts", operation_id="logCollectionContact", summary="Log a contact with the customer", body=ContactBody)
async def log_contact(request: Request, customer_id: CustomerId, data: JSONBody[ContactBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.LogCollectionContact, customer_id=customer_id), idempotency_key)


@post("/{customer_id:str}/promises-to-pay", operation_id="makePromiseToPay", summary="Record a promise to pay", body=PromiseBody)
async def make_promise(request: Request, customer_id: CustomerId, data: JSONBody[PromiseBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.MakePromiseToPay, customer_id=customer_id), idempotency_key)


@post("/{customer_id:str}/dunning-exemptions", operation_id="grantDunningExemption", summary="Exempt an invoice from dunning (reason required)", body=ExemptionBody)
async def grant_exemption(request: Request, customer_id: CustomerId, data: JSONBody[ExemptionBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.GrantDunningExemption, customer_id=customer_id), idempotency_key)


@post("/{customer_id:str}/dunning-exemptions/{invoice_number:str}/revocation", operation_id="revokeDunningExemption", summary="Revoke an invoice's dunning exemption", body=RevocationBody, status_code=200)
async def revoke_exemption(request: Request, customer_id: CustomerId, invoice_number: InvoiceNumber, data: JSONBody[RevocationBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.RevokeDunningExemption, customer_id=customer_id, invoice_number=invoice_number), idempotency_key)


@command_put("/{customer_id:str}/collector", operation_id="assignCollector", summary="Assign the collector who works the customer", tags=TAGS, body=CollectorBody)
async def assign_collector(request: Request, customer_id: CustomerId, data: JSONBody[CollectorBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.AssignCollector, customer_id=customer_id), idempotency_key)


@post("/{customer_id:str}/legal-escalations", operation_id="escalateToLegal", summary="Open a legal collection case", body=LegalBody)
async def escalate(request: Request, customer_id: CustomerId, data: JSONBody[LegalBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.EscalateToLegal, customer_id=customer_id), idempotency_key)


@post("/{customer_id:str}/agency-assignments", operation_id="assignToAgency", summary="Open a collection agency case", body=AgencyBody)
async def to_agency(request: Request, customer_id: CustomerId, data: JSONBody[AgencyBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.AssignToAgency, customer_id=customer_id), idempotency_key)


@post("/{customer_id:str}/collection-cases/{case_id:str}/closure", operation_id="closeCollectionCase", summary="Close an open collection case", body=CloseBody, status_code=200)
async def close_case(request: Request, customer_id: CustomerId, case_id: CaseId, data: JSONBody[CloseBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.CloseCollectionCase, customer_id=customer_id, case_id=case_id), idempotency_key)


@post("/{customer_id:str}/collection-costs", operation_id="incurCollectionCost", summary="Record a collection cost (fees, agency, lawyer)", body=CostBody)
async def incur_cost(request: Request, customer_id: CustomerId, data: JSONBody[CostBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, cc.IncurCollectionCost, customer_id=customer_id), idempotency_key)


def _statement(request: Request, customer_id: str, day: BusinessDate) -> dict[str, Any]:
    ledger_app = request.app.state.ledger_app
    with views_of(request).caught_up(*VIEWS) as db:
        return statement(db, customer_id, day_or_today(day), load_policy(ledger_app.settings.dunning_policy).aging)


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


@query("/{customer_id:str}/statement", operation_id="getStatement", summary="Statement of account as of a date (JSON; Accept: text/html for the printable page)")
def get_statement(request: Request, customer_id: CustomerId, date: BusinessDate = None) -> Response[dict[str, Any]]:
    data = _statement(request, customer_id, date)
    if _wants_html(request):
        return Response(render(data), media_type="text/html")
    return Response(data)


@query("/{customer_id:str}/statement.html", operation_id="getStatementHtml", summary="Printable statement of account (HTML)", media_type="text/html")
def get_statement_html(request: Request, customer_id: CustomerId, date: BusinessDate = None) -> str:
    return render(_statement(request, customer_id, date))


@query("/worklists/{collector:str}", operation_id="getCollectorWorklist", summary="A collector's customers, highest priority first, with the actions due")
def get_worklist(request: Request, collector: Collector, date: BusinessDate = None) -> list[dict[str, Any]]:
    ledger_app = request.app.state.ledger_app
    with views_of(request).caught_up(*VIEWS) as db:
        return worklist(db, day_or_today(date), collectors(ledger_app), collector, grades(ledger_app))


@query("/results", operation_id="getCollectionResults", summary="Recovery by collector, track, step and channel; promise-kept rate")
def get_results(request: Request) -> dict[str, Any]:
    ledger_app = request.app.state.ledger_app
    with views_of(request).caught_up(*VIEWS) as db:
        return results(db, collectors(ledger_app))


customers = Router("/v1/customers", route_handlers=[
    log_contact, make_promise, grant_exemption, revoke_exemption, assign_collector, escalate, to_agency, close_case, incur_cost,
    get_statement, get_statement_html,
])
router = Router("/v1/collections", route_handlers=[get_worklist, get_results])
