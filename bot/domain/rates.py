"""Reading a rate a person wrote (a CI script's flag, a figure typed into Slack, a plan's
threshold): a finite, non-negative decimal in plain or exponent form, ASCII digits only, and
the thresholds no gate can use, in the same words wherever they are written. Standard library
only: the `gate` command's fast start depends on it."""

from __future__ import annotations

import re
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation
from typing import Literal

# ASCII digits only: Decimal() alone would also take "1_0", " 1 " and non-ASCII digits.
_NUMBER = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = re.compile(r"\+?(?:s?nan[0-9]*|inf|infinity)", re.IGNORECASE)
_EXPECTED = "expected a finite non-negative decimal number such as 0.001 or 1e-3"

BaselineOrigin = Literal["plan", "figures file", "live"]
"""Where a gate's baseline crash rate was written: the plan, the `static` source's figures
file (read again at every gate), or a query read live."""


class InvalidRate(ValueError):
    """A rate that does not read; the message is one line saying what is wrong."""


def parse_rate(name: str, text: str) -> Decimal:
    """`text` as a finite non-negative decimal; raises InvalidRate (naming `name`) otherwise."""
    if not text:
        raise InvalidRate(f"{name} is empty; {_EXPECTED}")
    if (fraction := percentage(text)) is not None:
        raise InvalidRate(f"{name} {text!r} is a percentage; {fraction}")
    if text.startswith("-") and _NUMBER.fullmatch(text[1:]):
        raise InvalidRate(f"{name} {text!r} is negative; {_EXPECTED}")
    if not _NUMBER.fullmatch(text):
        kind = "finite" if _NON_FINITE.fullmatch(text) else "a decimal number"
        raise InvalidRate(f"{name} {text!r} is not {kind}; {_EXPECTED}")
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent beyond what Decimal can hold
        raise InvalidRate(f"{name} {text!r} is out of range; {_EXPECTED}") from None


def percentage(text: str) -> str | None:
    """What to write for a rate written as a percentage (`1%`, `0.5 %`): `rates are fractions:
    write 0.01 for 1%`. None when `text` is no percentage."""
    number = text.strip().removesuffix("%").rstrip()
    if not text.strip().endswith("%") or not _NUMBER.fullmatch(number):
        return None
    try:  # exactly, whatever the exponent: `1e9999999%` raised Overflow, `1e-999999999%` read 0
        fraction = format_rate(exact_product(Decimal(number), Decimal("0.01")))
    except InvalidOperation:  # an exponent beyond what Decimal can hold
        return "rates are fractions: write 0.01 for 1%"
    return f"rates are fractions: write {fraction} for {number}%"


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


def as_fraction(rate: Decimal) -> str:
    """What to write for `rate` meant as a percentage: `0.01 for 1%` (`1` meant)."""
    meant = rate if rate < 100 else Decimal(1)
    return f"{format_rate(meant / 100)} for {format_rate(meant)}%"


def baseline_problem(baseline: Decimal) -> str | None:
    """Why a baseline crash rate cannot be a gate's: 1 is every session crashing, so `1` is
    almost surely 1%; with the default multiplier its limit is one no crash rate exceeds, and
    its crash rule could never fail. None: it can."""
    if baseline < 1:
        return None
    return (
        f"{baseline} is {format_rate(baseline * 100)}%: a baseline crash rate is below 1 (100%, "
        f"every session crashing); rates are fractions: write {as_fraction(baseline)}"
    )


def crash_limit_problem(baseline: Decimal, multiplier: Decimal) -> str | None:
    """Why a baseline below 1 cannot be a gate's: its limit (times `crash_multiplier`) is 1 or
    more, which no crash rate exceeds (`0.5` meant as 0.5%). None: a crash rate can exceed it
    (or the baseline is refused on its own)."""
    if baseline >= 1 or exact_product(baseline, multiplier) < 1:
        return None
    limit = format_rate(exact_product(baseline, multiplier) * 100)
    mend = "lower crash_multiplier"  # a baseline below 1% is no percentage mistaken
    if baseline >= Decimal("0.01"):
        mend = f"rates are fractions: write {as_fraction(baseline)}"
    return (
        f"{baseline} with crash_multiplier {multiplier} is a limit of {limit}%: no crash rate "
        f"exceeds it, so the crash rule could never fail ({mend})"
    )


def unusable_limit(baseline: Decimal | None, crash_multiplier: Decimal) -> bool:
    """A baseline whose limit (times the multiplier) is 1 or more: no crash rate exceeds it
    (`1` meant as 1%). Plan files refuse it as a fixed baseline; one saved before may hold it."""
    if baseline is None or not (baseline.is_finite() and crash_multiplier.is_finite()):
        return False
    return baseline > 0 and exact_product(baseline, crash_multiplier.copy_abs()) >= 1


def error_threshold_problem(threshold: Decimal) -> str | None:
    """Why an error threshold cannot be a gate's: an error rate (errors / requests) never
    exceeds 1, so a threshold of 1 or more (`1` meant as 1%) could never roll back."""
    if threshold < 1:
        return None
    shown = format_rate(threshold * 100)
    return (
        f"{threshold} is {shown}%: an error rate never exceeds it (rates are fractions: 0.01 = 1%)"
    )


def unusable_error_threshold(threshold: Decimal) -> bool:
    """An error threshold of 1 or more (`1` meant as 1%: an error rate never exceeds it) or a
    signed one (-0): plan files refuse both, a plan saved before they did may hold them."""
    return threshold.is_signed() or threshold >= 1


def unusable_baseline(baseline: Decimal | None) -> bool:
    """A baseline crash rate above 1 (`2` meant as 2%): a rate is a fraction, and twice 2 is a
    limit no crash rate reaches. Plan files refuse it (and a live baseline above 1 is read as
    missing, `bot.adapters.metrics`): only the fixed baseline of a plan saved before may."""
    return baseline is not None and baseline.is_finite() and baseline > 1
