"""An operator command given the same single-valued option twice: argparse kept the last
value silently (`--service a --service b` checked b only); it is refused with a clear line."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from bot.cli import audit, backtest, demo, doctor, metrics

BACKTEST = ["--plan", "plan.yml", "--from", "2026-11-01", "--to", "2026-11-30"]


@pytest.mark.parametrize(
    ("parser", "args", "option"),
    [
        (doctor.argument_parser, ["--service", "relay", "--service", "billing"], "--service"),
        (doctor.argument_parser, ["--tag", "v1.4.2", "--tag=v1.4.3"], "--tag"),
        (
            metrics.argument_parser,
            ["canary", "--tag", "v1", "--track", "a", "--track", "b"],
            "--track",
        ),
        (
            audit.argument_parser,
            ["v1.4.2", "--service", "relay", "--service", "billing"],
            "--service",
        ),
    ],
)
def test_a_single_valued_option_given_twice_is_refused(
    parser: Callable[[], argparse.ArgumentParser],
    args: list[str],
    option: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(args)
    assert exited.value.code == 2
    said = capsys.readouterr().err
    assert f"{option} is given twice" in said and "give it once" in said


def test_the_backtest_says_a_repeated_option_in_one_line() -> None:
    with pytest.raises(backtest.UsageError) as refused:
        backtest.argument_parser().parse_args([*BACKTEST, "--stage", "canary", "--stage", "half"])
    assert refused.value.message == (
        "--stage is given twice (--stage 'canary', then --stage 'half'); it takes one value: "
        "give it once"
    )


def test_options_given_once_parse_as_before() -> None:
    options = doctor.argument_parser().parse_args(["--service", "relay", "--tag", "v1.4.2"])
    assert (options.service, options.tag) == ("relay", "v1.4.2")
    assert "_options_given" not in vars(options)
    assert demo.argument_parser().parse_args(["--github-app"]).github_app is True
    options = backtest.argument_parser().parse_args([*BACKTEST, "--stage", "canary"])
    assert options.stage == "canary" and options.start == "2026-11-01"
