"""Domain errors.

Every refusal names the field it is about and the rule it broke, so that a caller
(CLI, HTTP API, CSV import) can point a person at exactly what to fix. Raising one
of these before any event is recorded is how the ledger guarantees that bad input
records nothing.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error the domain raises on purpose."""


class RuleViolation(LedgerError):
    """A command broke a business rule or a field failed validation."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message} [{rule}]")
        self.field = field
        self.rule = rule
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


class NotFound(RuleViolation):
    """A command referred to something (customer, invoice, payment) that does not exist."""

    def __init__(self, field: str, value: str, what: str) -> None:
        super().__init__(field, "must_exist", f"unknown {what} {value!r}")
        self.value = value


class AlreadyExists(RuleViolation):
    """A command tried to create something whose identifier is already taken."""

    def __init__(self, field: str, value: str, what: str) -> None:
        super().__init__(field, "must_be_unique", f"{what} {value!r} already exists")
        self.value = value
