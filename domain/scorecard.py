"""The credit scorecard and the policy by grade: transparent, configurable, pure.

A score is the sum of points per factor. Each factor has a weight (its maximum points;
the weights add up to 100) and a rule that turns the indicator into a share of the weight:

* numeric factors have a *band*: the full weight at ``good`` or better, nothing at ``bad``
  or worse, linear in between (higher is better when ``good > bad``, lower when not);
* the external rating and the operating state have *tables* of shares by value.

A missing indicator earns ``missing_share`` of the weight. Every factor that earned less
than its weight gives a reason code, worst first, so the score explains itself. The grade
is the first grade (in cut-off order) whose minimum score the score reaches.

The whole policy - scorecard, grade table, limit approval threshold, check, hold, review and
warning rules - is one msgspec Struct decoded from TOML or JSON, so a bad file is refused
with the path of the offending key (``$.scorecard.weights.current_ratio``).
"""

from __future__ import annotations

import re
import tomllib
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

import msgspec

from domain.errors import RuleViolation

Share = Annotated[Decimal, msgspec.Meta(description="share of the factor's weight, 0..1")]
Weight = Annotated[int, msgspec.Meta(ge=0, le=100)]
Days = Annotated[int, msgspec.Meta(ge=0, le=3650)]
Minor = Annotated[int, msgspec.Meta(ge=0)]


class _Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Weights(_Config, frozen=True, kw_only=True):
    current_ratio: Weight
    debt_ratio: Weight
    profitability: Weight
    years_trading: Weight
    external_rating: Weight
    operating_state: Weight
    average_days_late: Weight
    share_paid_late: Weight
    broken_promises: Weight
    disputes: Weight
    overdue_days: Weight


class Band(_Config, frozen=True, kw_only=True):
    good: Decimal
    bad: Decimal


class Bands(_Config, frozen=True, kw_only=True):
    current_ratio: Band
    debt_ratio: Band
    profitability: Band
    years_trading: Band
    average_days_late: Band
    share_paid_late: Band
    broken_promises: Band
    disputes: Band
    overdue_days: Band


class Tables(_Config, frozen=True, kw_only=True):
    external_rating: dict[str, Share]
    operating_state: dict[str, Share]


class Scorecard(_Config, frozen=True, kw_only=True):
    model_version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    missing_share: Share = Decimal("0.5")
    weights: Weights
    bands: Bands
    tables: Tables
    #: grade -> minimum score, best grade first (A = 80, B = 65, ... E = 0)
    cutoffs: dict[str, Annotated[int, msgspec.Meta(ge=0, le=100)]]


class GradePolicy(_Config, frozen=True, kw_only=True):
    max_terms_days: Days
    #: the credit-limit rule: a limit above this cap is refused for the grade
    max_limit_minor: Minor
    prepayment_required: bool = False
    guarantee_required: bool = False
    #: overdue beyond this many days holds an order for review
    max_overdue_days: Days = 30
    #: an automatic credit hold while the customer has this grade (grade E)
    credit_hold: bool = False
    dunning_track: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    review_every_days: Annotated[int, msgspec.Meta(ge=1, le=3650)]


class LimitRules(_Config, frozen=True, kw_only=True):
    #: an increase above this many minor units needs a second, different actor
    approval_threshold_minor: Minor = 1_000_000


class CheckRules(_Config, frozen=True, kw_only=True):
    #: over the limit by more than this % of the limit: reject instead of hold
    reject_over_limit_pct: Decimal = Decimal("50")
    #: actors allowed to release or reject held orders (empty: anyone but the placer)
    credit_managers: tuple[str, ...] = ()


class HoldRules(_Config, frozen=True, kw_only=True):
    overdue_days: Days = 60
    over_limit: bool = True


class WarningRules(_Config, frozen=True, kw_only=True):
    exposure_over_limit: bool = True
    ar_above_minor: Minor | None = None
    days_overdue_above: Days | None = 30
    concentration_above_pct: Decimal | None = Decimal("20")
    grade_downgrade: bool = True
    #: more broken promises to pay than this within the window (collections' facts)
    broken_promises_above: int | None = 0
    broken_promises_window_days: Days = 90


class ReviewRules(_Config, frozen=True, kw_only=True):
    #: aging bucket edges (days past due); crossing one brings a review forward
    bucket_edges: tuple[int, ...] = (30, 60, 90)


class CreditPolicy(_Config, frozen=True, kw_only=True):
    scorecard: Scorecard
    grades: dict[str, GradePolicy]
    #: grade whose policy applies to a customer never assessed
    unassessed_grade: str = "C"
    limits: LimitRules = LimitRules()
    checks: CheckRules = CheckRules()
    holds: HoldRules = HoldRules()
    warnings: WarningRules = WarningRules()
    reviews: ReviewRules = ReviewRules()

    def grade_policy(self, grade: str | None) -> GradePolicy:
        return self.grades[grade or self.unassessed_grade]

    def grade_rank(self, grade: str) -> int:
        """0 for the best grade; a higher rank is a worse grade."""
        return list(self.scorecard.cutoffs).index(grade)


# ---- decoding --------------------------------------------------------------------------


def decode_policy(data: bytes, fmt: str = "toml") -> CreditPolicy:
    """Decode and check a policy file's bytes; errors name the key (``$.grades.A``)."""
    try:
        if fmt == "toml":
            raw = tomllib.loads(data.decode(), parse_float=Decimal)
        else:
            raw = msgspec.json.Decoder(float_hook=Decimal).decode(data)
    except tomllib.TOMLDecodeError as exc:
        raise RuleViolation("policy", "toml", f"not valid TOML: {exc}") from None
    except msgspec.DecodeError as exc:
        raise RuleViolation("policy", "json", f"not valid JSON: {exc}") from None
    grades = raw.get("grades") if isinstance(raw, dict) else None
    for grade, entry in (grades.items() if isinstance(grades, dict) else ()):
        _convert(entry, GradePolicy, f"$.grades.{grade}")  # name the grade, not `$.grades[...]`
    policy = _convert(raw, CreditPolicy, "$")
    check_policy(policy)
    return policy


def _convert(raw: object, cls: type[msgspec.Struct], prefix: str) -> Any:
    try:
        return msgspec.convert(raw, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = text.rsplit("at `", 1)[1].rstrip("`") if "at `" in text else "$"
        unknown = re.search(r"unknown field `([^`]+)`", text)
        if unknown:
            path += f".{unknown.group(1)}"
        raise RuleViolation(prefix + path[1:], "policy_schema", text) from None


def check_policy(policy: CreditPolicy) -> None:
    """Rules a schema cannot say: weights add to 100, every grade has a policy..."""
    card = policy.scorecard
    total = sum(msgspec.structs.asdict(card.weights).values())
    if total != 100:
        raise RuleViolation("$.scorecard.weights", "sum_100", f"weights add up to {total}, not 100")
    for name in msgspec.structs.asdict(card.bands):
        band: Band = getattr(card.bands, name)
        if band.good == band.bad:
            raise RuleViolation(f"$.scorecard.bands.{name}", "good_differs_from_bad", "good and bad must differ")
    _share_in_range("$.scorecard.missing_share", card.missing_share)
    for table in ("external_rating", "operating_state"):
        for key, share in getattr(card.tables, table).items():
            _share_in_range(f"$.scorecard.tables.{table}.{key}", share)
    if policy.checks.reject_over_limit_pct < 0:
        raise RuleViolation("$.checks.reject_over_limit_pct", "range", "must be 0 or more")
    pct = policy.warnings.concentration_above_pct
    if pct is not None and not 0 <= pct <= 100:
        raise RuleViolation("$.warnings.concentration_above_pct", "range", "must be a percentage from 0 to 100")
    if not card.cutoffs:
        raise RuleViolation("$.scorecard.cutoffs", "required", "at least one grade is needed")
    minimums = list(card.cutoffs.values())
    if minimums != sorted(minimums, reverse=True) or len(set(minimums)) != len(minimums):
        raise RuleViolation("$.scorecard.cutoffs", "descending", "list grades best first with strictly decreasing minimum scores")
    if minimums[-1] != 0:
        raise RuleViolation(f"$.scorecard.cutoffs.{list(card.cutoffs)[-1]}", "lowest_is_zero", "the last grade must start at 0")
    for grade in card.cutoffs:
        if grade not in policy.grades:
            raise RuleViolation(f"$.grades.{grade}", "required", f"grade {grade} has a cut-off but no policy")
    for grade in policy.grades:
        if grade not in card.cutoffs:
            raise RuleViolation(f"$.grades.{grade}", "known_grade", f"grade {grade} has no cut-off")
    if policy.unassessed_grade not in policy.grades:
        raise RuleViolation("$.unassessed_grade", "known_grade", f"{policy.unassessed_grade!r} is not a grade")


def _share_in_range(path: str, share: Decimal) -> None:
    if not 0 <= share <= 1:
        raise RuleViolation(path, "range", f"{share} is not a share from 0 to 1")


# ---- scoring ---------------------------------------------------------------------------


class Indicators(msgspec.Struct, frozen=True, kw_only=True):
    """Every input of the scorecard (the financial ones may be unknown)."""

    current_ratio: Decimal | None = None
    debt_ratio: Decimal | None = None
    profitability: Decimal | None = None
    years_trading: Decimal | None = None
    external_rating: str | None = None
    operating_state: str | None = None
    average_days_late: Decimal | None = None
    share_paid_late: Decimal | None = None
    broken_promises: Decimal | None = None
    disputes: Decimal | None = None
    overdue_days: Decimal | None = None


class FactorScore(msgspec.Struct, frozen=True, kw_only=True):
    factor: str
    value: str | None
    points: int
    max_points: int


class Score(msgspec.Struct, frozen=True, kw_only=True):
    model_version: str
    score: int
    grade: str
    reason_codes: tuple[str, ...]
    factors: tuple[FactorScore, ...]


def band_share(value: Decimal, band: Band) -> Decimal:
    if band.good > band.bad:
        position = (value - band.bad) / (band.good - band.bad)
    else:
        position = (band.bad - value) / (band.bad - band.good)
    return min(Decimal(1), max(Decimal(0), position))


def _points(weight: int, share: Decimal) -> Decimal:
    return Decimal(weight) * share


def score(card: Scorecard, indicators: Indicators) -> Score:
    """Score 0-100, grade by cut-offs, reason codes for every factor that lost points."""
    raw: list[tuple[str, str | None, Decimal, int, str]] = []
    for factor, weight in msgspec.structs.asdict(card.weights).items():
        value = getattr(indicators, factor)
        if value is None:
            share, reason = card.missing_share, f"{factor.upper()}_MISSING"
        elif factor in ("external_rating", "operating_state"):
            table: dict[str, Decimal] = getattr(card.tables, factor)
            share, reason = table.get(value, Decimal(0)), f"{factor.upper()}_WEAK"
        else:
            share, reason = band_share(value, getattr(card.bands, factor)), f"{factor.upper()}_WEAK"
        raw.append((factor, None if value is None else str(value), _points(weight, share), weight, reason))
    total = sum((p for _, _, p, _, _ in raw), Decimal(0)).quantize(Decimal(1), ROUND_HALF_EVEN)
    value = int(total)
    lost = sorted((r for r in raw if r[2] < r[3]), key=lambda r: (-(r[3] - r[2]), r[0]))
    factors = tuple(
        FactorScore(factor=f, value=v, points=int(p.quantize(Decimal(1), ROUND_HALF_EVEN)), max_points=w) for f, v, p, w, _ in raw
    )
    return Score(model_version=card.model_version, score=value, grade=grade_for(card, value), reason_codes=tuple(r[4] for r in lost), factors=factors)


def grade_for(card: Scorecard, value: int) -> str:
    for grade, minimum in card.cutoffs.items():
        if value >= minimum:
            return grade
    return list(card.cutoffs)[-1]  # pragma: no cover - the last cut-off is 0
