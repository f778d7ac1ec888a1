"""The pure gates agree with SPEC section 1's rule, exactly, and never PASS without enough data."""

from __future__ import annotations

from decimal import Context, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.gate import (
    DEFAULT_ERROR_THRESHOLD,
    GateKind,
    GateReason,
    GateVerdict,
    Verdict,
    evaluate_desktop,
    evaluate_relay,
    exact_product,
    format_rate,
)

D = Decimal


def relay(b: str, c: str, e: str, m: str = "2.0", t: str = "0.01", **kw: int | None) -> GateVerdict:
    return evaluate_relay(
        baseline_crash=D(b),
        current_crash=D(c),
        current_error=D(e),
        crash_multiplier=D(m),
        error_threshold=D(t),
        **kw,  # type: ignore[arg-type]
    )


def desktop(b: str, c: str, m: str = "2.0") -> GateVerdict:
    return evaluate_desktop(baseline_crash=D(b), current_crash=D(c), crash_multiplier=D(m))


RELAY_CASES = [
    # baseline, crash, error, multiplier, threshold -> verdict, reason
    ("0.001", "0.001", "0.001", "2.0", "0.01", Verdict.PASS, None),
    ("0.001", "0.002", "0.01", "2.0", "0.01", Verdict.PASS, None),  # both exactly at the limit
    ("0.1", "0.3", "0", "3", "0.01", Verdict.PASS, None),  # 0.1 * 3 > 0.3 in floats
    ("0.001", "0.0021", "0", "2.0", "0.01", Verdict.ROLLBACK, GateReason.CRASH_RATE),
    ("0.001", "0.001", "0.0101", "2.0", "0.01", Verdict.ROLLBACK, GateReason.ERROR_RATE),
    # error is checked first, even when the crash rule would also fail
    ("0", "0.5", "0.02", "2.0", "0.01", Verdict.ROLLBACK, GateReason.ERROR_RATE),
    ("0", "0.0001", "0", "2.0", "0.01", Verdict.ROLLBACK, GateReason.ZERO_BASELINE),
    ("0", "0", "0", "2.0", "0.01", Verdict.PASS, None),
    ("0.0", "0E-10", "0", "2.0", "0.01", Verdict.PASS, None),
    ("0.002", "0.002", "0", "0", "0.01", Verdict.ROLLBACK, GateReason.CRASH_RATE),  # limit 0
    ("0.002", "0.001", "0.005", "2.0", "0.005", Verdict.PASS, None),
    ("1E-3", "2e-3", "1e-2", "2", "1E-2", Verdict.PASS, None),
]


@pytest.mark.parametrize(("b", "c", "e", "m", "t", "verdict", "reason"), RELAY_CASES)
def test_relay_gate_follows_the_runbook(
    b: str, c: str, e: str, m: str, t: str, verdict: Verdict, reason: GateReason | None
) -> None:
    result = relay(b, c, e, m, t)
    assert (result.verdict, result.reason) == (verdict, reason)
    assert result.gate is GateKind.RELAY


DESKTOP_CASES = [
    ("0.001", "0.002", "2.0", Verdict.PASS, None),
    ("0.001", "0.00200001", "2.0", Verdict.KILL_SWITCH, GateReason.CRASH_RATE),
    ("0", "0.001", "2.0", Verdict.KILL_SWITCH, GateReason.ZERO_BASELINE),
    ("0", "0", "2.0", Verdict.PASS, None),
    ("0.1", "0.3", "3", Verdict.PASS, None),
    ("0.1", "0.30000000000000004", "3", Verdict.KILL_SWITCH, GateReason.CRASH_RATE),
]


@pytest.mark.parametrize(("b", "c", "m", "verdict", "reason"), DESKTOP_CASES)
def test_desktop_gate_is_the_crash_rule_with_a_kill_switch(
    b: str, c: str, m: str, verdict: Verdict, reason: GateReason | None
) -> None:
    result = desktop(b, c, m)
    assert (result.verdict, result.reason) == (verdict, reason)


def test_floats_would_get_equality_at_the_limit_wrong() -> None:
    """Why the gate works in Decimal: the case above is a ROLLBACK in floats."""
    assert 0.1 * 3 > 0.3
    assert relay("0.1", "0.3", "0", m="3").verdict is Verdict.PASS


def test_defaults_are_the_runbook_thresholds() -> None:
    at_limit = evaluate_relay(
        baseline_crash=D("0.001"), current_crash=D("0.002"), current_error=D("0.01")
    )
    assert at_limit.verdict is Verdict.PASS
    assert (at_limit.crash_multiplier, at_limit.error_threshold) == (D("2.0"), D("0.01"))
    over = evaluate_desktop(baseline_crash=D("0.001"), current_crash=D("0.0020001"))
    assert over.verdict is Verdict.KILL_SWITCH


def test_verdict_carries_the_figures_and_a_summary_naming_them() -> None:
    result = relay("0.001", "0.005", "0.002")
    assert result.crash_limit == D("0.002")
    assert (result.current_crash, result.baseline_crash) == (D("0.005"), D("0.001"))
    assert result.summary == "crash rate 0.005 exceeds 2x baseline 0.001 (limit 0.002)"
    error = relay("0.001", "0.001", "0.05")
    assert error.summary == "error rate 0.05 exceeds the threshold 0.01"
    zero = desktop("0", "0.003")
    assert zero.summary == "crash rate 0.003 while the baseline crash rate is 0"
    passed = relay("0.001", "0.0015", "0.004")
    assert passed.passed
    assert passed.summary == (
        "crash rate 0.0015 within 2x baseline 0.001 (limit 0.002); "
        "error rate 0.004 within the threshold 0.01"
    )
    assert "\n" not in passed.summary


def test_a_failing_verdict_is_not_passed() -> None:
    assert not relay("0.001", "0.005", "0").passed


@pytest.mark.parametrize(
    ("sample", "min_sample", "verdict"),
    [
        (99, 100, Verdict.INCONCLUSIVE),
        (None, 100, Verdict.INCONCLUSIVE),
        (0, 1, Verdict.INCONCLUSIVE),
        (0, 0, Verdict.INCONCLUSIVE),  # nothing observed: no minimum makes that a PASS
        (1, 0, Verdict.PASS),
        (100, 100, Verdict.PASS),
        (None, 0, Verdict.PASS),
    ],
)
def test_a_small_sample_is_inconclusive(
    sample: int | None, min_sample: int, verdict: Verdict
) -> None:
    result = relay("0.001", "0.001", "0", sample=sample, min_sample=min_sample)
    assert result.verdict is verdict
    if verdict is Verdict.INCONCLUSIVE:
        assert result.reason is GateReason.INSUFFICIENT_SAMPLE
        assert str(min_sample) in result.summary


def test_a_zero_sample_says_nothing_was_observed() -> None:
    result = relay("0.001", "0.001", "0", sample=0, min_sample=0)
    assert (result.verdict, result.reason) == (Verdict.INCONCLUSIVE, GateReason.INSUFFICIENT_SAMPLE)
    assert result.summary == "sample 0: nothing was observed in the window"


def test_a_negative_sample_is_no_count_and_never_passes() -> None:
    """A negative count (a source's bug) passed with `min_sample` 0: it is no count at all."""
    result = relay("0.001", "0.001", "0", sample=-5, min_sample=0)
    assert (result.verdict, result.reason) == (Verdict.INCONCLUSIVE, GateReason.INSUFFICIENT_SAMPLE)
    assert result.summary == "sample -5 is negative: no count of requests or sessions"


@given(
    b=st.none() | st.decimals(),
    c=st.none() | st.decimals(),
    sample=st.integers(max_value=0),
    min_sample=st.integers(0, 100),
)
def test_a_zero_or_negative_sample_never_passes_nor_fails(
    b: Decimal | None, c: Decimal | None, sample: int, min_sample: int
) -> None:
    """A window that saw no request or session (a canary no traffic reached), or whose count
    is negative, tested nothing: whatever rates a query or a person gives, whatever the minimum."""
    for result in (
        evaluate_relay(
            baseline_crash=b, current_crash=c, current_error=c, sample=sample, min_sample=min_sample
        ),
        evaluate_desktop(baseline_crash=b, current_crash=c, sample=sample, min_sample=min_sample),
    ):
        assert result.verdict is Verdict.INCONCLUSIVE


def test_a_small_sample_does_not_roll_back_on_a_few_errors() -> None:
    result = relay("0.001", "0.001", "1", sample=3, min_sample=100)
    assert (result.verdict, result.reason) == (Verdict.INCONCLUSIVE, GateReason.INSUFFICIENT_SAMPLE)
    assert result.summary == "sample 3 is below the minimum of 100"


@pytest.mark.parametrize("bad", [None, D("NaN"), D("Infinity"), D("-0.001"), D("-0")])
def test_a_missing_or_unusable_rate_is_inconclusive(bad: Decimal | None) -> None:
    for result in (
        evaluate_relay(baseline_crash=D("0.001"), current_crash=bad, current_error=D("0")),
        evaluate_relay(baseline_crash=D("0.001"), current_crash=D("0"), current_error=bad),
        evaluate_relay(baseline_crash=bad, current_crash=D("0"), current_error=D("0")),
        evaluate_desktop(baseline_crash=D("0.001"), current_crash=bad),
        evaluate_desktop(baseline_crash=bad, current_crash=D("0")),
    ):
        assert (result.verdict, result.reason) == (Verdict.INCONCLUSIVE, GateReason.NO_DATA)
        assert "no verdict without data" in result.summary


def test_missing_data_says_which_figure() -> None:
    result = evaluate_relay(baseline_crash=D("0.001"), current_crash=D("0"), current_error=None)
    assert result.summary == "current error rate missing: no verdict without data"


@pytest.mark.parametrize(
    ("b", "c", "e", "verdict", "reason", "summary"),
    [
        (
            "0.001",
            None,
            "0.5",
            Verdict.ROLLBACK,
            GateReason.ERROR_RATE,
            "error rate 0.5 exceeds the threshold 0.01; current crash rate missing",
        ),
        (
            None,
            "0.001",
            "0.5",
            Verdict.ROLLBACK,
            GateReason.ERROR_RATE,
            "error rate 0.5 exceeds the threshold 0.01; baseline crash rate missing",
        ),
        (
            "0.001",
            "0.5",
            None,
            Verdict.ROLLBACK,
            GateReason.CRASH_RATE,
            "crash rate 0.5 exceeds 2x baseline 0.001 (limit 0.002); current error rate missing",
        ),
        (
            "0",
            "0.001",
            None,
            Verdict.ROLLBACK,
            GateReason.ZERO_BASELINE,
            "crash rate 0.001 while the baseline crash rate is 0; current error rate missing",
        ),
        (
            "0.001",
            "0.001",
            None,
            Verdict.INCONCLUSIVE,
            GateReason.NO_DATA,
            "current error rate missing: no verdict without data",
        ),
        (
            "0.001",
            None,
            "0.001",
            Verdict.INCONCLUSIVE,
            GateReason.NO_DATA,
            "current crash rate missing: no verdict without data",
        ),
    ],
)
def test_a_figure_that_breaks_a_rule_rolls_back_whatever_is_missing_beside_it(
    b: str | None,
    c: str | None,
    e: str | None,
    verdict: Verdict,
    reason: GateReason,
    summary: str,
) -> None:
    """SPEC: roll back at once when either rule holds. A failed crash-rate query during an
    error burst rolls back; what passes stays INCONCLUSIVE until every figure is read."""
    result = evaluate_relay(
        baseline_crash=None if b is None else D(b),
        current_crash=None if c is None else D(c),
        current_error=None if e is None else D(e),
    )
    assert (result.verdict, result.reason, result.summary) == (verdict, reason, summary)


@pytest.mark.parametrize("bad", [D("NaN"), D("-1"), D("Infinity")])
def test_bad_thresholds_are_a_programming_error(bad: Decimal) -> None:
    with pytest.raises(ValueError, match="crash_multiplier"):
        evaluate_desktop(baseline_crash=D(0), current_crash=D(0), crash_multiplier=bad)
    with pytest.raises(ValueError, match="error_threshold"):
        evaluate_relay(
            baseline_crash=D(0), current_crash=D(0), current_error=D(0), error_threshold=bad
        )


def test_exact_product_does_not_round_or_overflow() -> None:
    long = D("0." + "3" * 60)
    assert exact_product(long, D(3)) == D("0." + "9" * 60)
    assert exact_product(D("1E+999999999999999999"), D("1E+10")) == D("Infinity")


@pytest.mark.parametrize(
    ("value", "shown"),
    [("0.0020", "0.002"), ("1E-3", "0.001"), ("2.0", "2"), ("100", "100"), ("1E-20", "1E-20")],
)
def test_format_rate(value: str, shown: str) -> None:
    assert format_rate(D(value)) == shown


# Property tests: a reference formulation of SPEC's rule in exact rationals.

rates = st.one_of(
    st.decimals(min_value=0, max_value=1, allow_nan=False, allow_infinity=False, places=6),
    st.decimals(min_value=0, max_value=10, allow_nan=False, allow_infinity=False),
    st.sampled_from([D(0), D("0.0"), D("0E-7"), D("0.001"), D("0.01"), D("1")]),
)
multipliers = st.one_of(
    st.sampled_from([D("2.0"), D(2), D(3), D("1.5"), D(0)]),
    st.decimals(min_value=0, max_value=100, allow_nan=False, allow_infinity=False),
)


def reference(
    b: Decimal, c: Decimal, e: Decimal | None, m: Decimal, t: Decimal | None
) -> GateReason | None:
    """SPEC section 1, step by step."""
    if e is not None and t is not None and Fraction(e) > Fraction(t):
        return GateReason.ERROR_RATE
    if Fraction(b) <= 0:
        return GateReason.ZERO_BASELINE if Fraction(c) > 0 else None
    return GateReason.CRASH_RATE if Fraction(c) > Fraction(b) * Fraction(m) else None


@given(b=rates, c=rates, e=rates, m=multipliers, t=rates)
def test_relay_agrees_with_the_reference(
    b: Decimal, c: Decimal, e: Decimal, m: Decimal, t: Decimal
) -> None:
    result = evaluate_relay(
        baseline_crash=b, current_crash=c, current_error=e, crash_multiplier=m, error_threshold=t
    )
    expected = reference(b, c, e, m, t)
    assert result.reason == expected
    assert result.verdict is (Verdict.PASS if expected is None else Verdict.ROLLBACK)


@given(b=rates, m=multipliers, c=rates)
def test_desktop_agrees_with_the_reference(b: Decimal, m: Decimal, c: Decimal) -> None:
    result = evaluate_desktop(baseline_crash=b, current_crash=c, crash_multiplier=m)
    expected = reference(b, c, None, m, None)
    assert result.reason == expected
    assert result.verdict is (Verdict.PASS if expected is None else Verdict.KILL_SWITCH)


@given(b=rates.filter(lambda r: r > 0), m=multipliers)
def test_exactly_at_the_crash_limit_passes(b: Decimal, m: Decimal) -> None:
    limit = exact_product(b, m)
    assert evaluate_desktop(baseline_crash=b, current_crash=limit, crash_multiplier=m).passed
    just_over = Context(prec=200).add(limit, D("1E-60"))
    over = evaluate_desktop(baseline_crash=b, current_crash=just_over, crash_multiplier=m)
    assert over.verdict is Verdict.KILL_SWITCH


@given(
    b=rates,
    c=rates,
    e=rates,
    min_sample=st.integers(min_value=1, max_value=10_000),
    data=st.data(),
)
def test_below_the_minimum_sample_never_passes(
    b: Decimal, c: Decimal, e: Decimal, min_sample: int, data: st.DataObject
) -> None:
    sample = data.draw(st.none() | st.integers(min_value=0, max_value=min_sample - 1))
    result = evaluate_relay(
        baseline_crash=b, current_crash=c, current_error=e, sample=sample, min_sample=min_sample
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.reason is GateReason.INSUFFICIENT_SAMPLE


def known(rate: Decimal | None) -> Decimal | None:
    """The rate when the gate can use it, None when not (missing, NaN, infinite, negative)."""
    return rate if rate is not None and rate.is_finite() and not rate.is_signed() else None


@given(
    b=st.none() | st.decimals(),
    c=st.none() | st.decimals(),
    e=st.none() | st.decimals(),
    m=multipliers,
)
def test_with_a_figure_missing_only_the_rules_on_known_figures_can_fail_and_none_passes(
    b: Decimal | None, c: Decimal | None, e: Decimal | None, m: Decimal
) -> None:
    result = evaluate_relay(baseline_crash=b, current_crash=c, current_error=e, crash_multiplier=m)
    b, c, e = known(b), known(c), known(e)
    t = DEFAULT_ERROR_THRESHOLD
    if e is not None and Fraction(e) > Fraction(t):
        expected: GateReason | None = GateReason.ERROR_RATE
    elif b is not None and c is not None:
        expected = reference(b, c, None, m, None)
    else:
        expected = None
    if None in (b, c, e) and expected is None:
        assert (result.verdict, result.reason) == (Verdict.INCONCLUSIVE, GateReason.NO_DATA)
    else:
        assert result.reason == expected
        assert result.verdict is (Verdict.PASS if expected is None else Verdict.ROLLBACK)


@given(
    b=st.none() | st.decimals(),
    c=st.none() | st.decimals(),
    e=st.none() | st.decimals(),
    sample=st.none() | st.integers(min_value=0),
    min_sample=st.integers(min_value=0, max_value=1000),
)
def test_any_figures_give_a_verdict_and_a_one_line_summary(
    b: Decimal | None, c: Decimal | None, e: Decimal | None, sample: int | None, min_sample: int
) -> None:
    result = evaluate_relay(
        baseline_crash=b, current_crash=c, current_error=e, sample=sample, min_sample=min_sample
    )
    if result.passed:
        assert all(x is not None and x.is_finite() and x >= 0 for x in (b, c, e))
    assert result.summary and "\n" not in result.summary
