"""Aging arithmetic: days past due and buckets (pure; see DESIGN.md "Domain rules").

Days past due at D = D - due date when positive, else 0. Buckets are defined by their
*edges*, ascending whole days starting at 0: ``(0, 30, 60, 90)`` gives

    current (not yet due: 0 days past due), 1-30, 31-60, 61-90, 91+

so an edge is the last day of its bucket, and the last bucket is open ended. Callers
sum open amounts per due date and let :func:`bucket_totals` place each due date once,
which is what keeps an aging over a million invoices cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from domain.errors import RuleViolation

DEFAULT_EDGES: tuple[int, ...] = (0, 30, 60, 90)
CURRENT = "current"


def days_past_due(as_of: date, due_date: date) -> int:
    """Whole days ``as_of`` is after ``due_date``; 0 when not yet due."""
    return max((as_of - due_date).days, 0)


@dataclass(frozen=True, slots=True)
class Buckets:
    """Aging buckets from ascending edges; ``labels`` has ``len(edges) + 1`` entries."""

    edges: tuple[int, ...] = DEFAULT_EDGES

    def __post_init__(self) -> None:
        validate_edges(self.edges)

    @property
    def labels(self) -> tuple[str, ...]:
        labels = [CURRENT]
        for low, high in zip(self.edges, self.edges[1:]):
            labels.append(f"{low + 1}-{high}")
        labels.append(f"{self.edges[-1] + 1}+")
        return tuple(labels)

    def index(self, days: int) -> int:
        """Bucket index of ``days`` past due (0 = current)."""
        for i, edge in enumerate(self.edges):
            if days <= edge:
                return i
        return len(self.edges)

    def of(self, as_of: date, due_date: date) -> int:
        return self.index(days_past_due(as_of, due_date))


def validate_edges(edges: Sequence[int]) -> None:
    if not edges or edges[0] != 0:
        raise RuleViolation("buckets", "starts_at_zero", "bucket edges must start with 0 (the current bucket)")
    if any(not isinstance(e, int) or isinstance(e, bool) for e in edges):
        raise RuleViolation("buckets", "whole_days", "bucket edges must be whole numbers of days")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise RuleViolation("buckets", "increasing", "bucket edges must be strictly increasing")


def parse_edges(text: str) -> Buckets:
    """``"0,30,60,90"`` -> :class:`Buckets` (the CLI's ``--buckets``)."""
    try:
        edges = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise RuleViolation("buckets", "whole_days", f"{text!r} is not a comma-separated list of whole days") from None
    return Buckets(edges)


def bucket_totals(buckets: Buckets, as_of: date, amounts_by_due: Iterable[tuple[date, int]]) -> list[int]:
    """Sum ``(due date, open amount)`` pairs into one total per bucket as of ``as_of``."""
    totals = [0] * (len(buckets.edges) + 1)
    for due, amount in amounts_by_due:
        totals[buckets.of(as_of, due)] += amount
    return totals
