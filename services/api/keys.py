"""API keys over HTTP (admin only): list, create (the secret is in this answer only), revoke."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Request, Router, delete, get, post
from litestar.params import JSONBody, PathParameter

from services.api.commands import ERRORS, QUERY_ERRORS
from services.apikeys import ApiKey, KeyStore

TAGS = ["access"]
Role = Literal["sales", "credit_manager", "collector", "finance", "auditor", "admin"]


class NewKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")]
    role: Role


class CreatedKey(msgspec.Struct, kw_only=True):
    key: ApiKey
    secret: str


class Revoked(msgspec.Struct, kw_only=True):
    revoked: int


def _keys(request: Request) -> KeyStore:
    return request.app.state.api_keys


@get("/", operation_id="listKeys", summary="API keys (never their secrets)", tags=TAGS, responses=QUERY_ERRORS, sync_to_thread=True)
def list_keys(request: Request) -> list[ApiKey]:
    return _keys(request).list()


@post("/", operation_id="createKey", summary="Create an API key; the secret is shown in this answer only", tags=TAGS, responses=ERRORS, sync_to_thread=True, opt={"body": NewKey})
def create_key(request: Request, data: JSONBody[NewKey]) -> CreatedKey:
    key, secret = _keys(request).create(data.name, data.role)
    return CreatedKey(key=key, secret=secret)


@delete("/{name_or_id:str}", operation_id="revokeKey", summary="Revoke one key (by id) or every key of a name", tags=TAGS, responses=QUERY_ERRORS, status_code=200, sync_to_thread=True)
def revoke_key(request: Request, name_or_id: Annotated[str, PathParameter(min_length=1, max_length=64)]) -> Revoked:
    return Revoked(revoked=_keys(request).revoke(name_or_id))


router = Router("/v1/keys", route_handlers=[list_keys, create_key, revoke_key])
