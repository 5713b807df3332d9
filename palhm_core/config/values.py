"""Parsers for the value types config files share: decimal limits and octal modes."""

from __future__ import annotations

from palhm_core.config.place import Place

DECIMAL_TYPES = ["integer", "number", "string"]

_INFINITIES = {"inf", "+inf", "infinity", "+infinity", "-inf", "-infinity"}


def parse_limit(value, place: Place) -> int | None:
    """A decimal limit: a JSON number or a string; ``None`` means no limit.

    ``inf``/``Infinity`` of either sign disables the limit, the fraction is
    ignored, and integers are exact however large (beyond 10^100, which no
    backend can reach, a limit is the same as none). Negatives and anything else
    are refused.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise place.error(f"expected a decimal, got {value!r}")
    if isinstance(value, int) and 0 <= value < 10**100:  # the usual case, exact
        return value
    import decimal

    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _INFINITIES:
            return None
        try:
            number = decimal.Decimal(text)
        except decimal.InvalidOperation:
            raise place.error(f"not a decimal number: {value!r}") from None
    elif isinstance(value, int):
        number = decimal.Decimal(value)
    elif isinstance(value, float):
        number = decimal.Decimal(repr(value)) if value == value else decimal.Decimal("NaN")
    else:
        raise place.error(f"expected a decimal, got {value!r}")
    if number.is_nan():
        raise place.error(f"not a decimal number: {value!r}")
    if number.is_infinite() or number.adjusted() > 100:
        # Nothing holds 10^100 bytes or copies: such a limit never applies.
        return None
    if number < 0:
        raise place.error(f"must not be negative: {value!r}")
    return int(number.to_integral_value(rounding=decimal.ROUND_FLOOR))
