"""Authentication (API key) and authorization (the role table) for ``/v1``.

The key comes in ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. The caller it
stands for is kept on the connection state; its *name* is the actor of every event the
request records, never a value from the body.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from services.api.permissions import allowed
from services.apikeys import KeyStore, Principal


def presented_key(connection: ASGIConnection) -> str | None:
    """The key of ``Authorization: Bearer`` (first) or ``X-API-Key``. Read from the raw
    ASGI headers (lower-case names, as the server passes them): building Litestar's
    ``Headers`` for two lookups cost more than the rest of authentication."""
    authorization = api_key = None
    for name, value in connection.scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return api_key or None


def authenticate(connection: ASGIConnection) -> Principal:
    keys: KeyStore = connection.app.state.api_keys
    secret = presented_key(connection)
    principal = keys.authenticate(secret) if secret else None
    if principal is None:
        raise NotAuthorizedException(
            "a valid API key is required (Authorization: Bearer KEY or X-API-Key)",
            headers={"WWW-Authenticate": 'Bearer realm="arledger"'},
        )
    connection.scope["state"]["principal"] = principal
    return principal


async def authorize(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard of every ``/v1`` route: a known key, and a role the table allows. Async so
    that it runs on the event loop (an indexed lookup) instead of hopping to a thread."""
    principal = authenticate(connection)
    operation = str(handler.operation_id or "")
    if not allowed(operation, principal.role):
        raise PermissionDeniedException(f"role {principal.role!r} may not call {operation}")


def principal_of(connection: ASGIConnection) -> Principal:
    return connection.scope["state"]["principal"]
