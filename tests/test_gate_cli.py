"""`rollout-bot gate` as CI scripts call it: exit codes, output lines, bad input, start-up."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.cli.gate import main
from bot.domain.gate import Verdict, evaluate_desktop, evaluate_relay

_SCRIPT = Path(sys.executable).with_name("rollout-bot")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]
REPO = Path(__file__).resolve().parent.parent


def relay_args(b: str, c: str, e: str, *extra: str) -> list[str]:
    return [
        "relay",
        "--baseline-crash-rate",
        b,
        "--current-crash-rate",
        c,
        "--current-error-rate",
        e,
        *extra,
    ]


def desktop_args(b: str, c: str, *extra: str) -> list[str]:
    return ["desktop", "--baseline-crash-rate", b, "--current-crash-rate", c, *extra]


def run_in_process(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def run_command(args: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(  # noqa: S603 - our own console script
        [*COMMAND, "gate", *args], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    return done.returncode, done.stdout, done.stderr


# (arguments, exit code, the line's prefix)
OUTCOMES = [
    (relay_args("0.001", "0.001", "0.001"), 0, "PASS:"),
    (relay_args("0.001", "0.002", "0.01"), 0, "PASS:"),  # equal to both limits
    (relay_args("0.1", "0.3", "0", "--crash-multiplier-threshold", "3"), 0, "PASS:"),
    (relay_args("0.001", "0.001", "0.011"), 11, "ROLLBACK:"),
    (relay_args("0", "0.5", "0.02"), 11, "ROLLBACK:"),  # error rate is checked first
    (relay_args("0", "0.0001", "0"), 12, "ROLLBACK:"),
    (relay_args("0", "0", "0"), 0, "PASS:"),
    (relay_args("0.001", "0.0021", "0"), 13, "ROLLBACK:"),
    (relay_args("1e-3", "2E-3", ".01"), 0, "PASS:"),
    (relay_args("1e-3", "2.1E-3", "5."), 11, "ROLLBACK:"),
    (relay_args("0.001", "0.003", "0", "--crash-multiplier-threshold=3"), 0, "PASS:"),
    (relay_args("0.001", "0.001", "0.02", "--error-rate-threshold", "0.02"), 0, "PASS:"),
    (relay_args("0.001", "0.001", "0.021", "--error-rate-threshold=2e-2"), 11, "ROLLBACK:"),
    (desktop_args("0.001", "0.002"), 0, "PASS:"),
    (desktop_args("0", "0.001"), 21, "KILL_SWITCH:"),
    (desktop_args("0", "0"), 0, "PASS:"),
    (desktop_args("0.001", "0.0020001"), 22, "KILL_SWITCH:"),
    (desktop_args("0.1", "0.3", "--crash-multiplier-threshold", "3"), 0, "PASS:"),
    (desktop_args("0.1", "0.3", "--crash-multiplier-threshold", "2.9"), 22, "KILL_SWITCH:"),
    (["desktop", "--current-crash-rate=1E-3", "--baseline-crash-rate=+0.0005"], 0, "PASS:"),
]

BAD_INPUT = [
    ([], "missing the gate kind"),
    (["--baseline-crash-rate", "0"], "missing the gate kind"),
    (["canary", "--baseline-crash-rate", "0"], "unknown gate kind 'canary'"),
    (["relay", "--baseline-crash-rate", "0.001", "--current-crash-rate", "0"], "missing"),
    (desktop_args("0.001", "0")[:3], "missing --current-crash-rate"),
    (relay_args("0", "0", "0", "--verbose"), "unknown flag '--verbose'"),
    (relay_args("0", "0", "0", "--baseline"), "unknown flag '--baseline'"),
    (desktop_args("0", "0", "--current-error-rate", "0"), "unknown flag '--current-error-rate'"),
    (desktop_args("0", "0", "--error-rate-threshold", "0.1"), "unknown flag"),
    (relay_args("0", "0", "0", "extra"), "unexpected argument 'extra'"),
    (relay_args("abc", "0", "0"), "'abc' is not a decimal number"),
    (relay_args("nan", "0", "0"), "'nan' is not finite"),
    (relay_args("0", "NaN", "0"), "'NaN' is not finite"),
    (relay_args("0", "0", "inf"), "'inf' is not finite"),
    (relay_args("0", "0", "Infinity"), "'Infinity' is not finite"),
    (relay_args("-0.1", "0", "0"), "'-0.1' is negative"),
    (relay_args("0", "-1e-3", "0"), "'-1e-3' is negative"),
    (relay_args("", "0", "0"), "--baseline-crash-rate is empty"),
    (relay_args("0", "0", "0", "--error-rate-threshold="), "--error-rate-threshold is empty"),
    (relay_args("1_0", "0", "0"), "'1_0' is not a decimal number"),
    (relay_args("0x1", "0", "0"), "'0x1' is not a decimal number"),
    (relay_args(" 1", "0", "0"), "' 1' is not a decimal number"),
    (relay_args("1e", "0", "0"), "'1e' is not a decimal number"),
    (relay_args(".", "0", "0"), "'.' is not a decimal number"),
    (relay_args("0.1.2", "0", "0"), "is not a decimal number"),
    (relay_args("\u0661", "0", "0"), "is not a decimal number"),  # an Arabic-Indic digit
    (relay_args("1e99999999999999999999999", "0", "0"), "is out of range"),
    (relay_args("0", "0", "0", "--crash-multiplier-threshold", "-2"), "is negative"),
    (relay_args("0", "0", "0", "--error-rate-threshold", "x"), "is not a decimal number"),
    (relay_args("0", "0", "0", "--baseline-crash-rate", "0"), "given more than once"),
    (relay_args("0", "0", "0", "--current-error-rate=0"), "given more than once"),
    (["relay", "--baseline-crash-rate"], "--baseline-crash-rate needs a value"),
    (["relay", "--baseline-crash-rate", "--current-crash-rate", "0"], "needs a value"),
    # A help flag where a value belongs is a bad value: exit 0 would read as PASS in CI.
    (relay_args("-h", "0", "0"), "'-h' is not a decimal number"),
    (relay_args("--help", "0", "0"), "--baseline-crash-rate needs a value"),
    (["desktop", "--baseline-crash-rate=0", "--current-crash-rate=--help"], "is not a decimal"),
    # Nor beside figures: usage on stdout with exit 0 reads as PASS, whatever the figures say.
    (relay_args("0", "0.5", "0.5", "--help"), "--help beside other arguments"),
    (desktop_args("0", "0.5", "-h"), "-h beside other arguments"),
    (["relay", "--help", "--baseline-crash-rate", "0"], "--help beside other arguments"),
    (["--help", "relay", "--baseline-crash-rate", "0"], "--help beside other arguments"),
    (["desktop", "-h", "extra"], "-h beside other arguments"),
]


def assert_outcome(result: tuple[int, str, str], code: int, prefix: str) -> None:
    exit_code, out, err = result
    assert exit_code == code, (out, err)
    line = out if code == 0 else err
    quiet = err if code == 0 else out
    assert quiet == ""
    assert line.startswith(prefix)
    assert line.endswith("\n") and line.count("\n") == 1


def assert_usage_error(result: tuple[int, str, str], reason: str) -> None:
    exit_code, out, err = result
    assert exit_code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert reason in err


@pytest.mark.parametrize(("args", "code", "prefix"), OUTCOMES)
def test_verdicts_in_process(args: list[str], code: int, prefix: str) -> None:
    assert_outcome(run_in_process(args), code, prefix)


@pytest.mark.parametrize(("args", "reason"), BAD_INPUT)
def test_bad_usage_in_process(args: list[str], reason: str) -> None:
    assert_usage_error(run_in_process(args), reason)


@pytest.mark.parametrize(
    ("args", "code", "prefix"),
    [OUTCOMES[i] for i in (1, 2, 3, 5, 6, 7, 8, 14, 15, 16)],
)
def test_verdicts_through_the_console_script(args: list[str], code: int, prefix: str) -> None:
    assert_outcome(run_command(args), code, prefix)


@pytest.mark.parametrize(
    ("args", "reason"),
    [BAD_INPUT[i] for i in (0, 2, 3, 5, 10, 11, 14, 15, 17, 19, 20, 29)],
)
def test_bad_usage_through_the_console_script(args: list[str], reason: str) -> None:
    assert_usage_error(run_command(args), reason)


def test_failing_lines_name_the_figures() -> None:
    _, _, err = run_command(relay_args("0.001", "0.005", "0.002"))
    assert err == "ROLLBACK: crash rate 0.005 exceeds 2x baseline 0.001 (limit 0.002)\n"
    _, _, err = run_in_process(relay_args("0.001", "0.001", "0.05"))
    assert err == "ROLLBACK: error rate 0.05 exceeds the threshold 0.01\n"
    _, _, err = run_in_process(desktop_args("0", "1e-3"))
    assert err == "KILL_SWITCH: crash rate 0.001 while the baseline crash rate is 0\n"
    _, out, _ = run_in_process(desktop_args("0.001", "0.002"))
    assert out == "PASS: crash rate 0.002 within 2x baseline 0.001 (limit 0.002)\n"


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["relay", "--help"], ["desktop", "-h"]])
def test_help_prints_the_usage(args: list[str]) -> None:
    code, out, err = run_command(args)
    assert code == 0 and err == ""
    assert out.startswith("usage: rollout-bot gate relay --baseline-crash-rate B")
    assert "21 desktop zero baseline" in out


def test_the_gate_path_loads_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "from bot.cli.main import main\n"
        "code = main(['gate', 'desktop', '--baseline-crash-rate', '0.001',"
        " '--current-crash-rate', '0.001'])\n"
        "heavy = {'slack_bolt', 'slack_sdk', 'aiohttp', 'sqlalchemy', 'pydantic', 'github'}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(code, loaded)\n"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.splitlines()[-1] == "0 []"


# Property: the command agrees with the domain and with SPEC's rule written out plainly.

decimals = st.decimals(min_value=0, max_value=2, allow_nan=False, allow_infinity=False)


@st.composite
def written(draw: st.DrawFn, values: st.SearchStrategy[Decimal] = decimals) -> tuple[Decimal, str]:
    """A rate and one of the ways a CI script may write it."""
    value = draw(values)
    style = draw(st.sampled_from(["plain", "exponent", "EXPONENT", "str", "plus"]))
    text = {
        "plain": format(value, "f"),
        "exponent": format(value, "e"),
        "EXPONENT": format(value, "E"),
        "str": str(value),
        "plus": "+" + format(value, "f"),
    }[style]
    return value, text


def spec_exit_code(kind: str, b: Decimal, c: Decimal, e: Decimal, m: Decimal, t: Decimal) -> int:
    """SPEC section 1 in exact rationals."""
    fb, fc, fe, fm, ft = (Fraction(x) for x in (b, c, e, m, t))
    if kind == "relay" and fe > ft:
        return 11
    zero_baseline, crash_ratio = (12, 13) if kind == "relay" else (21, 22)
    if fb <= 0:
        return zero_baseline if fc > 0 else 0
    return crash_ratio if fc > fb * fm else 0


@given(
    kind=st.sampled_from(["relay", "desktop"]),
    b=written(),
    c=written(),
    e=written(),
    m=written(st.sampled_from([Decimal("2.0"), Decimal(3), Decimal("1.5"), Decimal(0)])),
    t=written(st.sampled_from([Decimal("0.01"), Decimal("0.5"), Decimal(0)])),
    equal_at_limit=st.booleans(),
)
def test_cli_agrees_with_the_domain_and_the_spec(
    kind: str,
    b: tuple[Decimal, str],
    c: tuple[Decimal, str],
    e: tuple[Decimal, str],
    m: tuple[Decimal, str],
    t: tuple[Decimal, str],
    equal_at_limit: bool,
) -> None:
    if equal_at_limit:
        product = b[0] * m[0]  # exact: few digits
        c = (product, format(product, "e"))
    if kind == "relay":
        args = relay_args(b[1], c[1], e[1], "--crash-multiplier-threshold", m[1])
        args += ["--error-rate-threshold", t[1]]
        domain = evaluate_relay(
            baseline_crash=b[0],
            current_crash=c[0],
            current_error=e[0],
            crash_multiplier=m[0],
            error_threshold=t[0],
        )
    else:
        args = desktop_args(b[1], c[1], f"--crash-multiplier-threshold={m[1]}")
        domain = evaluate_desktop(baseline_crash=b[0], current_crash=c[0], crash_multiplier=m[0])
    code, out, err = run_in_process(args)
    assert code == spec_exit_code(kind, b[0], c[0], e[0], m[0], t[0])
    assert (code == 0) == (domain.verdict is Verdict.PASS)
    assert (out or err) == f"{domain.verdict}: {domain.summary}\n"


@given(text=st.text(max_size=12))
def test_any_value_is_a_verdict_or_a_usage_error(text: str) -> None:
    code, out, err = run_in_process(desktop_args(text, "0"))
    assert code in (0, 2, 21, 22)
    assert (out + err).count("\n") == 1
