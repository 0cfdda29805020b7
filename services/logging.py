"""Structured logging with structlog.

JSON lines in production (``ARLEDGER_ENV=production`` or ``ARLEDGER_LOG_FORMAT=json``),
coloured console output in development. Context such as actor, correlation id and
aggregate ids is bound with :func:`structlog.contextvars.bind_contextvars` per request
or message and appears on every line logged while handling it.
Logs go to stderr so that command output on stdout stays machine-readable.
"""

from __future__ import annotations

import logging
import sys

import msgspec
import structlog

from services.settings import Settings


_encoder = msgspec.json.Encoder(enc_hook=repr)  # what JSON cannot hold is logged as its repr, as structlog does


def _json(obj: object, **_: object) -> str:
    """The JSON line of an event: msgspec writes it ~5x faster than ``json.dumps``, and
    the API logs a line per request and per command."""
    return _encoder.encode(obj).decode()


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "json" if settings.env == "production" else "console"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_json) if fmt == "json" else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
