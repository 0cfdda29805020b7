"""Where the dunning policy comes from: ``ARLEDGER_DUNNING_POLICY`` (a .toml or .json
file) or the default shipped in the package (``services/config/dunning.toml``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from domain.dunning import DunningPolicy, parse_policy
from domain.errors import RuleViolation


def default_policy_text() -> str:
    return resources.files("services.config").joinpath("dunning.toml").read_text(encoding="utf-8")


def load_policy(path: str = "") -> DunningPolicy:
    """The policy at ``path`` (empty: the packaged default). Errors name the file and key."""
    if not path:
        return parse_policy(default_policy_text())
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleViolation("ARLEDGER_DUNNING_POLICY", "readable_file", f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_policy(text, "json" if file.suffix.lower() == ".json" else "toml")
    except RuleViolation as exc:
        raise RuleViolation(exc.field, exc.rule, f"{path}: {exc.message}") from None
