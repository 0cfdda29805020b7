"""The clock tick over HTTP (admin): ``POST /v1/clock/ticks {"date": ...}`` records, once,
what time caused up to that business date, exactly as ``arledger clock tick --date``.
Repeating a tick records nothing new (the tick is idempotent by itself)."""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec
from litestar import Request, Router, post
from litestar.params import JSONBody

from services.api.commands import ERRORS
from services.clock.wiring import build_clock


class Tick(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    date: date


@post("/ticks", operation_id="tickClock", summary="Record what time caused up to a business date (idempotent)", tags=["clock"],
      responses=ERRORS, status_code=200, sync_to_thread=True, opt={"body": Tick})
def tick(request: Request, data: JSONBody[Tick]) -> dict[str, Any]:
    clock = build_clock(request.app.state.ledger_app)
    try:
        return clock.tick(data.date).as_dict()
    finally:
        clock.db.close()


router = Router("/v1/clock", route_handlers=[tick])
