"""Reading a rate a person wrote (a CI script's flag, a figure typed into Slack): a finite,
non-negative decimal in plain or exponent form, ASCII digits only. Standard library only: the
`gate` command's fast start depends on it."""

from __future__ import annotations

import re
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation

# ASCII digits only: Decimal() alone would also take "1_0", " 1 " and non-ASCII digits.
_NUMBER = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = re.compile(r"\+?(?:s?nan[0-9]*|inf|infinity)", re.IGNORECASE)
_EXPECTED = "expected a finite non-negative decimal number such as 0.001 or 1e-3"


class InvalidRate(ValueError):
    """A rate that does not read; the message is one line saying what is wrong."""


def parse_rate(name: str, text: str) -> Decimal:
    """`text` as a finite non-negative decimal; raises InvalidRate (naming `name`) otherwise."""
    if not text:
        raise InvalidRate(f"{name} is empty; {_EXPECTED}")
    if text.startswith("-") and _NUMBER.fullmatch(text[1:]):
        raise InvalidRate(f"{name} {text!r} is negative; {_EXPECTED}")
    if not _NUMBER.fullmatch(text):
        kind = "finite" if _NON_FINITE.fullmatch(text) else "a decimal number"
        raise InvalidRate(f"{name} {text!r} is not {kind}; {_EXPECTED}")
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent beyond what Decimal can hold
        raise InvalidRate(f"{name} {text!r} is out of range; {_EXPECTED}") from None


def exact_product(a: Decimal, b: Decimal) -> Decimal:
    """a x b without rounding, whatever the operands' digits.

    Beyond Decimal's exponent range the product saturates (Infinity, or 0 below the smallest
    representable figure) instead of raising, so no input can crash a gate.
    """
    digits = len(a.as_tuple().digits) + len(b.as_tuple().digits)
    return Context(prec=digits, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[]).multiply(a, b)


def format_rate(value: Decimal) -> str:
    """A figure for people and for workflow inputs: `0.002`, `2`, `1E-20` (trailing zeros gone)."""
    digits = len(value.as_tuple().digits)
    exact = value.normalize(Context(prec=max(digits, 1), Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[]))
    if exact.is_finite() and -12 <= exact.adjusted() <= 12:
        return format(exact, "f")
    return str(exact)
