"""The HTTP API (Litestar): see :func:`services.api.app.create_app`."""

from services.api.app import create_app

__all__ = ["create_app"]
