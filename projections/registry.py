"""Which projections exist. A new read model adds its class path here; the
``projections`` CLI, the API's readiness check and the workers build them from this list."""

from __future__ import annotations

from eventsourcing.utils import resolve_topic

from projections.runner import Projection

#: "module:Class" of every projection run by ``arledger projections run``.
PROJECTIONS: list[str] = [
    "projections.ar_items:ArItemsProjection",
    "projections.collections_worklist:CollectionsHoldsProjection",
    "projections.collections_worklist:CollectionsWorklistProjection",
    "projections.audit_trail:AuditTrail",
]


def all_projections() -> list[Projection]:
    return [resolve_topic(path)() for path in PROJECTIONS]
