"""Running ledger commands over HTTP: one helper every command handler calls.

* The body is decoded **strictly** (no "12" for 12, unknown fields refused) by the same
  decoder as the CLI, before Litestar's own lenient conversion, so errors name the field
  and the rule (:func:`strict_body`).
* Ids in the path are merged into the command and validated like body fields.
* ``Idempotency-Key`` goes to the ledger, which replays the first answer for the same
  key and body (``Idempotent-Replayed: true``) and refuses another body.
* The actor is the API key's name.

Command handlers are coroutines: they hand the command to the ledger's committer
thread and await its future, so no worker thread is held per request and commands
that arrive while a batch is being flushed share the next commit (group commit,
:mod:`services.ledger`). Queries run in worker threads.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request, Response, patch, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, PathParameter

from domain.commands import Command
from domain.errors import RuleViolation
from services.api.auth import principal_of
from services.api.problems import MEDIA_TYPE, Problem
from services.ledger import CommandResult
from services.validation import convert, decode_json

C = TypeVar("C", bound=Command)

REPLAY_HEADER = "Idempotent-Replayed"
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")

IdempotencyKey = Annotated[str | None, HeaderParameter(
    name="Idempotency-Key", required=False, min_length=1, max_length=200, pattern=r"^[!-~]+$",
    description="Repeat-safe key (printable ASCII): the same key and body return the first answer and record nothing new.",
)]


def path_id(description: str) -> Any:
    """An id in the path: a command ``Code`` without ``/`` and ``#``, which cannot sit in a segment."""
    return Annotated[str, PathParameter(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$", description=description)]


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=Problem, media_type=MEDIA_TYPE, description=description, generate_examples=False)


ERRORS: dict[int, ResponseSpec] = {
    400: _problem("Malformed JSON or request"),
    401: _problem("No valid API key"),
    403: _problem("The key's role may not call this endpoint"),
    404: _problem("Unknown customer, invoice, payment or write-off"),
    409: _problem("Already exists, or a concurrent change (retry)"),
    413: _problem("Body too large"),
    422: _problem("A field or business rule refused the request (field and rule named)"),
}
QUERY_ERRORS = {code: spec for code, spec in ERRORS.items() if code in (400, 401, 403, 404, 422)}


def _route(
    decorator: Any, path: str, *, operation_id: str, summary: str, tags: list[str], body: type | None = None,
    status_code: int = 201, service: str = "ledger",
) -> Any:
    """A command route; ``service`` names the app-state service that executes it (the
    ledger, or the credit service, which runs ledger commands under the credit policy)."""
    return decorator(
        path, operation_id=operation_id, summary=summary, tags=tags, status_code=status_code, responses=ERRORS,
        opt={"body": body, "service": service},
    )


command_post = partial(_route, post)
command_put = partial(_route, put, status_code=200)
command_patch = partial(_route, patch, status_code=200)


async def strict_body(request: Request) -> None:
    """``before_request`` hook: refuse what msgspec's strict decoding refuses."""
    body_type = request.route_handler.opt.get("body")
    if body_type is not None:
        decode_json(await request.body(), body_type)


def body_without(command: type[Command], *path_fields: str) -> type[msgspec.Struct]:
    """The body of a nested route: the command without the ids the path carries."""
    fields: list[Any] = []
    for f in msgspec.structs.fields(command):
        if f.name in path_fields:
            continue
        if f.required:
            fields.append((f.name, f.type))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, f.type, f.default))
    return msgspec.defstruct(
        f"{command.__name__}Body", fields, kw_only=True, frozen=True, forbid_unknown_fields=True, module=__name__,
    )


def with_path(body: msgspec.Struct, command: type[C], **path: str) -> C:
    """Merge path ids into a body and validate them as command fields."""
    return convert({**msgspec.structs.asdict(body), **path}, command, strict=True)


async def execute(request: Request, command: Command, idempotency_key: str | None) -> Response[CommandResult]:
    """Run a command as the caller. The ledger's committer thread decides and saves it
    (grouped with other requests' commands into one durable commit); the event loop
    awaits the answer meanwhile and keeps serving other requests."""
    if idempotency_key is not None and not _KEY.match(idempotency_key):
        raise RuleViolation("Idempotency-Key", "pattern", "must be 1-200 printable ASCII characters")
    state = request.scope["state"]
    service = request.app.state[request.route_handler.opt.get("service", "ledger")]
    result: CommandResult = await service.execute_async(
        command, actor=principal_of(request).name, correlation_id=state.get("correlation_uuid"), idempotency_key=idempotency_key,
    )
    if not result.replayed:
        request.app.state.metrics.commands.labels(result.command).inc()
    status = request.route_handler.status_code
    return Response(result, status_code=status, headers={REPLAY_HEADER: "true"} if result.replayed else None)
