"""`rollout-bot gate`: the rollback gates as a command, a drop-in for the team's CI gate scripts.

Same flags, output lines and exit codes as SPEC section 1. Standard library only, so it starts
fast; the arguments are parsed by hand because argparse answers a usage error with several
lines, and CI logs should get one line saying what is wrong.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from bot.domain.gate import (
    DEFAULT_CRASH_MULTIPLIER,
    DEFAULT_ERROR_THRESHOLD,
    GateKind,
    GateReason,
    GateVerdict,
    evaluate_desktop,
    evaluate_relay,
)
from bot.domain.rates import InvalidRate, parse_rate

EXIT_PASS = 0
EXIT_USAGE = 2
EXIT_CODES: dict[tuple[GateKind, GateReason], int] = {
    (GateKind.RELAY, GateReason.ERROR_RATE): 11,
    (GateKind.RELAY, GateReason.ZERO_BASELINE): 12,
    (GateKind.RELAY, GateReason.CRASH_RATE): 13,
    (GateKind.DESKTOP, GateReason.ZERO_BASELINE): 21,
    (GateKind.DESKTOP, GateReason.CRASH_RATE): 22,
}

USAGE = """\
usage: rollout-bot gate relay --baseline-crash-rate B --current-crash-rate C
                              --current-error-rate E [--crash-multiplier-threshold M]
                              [--error-rate-threshold T]
       rollout-bot gate desktop --baseline-crash-rate B --current-crash-rate C
                                [--crash-multiplier-threshold M]

Evaluates a rollback gate. Rates are fractions (0.01 = 1%), given as finite non-negative
decimals (0.001, 1e-3). Defaults: M = 2.0, T = 0.01.

relay:   ROLLBACK when the error rate > T, or the baseline crash rate is 0 and the crash
         rate is not, or the crash rate > baseline x M.
desktop: KILL_SWITCH when the baseline crash rate is 0 and the crash rate is not, or the
         crash rate > baseline x M.
A rate equal to its limit passes.

exit status: 0 PASS (line on stdout)
             11 relay error rate, 12 relay zero baseline with crashes, 13 relay crash ratio
             21 desktop zero baseline with crashes, 22 desktop crash ratio
             (the ROLLBACK: / KILL_SWITCH: line on stderr)
             2 bad usage or input (one line on stderr), --help beside figures included
"""

_BASELINE = "--baseline-crash-rate"
_CRASH = "--current-crash-rate"
_ERROR = "--current-error-rate"
_MULTIPLIER = "--crash-multiplier-threshold"
_THRESHOLD = "--error-rate-threshold"

_FLAGS: dict[GateKind, tuple[str, ...]] = {
    GateKind.RELAY: (_BASELINE, _CRASH, _ERROR, _MULTIPLIER, _THRESHOLD),
    GateKind.DESKTOP: (_BASELINE, _CRASH, _MULTIPLIER),
}
_HELP = ("-h", "--help")
_OPTIONAL = {_MULTIPLIER: DEFAULT_CRASH_MULTIPLIER, _THRESHOLD: DEFAULT_ERROR_THRESHOLD}


class UsageError(Exception):
    """Bad usage or input; the message is the one line printed to stderr."""


@dataclass(frozen=True)
class GateRequest:
    """A parsed `gate` command line: which gate, and every figure (defaults filled in)."""

    gate: GateKind
    values: dict[str, Decimal]

    def evaluate(self) -> GateVerdict:
        if self.gate is GateKind.RELAY:
            return evaluate_relay(
                baseline_crash=self.values[_BASELINE],
                current_crash=self.values[_CRASH],
                current_error=self.values[_ERROR],
                crash_multiplier=self.values[_MULTIPLIER],
                error_threshold=self.values[_THRESHOLD],
            )
        return evaluate_desktop(
            baseline_crash=self.values[_BASELINE],
            current_crash=self.values[_CRASH],
            crash_multiplier=self.values[_MULTIPLIER],
        )


def main(argv: Sequence[str]) -> int:
    """Run the gate on `argv` (the arguments after `gate`); returns the exit status."""
    try:
        request = parse_arguments(argv)
    except UsageError as error:
        sys.stderr.write(f"rollout-bot gate: {error} (see rollout-bot gate --help)\n")
        return EXIT_USAGE
    if request is None:
        sys.stdout.write(USAGE)
        return EXIT_PASS
    verdict = request.evaluate()
    line = f"{verdict.verdict}: {verdict.summary}\n"
    if verdict.reason is None:
        sys.stdout.write(line)
        return EXIT_PASS
    sys.stderr.write(line)
    return EXIT_CODES[(verdict.gate, verdict.reason)]


def parse_arguments(argv: Sequence[str]) -> GateRequest | None:
    """The gate and its figures, or None when help was asked for; raises UsageError otherwise.

    Help counts only alone (`gate --help`, `gate relay -h`): beside figures, or as a flag's
    value, it is bad usage, never a request for help that would exit 0 and read as PASS to a
    CI script whatever the figures say.
    """
    if argv and argv[0] in _HELP:
        _help_alone(argv[0], argv[1:])
        return None
    if not argv or argv[0].startswith("-"):
        raise UsageError("missing the gate kind: relay or desktop")
    try:
        gate = GateKind(argv[0])
    except ValueError:
        raise UsageError(f"unknown gate kind {argv[0]!r}: use relay or desktop") from None
    allowed = _FLAGS[gate]
    given: dict[str, Decimal] = {}
    rest = list(argv[1:])
    while rest:
        token = rest.pop(0)
        if token in _HELP:
            _help_alone(token, argv[2:])  # alone: `gate relay --help`
            return None
        if not token.startswith("--"):
            raise UsageError(f"unexpected argument {token!r}")
        flag, has_value, value = token.partition("=")
        if flag not in allowed:
            raise UsageError(f"unknown flag {flag!r} for the {gate} gate")
        if flag in given:
            raise UsageError(f"{flag} given more than once")
        if not has_value:
            if not rest or rest[0].startswith("--"):
                raise UsageError(f"{flag} needs a value")
            value = rest.pop(0)
        try:
            given[flag] = parse_rate(flag, value)
        except InvalidRate as error:
            raise UsageError(str(error)) from None
    missing = [flag for flag in allowed if flag not in given and flag not in _OPTIONAL]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}")
    defaults = {flag: value for flag, value in _OPTIONAL.items() if flag in allowed}
    return GateRequest(gate=gate, values=defaults | given)


def _help_alone(flag: str, others: Sequence[str]) -> None:
    """Raises UsageError unless nothing but the gate kind stands beside `flag` (`others` is
    the rest of the line)."""
    if others:
        raise UsageError(f"{flag} beside other arguments (exit 0 would read as PASS): ask it alone")
