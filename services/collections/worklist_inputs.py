"""What a worklist needs besides the views, from the app: the collectors sharing
unassigned customers (settings) and each customer's credit grade rank (credit
management), so the CLI and the HTTP API rank customers alike."""

from __future__ import annotations

from typing import Any


def collectors(app: Any) -> list[str]:
    return [c.strip() for c in app.settings.collectors.split(",") if c.strip()]


def grades(app: Any) -> Any:
    """customer_id -> (credit grade, its rank, 0 = best) from credit management, if present."""
    if app.credit is None:
        return None
    policy = app.credit.active_policy()[0]

    def grade_of(customer_id: str) -> tuple[str | None, int]:
        grade = app.ledger.account(customer_id).state.credit.grade
        return grade, (policy.grade_rank(grade) if grade else 0)

    return grade_of
