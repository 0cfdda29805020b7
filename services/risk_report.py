"""Risk reports as the CLI and the HTTP API print them: the cut header, the sort orders
of ``--all``, and the JSON encoding (ratios as JSON numbers), so both answer alike."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import msgspec

from domain.risk import RiskProfile
from projections.risk import Cut

ENCODER = msgspec.json.Encoder(decimal_format="number")

SORTS: dict[str, Callable[[RiskProfile], tuple[Any, ...]]] = {
    "overdue": lambda p: (-p.overdue_minor, p.customer_id),
    "exposure": lambda p: (-p.exposure.exposure_minor, p.customer_id),
    "days_late": lambda p: (p.payment.average_days_late is None, -(p.payment.average_days_late or 0), p.customer_id),
}


def cut_header(cut: Cut) -> dict[str, Any]:
    return {"position": cut.position, "known_at": cut.known_at.isoformat() if cut.known_at else None,
            "as_of": cut.as_of.isoformat()}


def builtins(value: Any) -> Any:
    return msgspec.to_builtins(value, builtin_types=(Decimal,))


def encode(value: Any) -> bytes:
    return ENCODER.encode(builtins(value))


def chosen(profiles: Iterable[RiskProfile], sort: str | None, limit: int | None) -> Iterable[RiskProfile]:
    """Largest first by ``sort`` (customer order without one), at most ``limit``; unsorted
    and unlimited, the profiles stream through untouched."""
    if not sort and limit is None:
        return profiles
    key = SORTS[sort] if sort else (lambda p: (p.customer_id,))
    keyed = ((key(p), p.customer_id, p) for p in profiles)
    picked = heapq.nsmallest(limit, keyed) if limit is not None else sorted(keyed)
    return [p for _, _, p in picked]
