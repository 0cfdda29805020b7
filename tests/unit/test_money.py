import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from domain.errors import RuleViolation
from domain.money import check_currency, format_minor, minor_unit_exponent, parse_decimal_amount


@pytest.mark.parametrize(("text", "currency", "minor"), [("55.94", "EUR", 5594), ("55.9", "EUR", 5590), ("55", "EUR", 5500), ("1000", "JPY", 1000), ("1.234", "KWD", 1234), (" 0.01 ", "USD", 1)])
def test_decimal_amounts_convert_exactly(text, currency, minor):
    assert parse_decimal_amount(text, currency) == minor


@pytest.mark.parametrize(("text", "currency", "rule"), [("55.945", "EUR", "minor_unit_precision"), ("10.5", "JPY", "minor_unit_precision"), ("abc", "EUR", "decimal_amount"), ("1,234.50", "EUR", "decimal_amount"), ("0", "EUR", "positive"), ("-3.00", "EUR", "positive"), ("", "EUR", "required"), ("NaN", "EUR", "decimal_amount")])
def test_bad_decimal_amounts_name_the_rule(text, currency, rule):
    with pytest.raises(RuleViolation) as err:
        parse_decimal_amount(text, currency, field="amount")
    assert err.value.field == "amount"
    assert err.value.rule == rule


@pytest.mark.parametrize("code", ["eur", "EURO", "XYZ", "XAU", "", "E1R"])
def test_currency_must_be_iso4217_with_minor_units(code):
    with pytest.raises(RuleViolation) as err:
        check_currency(code)
    assert (err.value.field, err.value.rule) == ("currency", "iso4217")


def test_minor_unit_exponents():
    assert [minor_unit_exponent(c) for c in ("EUR", "JPY", "KWD")] == [2, 0, 3]


@given(st.integers(min_value=1, max_value=10**15), st.sampled_from(["EUR", "JPY", "KWD", "USD"]))
def test_format_and_parse_round_trip(minor, currency):
    assert parse_decimal_amount(format_minor(minor, currency), currency) == minor


def _by_decimal(text: str, currency: str) -> tuple[str, object]:
    """The exact reference: Decimal arithmetic only (the slow path of parse_decimal_amount)."""
    from decimal import Decimal, InvalidOperation

    exponent = minor_unit_exponent(currency)
    raw = text.strip()
    if not raw:
        return "rule", "required"
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return "rule", "decimal_amount"
    if not value.is_finite():
        return "rule", "decimal_amount"
    if value < 0:
        return "rule", "positive"
    if value > 0 and value.adjusted() + exponent > 15:
        return "rule", "max_amount"
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        return "rule", "minor_unit_precision"
    if scaled <= 0:
        return "rule", "positive"
    return ("value", int(scaled)) if scaled <= 10**15 else ("rule", "max_amount")


@given(st.text(alphabet="0123456789.٣ -+e", max_size=12), st.sampled_from(["EUR", "JPY", "KWD"]))
@example("9e999999999", "EUR")  # found by hypothesis: once overflowed Decimal and built a giant int
@example("1" * 30, "EUR")
@example("-9e999999999", "EUR")  # found by hypothesis: a negative amount skipped the size check and overflowed
def test_the_integer_fast_path_agrees_with_decimal_arithmetic(text, currency):
    try:
        got: tuple[str, object] = ("value", parse_decimal_amount(text, currency))
    except RuleViolation as exc:
        got = ("rule", exc.rule)
    assert got == _by_decimal(text, currency)
