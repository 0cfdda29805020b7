"""The policy file: shipped default decodes; bad files are refused naming the key."""

from __future__ import annotations

from decimal import Decimal
from importlib import resources

import msgspec
import pytest

from domain.errors import RuleViolation
from domain.scorecard import Band, Indicators, band_share, decode_policy, score

DEFAULT = resources.files("services").joinpath("credit_policy.toml").read_text()


def refused(text: str, fmt: str = "toml") -> RuleViolation:
    with pytest.raises(RuleViolation) as err:
        decode_policy(text.encode(), fmt)
    return err.value


def test_default_policy_decodes_from_toml_and_json():
    policy = decode_policy(DEFAULT.encode())
    assert list(policy.scorecard.cutoffs) == ["A", "B", "C", "D", "E"]
    assert policy.grades["E"].prepayment_required and policy.grades["A"].max_terms_days == 60
    assert decode_policy(msgspec.json.encode(policy), "json") == policy


@pytest.mark.parametrize(("old", "new", "path", "rule"), [
    ("current_ratio = 12", 'current_ratio = "twelve"', "$.scorecard.weights.current_ratio", "policy_schema"),
    ("current_ratio = 12", "current_ratio = 13", "$.scorecard.weights", "sum_100"),
    ("debt_ratio = { good = 0.3, bad = 0.9 }", "debt_ratio = { good = 0.3 }", "$.scorecard.bands.debt_ratio", "policy_schema"),
    ("disputes = { good = 0, bad = 4 }", "disputes = { good = 4, bad = 4 }", "$.scorecard.bands.disputes", "good_differs_from_bad"),
    ("max_terms_days = 60", "max_terms_days = -1", "$.grades.A.max_terms_days", "policy_schema"),
    ("review_every_days = 365", "review_every_dayz = 365", "$.grades.A.review_every_dayz", "policy_schema"),
    ("D = 35", "D = 85", "$.scorecard.cutoffs", "descending"),
    ('unassessed_grade = "C"', 'unassessed_grade = "Z"', "$.unassessed_grade", "known_grade"),
    (", AA = 1,", ", AA = 1.5,", "$.scorecard.tables.external_rating.AA", "range"),
])
def test_bad_policy_names_the_key(old, new, path, rule):
    assert old in DEFAULT
    err = refused(DEFAULT.replace(old, new, 1))
    assert (err.field, err.rule) == (path, rule), err


def test_missing_grade_policy_and_bad_syntax():
    text = DEFAULT.replace("[grades.E]", "[grades.X]")
    assert refused(text).field in ("$.grades.E", "$.grades.X")
    assert refused("weights = [").rule == "toml"
    assert refused('{"scorecard": 1}', "json").field == "$.scorecard"


def test_band_is_linear_between_bad_and_good_in_either_direction():
    assert band_share(Decimal("1.4"), Band(good=Decimal(2), bad=Decimal("0.8"))) == Decimal("0.5")
    assert band_share(Decimal(15), Band(good=Decimal(0), bad=Decimal(30))) == Decimal("0.5")
    assert band_share(Decimal(99), Band(good=Decimal(0), bad=Decimal(30))) == 0


def test_perfect_and_empty_indicators():
    card = decode_policy(DEFAULT.encode()).scorecard
    perfect = Indicators(current_ratio=Decimal(3), debt_ratio=Decimal(0), profitability=Decimal(1), years_trading=Decimal(30),
                         external_rating="AAA", operating_state="normal", average_days_late=Decimal(0), share_paid_late=Decimal(0),
                         broken_promises=Decimal(0), disputes=Decimal(0), overdue_days=Decimal(0))
    assert (score(card, perfect).score, score(card, perfect).grade, score(card, perfect).reason_codes) == (100, "A", ())
    empty = score(card, Indicators())
    assert (empty.score, empty.grade, len(empty.reason_codes)) == (50, "C", 11)
