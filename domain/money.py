"""Money: integer minor units with an ISO 4217 currency, never floats.

Amounts written as decimals (``55.94``, as ERP exports do) are converted exactly with
:class:`decimal.Decimal`; a value with more decimals than the currency has minor
units (``55.945`` EUR, ``10.5`` JPY) is refused rather than rounded, because silently
rounding someone's money is a bug.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache

import iso4217

from domain.errors import RuleViolation


@lru_cache(maxsize=None)
def minor_unit_exponent(currency: str, field: str = "currency") -> int:
    """Number of minor-unit digits of an ISO 4217 currency (EUR 2, JPY 0, KWD 3)."""
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
        raise RuleViolation(field, "iso4217", f"{currency!r} is not a three-letter upper-case ISO 4217 code")
    try:
        exponent = iso4217.Currency(currency).exponent
    except ValueError:
        raise RuleViolation(field, "iso4217", f"{currency!r} is not an ISO 4217 currency code") from None
    if exponent is None:
        raise RuleViolation(field, "iso4217", f"{currency!r} has no minor unit (not a currency of account)")
    return exponent


def check_currency(currency: str, field: str = "currency") -> str:
    minor_unit_exponent(currency, field)
    return currency


def check_positive_amount(amount_minor: object, field: str = "amount_minor") -> int:
    """Amounts are positive integers in minor units; bools and floats are refused."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise RuleViolation(field, "integer_minor_units", f"must be an integer number of minor units, got {amount_minor!r}")
    if amount_minor <= 0:
        raise RuleViolation(field, "positive", f"must be greater than zero, got {amount_minor}")
    return amount_minor


#: The largest amount a command accepts (domain/commands.py ``Minor``), in minor units.
MAX_MINOR = 10**15


def _not_above_max(value: int, raw: str, field: str) -> int:
    if value > MAX_MINOR:
        raise RuleViolation(field, "max_amount", f"{raw!r} is above the largest amount accepted ({MAX_MINOR} minor units)")
    return value


def parse_decimal_amount(text: str, currency: str, field: str = "amount") -> int:
    """Convert a decimal string (``"55.94"``, ``"1,234.50"`` is refused) to minor units exactly.

    Amounts above :data:`MAX_MINOR` are refused before any big arithmetic, so text such as
    ``1e999999999`` costs nothing (it would otherwise build a gigantic integer)."""
    exponent = minor_unit_exponent(currency)
    raw = text.strip()
    if not raw:
        raise RuleViolation(field, "required", "an amount is required")
    # The usual "1234.50": the same result in integer arithmetic, several times cheaper
    # (bulk import). isdecimal() accepts exactly the digits int() and Decimal() accept.
    whole, dot, fraction = raw.partition(".")
    if whole.isdecimal() and len(whole) <= 30 and (not dot or (fraction.isdecimal() and len(fraction) <= 30)):
        fraction = fraction.rstrip("0")
        if len(fraction) > exponent:
            raise RuleViolation(field, "minor_unit_precision", f"{raw!r} has more than {exponent} decimals for {currency}")
        value = int(whole) * 10**exponent + (int(fraction) * 10 ** (exponent - len(fraction)) if fraction else 0)
        return _not_above_max(value, raw, field) if value > 0 else check_positive_amount(value, field)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise RuleViolation(field, "decimal_amount", f"{raw!r} is not a decimal number (use '.' as decimal point, no separators)") from None
    if not value.is_finite():
        raise RuleViolation(field, "decimal_amount", f"{raw!r} is not a finite amount")
    if value < 0:  # refused before scaling: "-9e999999999" would overflow the Decimal context
        raise RuleViolation(field, "positive", f"{raw!r} is not a positive amount")
    if value > 0 and value.adjusted() + exponent > 15:
        raise RuleViolation(field, "max_amount", f"{raw!r} is above the largest amount accepted ({MAX_MINOR} minor units)")
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise RuleViolation(field, "minor_unit_precision", f"{raw!r} has more than {exponent} decimals for {currency}")
    return _not_above_max(check_positive_amount(int(scaled), field), raw, field)


def format_minor(amount_minor: int, currency: str) -> str:
    """Render minor units as a decimal string for people (``5594, EUR`` -> ``55.94``)."""
    exponent = minor_unit_exponent(currency)
    return str(Decimal(amount_minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))) if exponent else str(amount_minor)
