"""Write-offs: requested by one person, approved or rejected by another (four eyes)."""

from __future__ import annotations

from litestar import Request, Response, Router
from litestar.params import JSONBody

from domain import commands as c
from services.api.commands import IdempotencyKey, body_without, command_post, execute, path_id, with_path
from services.ledger import CommandResult

TAGS = ["write-offs"]
WriteOffId = path_id("Write-off id")
ApprovalBody = body_without(c.ApproveWriteOff, "write_off_id")
RejectionBody = body_without(c.RejectWriteOff, "write_off_id")


@command_post("/", operation_id="requestWriteOff", summary="Request a write-off of part or all of an invoice", tags=TAGS, body=c.RequestWriteOff)
async def request_write_off(request: Request, data: JSONBody[c.RequestWriteOff], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, data, idempotency_key)


@command_post("/{write_off_id:str}/approval", operation_id="approveWriteOff", summary="Approve a write-off (not by its requester)", tags=TAGS, body=ApprovalBody, status_code=200)
async def approve_write_off(request: Request, write_off_id: WriteOffId, data: JSONBody[ApprovalBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, c.ApproveWriteOff, write_off_id=write_off_id), idempotency_key)


@command_post("/{write_off_id:str}/rejection", operation_id="rejectWriteOff", summary="Reject a write-off", tags=TAGS, body=RejectionBody, status_code=200)
async def reject_write_off(request: Request, write_off_id: WriteOffId, data: JSONBody[RejectionBody], idempotency_key: IdempotencyKey = None) -> Response[CommandResult]:
    return await execute(request, with_path(data, c.RejectWriteOff, write_off_id=write_off_id), idempotency_key)


router = Router("/v1/write-offs", route_handlers=[request_write_off, approve_write_off, reject_write_off])
