"""What a release engineer pastes in a hurry: a tag in quotes or backticks, or with a
zero-width space from a document; a reason with an apostrophe in quotes; a time in curly
quotes; a secret from a Kubernetes Secret with its trailing newline; a rate written as a
percentage. Each is read as meant, or refused naming what to fix, with nothing changed.
Signed commands to the real app, the sandbox's Slack and GitHub behind it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from command_line import run_here
from figures import passing_sandbox
from test_cli import full_env, run
from test_freeze_sandbox import APPROVERS_ENV, OTHER, card
from test_gate_cli import assert_usage_error, desktop_args, relay_args, run_in_process
from test_prometheus import prometheus_plan

from bot.domain.errors import InvalidCommand, InvalidTag
from bot.domain.rollout import CheckState
from bot.domain.rollout_command import Freeze, Start, Subcommand, named_service, parse_command
from bot.domain.unfollowed_runs import release_tag
from sandbox.config import (
    GITHUB_TOKEN,
    GITHUB_WEBHOOK_SECRET,
    RELEASE_MANAGER,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
)
from sandbox.harness import Sandbox
from sandbox.plans import fast_plan
from sandbox.signing import github_signature_headers

pytestmark = pytest.mark.story


@pytest.fixture
async def sandbox(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(tmp_path, database_url=database_url, extra_env=APPROVERS_ENV) as box:
        yield box


@pytest.mark.parametrize(
    "typed",
    [
        "v1.4.2",
        '"v1.4.2"',
        "'v1.4.2'",
        "`v1.4.2`",
        "\N{LEFT DOUBLE QUOTATION MARK}v1.4.2\N{RIGHT DOUBLE QUOTATION MARK}",
        "\N{LEFT SINGLE QUOTATION MARK}v1.4.2\N{RIGHT SINGLE QUOTATION MARK}",
        "v1.4.2\N{ZERO WIDTH SPACE}",
        "\N{ZERO WIDTH NO-BREAK SPACE}v1.4.2\N{LEFT-TO-RIGHT MARK}",
    ],
)
def test_a_tag_pasted_in_quotes_or_with_invisible_ends_is_the_tag(typed: str) -> None:
    assert parse_command(f"start {typed} --flags-ready") == Start("v1.4.2", flags_ready=True)
    assert parse_command(f"history {typed}").tag == "v1.4.2"  # type: ignore[union-attr]


def test_a_ref_github_names_is_read_strictly_not_as_pasted() -> None:
    """A branch may be named `"v1.4.2"` (git allows quotes): a run on it is no release."""
    assert release_tag('"v1.4.2"', "main") == ""
    assert release_tag("v1.4.2\N{ZERO WIDTH SPACE}", "main") == ""
    assert release_tag("v1.4.2", "main") == "v1.4.2"


@pytest.mark.parametrize(
    ("typed", "named"),
    [
        ("v1\N{EN DASH}4", "`\N{EN DASH}` (U+2013 EN DASH) is not allowed in a tag"),
        ("v1.4.2\N{ZERO WIDTH SPACE}-rc1", "(U+200B ZERO WIDTH SPACE) is not allowed"),
        ('"v1.4.2', '`"` (U+0022 QUOTATION MARK) is not allowed'),
        ("v1:latest", "`:` (U+003A COLON) is not allowed"),
    ],
)
def test_a_tag_refused_names_the_character_it_does_not_allow(typed: str, named: str) -> None:
    with pytest.raises(InvalidTag) as caught:
        parse_command(f"start {typed}")
    assert named in caught.value.message
    assert "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}" in caught.value.message


@pytest.mark.parametrize(
    ("text", "start"),
    [
        (
            'start v1.4.2 --override-freeze "don\'t wait for INC-7" --flags-ready',
            Start("v1.4.2", True, override_freeze="don't wait for INC-7"),
        ),
        (
            "start v1.4.2 --override-freeze \N{LEFT DOUBLE QUOTATION MARK}the customer's "
            "outage\N{RIGHT DOUBLE QUOTATION MARK}",
            Start("v1.4.2", override_freeze="the customer's outage"),
        ),
        (
            "start v1.4.2 --override-freeze 'it's INC-7' --at tue 09:00",
            Start("v1.4.2", override_freeze="it's INC-7", at="tue 09:00"),
        ),
        (
            "start v1.4.2 --at \N{LEFT SINGLE QUOTATION MARK}tue 09:00 UTC"
            "\N{RIGHT SINGLE QUOTATION MARK}",
            Start("v1.4.2", at="tue 09:00 UTC"),
        ),
        ("start v1.4.2 \N{EN DASH}flags-ready", Start("v1.4.2", True)),
    ],
)
def test_a_quoted_value_ends_at_its_own_closing_quote(text: str, start: Start) -> None:
    """A value ended at the first quote of any kind: `"don't wait"` was cut at the apostrophe
    and the start refused with `Unexpected 't'`."""
    assert parse_command(text) == start


@pytest.mark.parametrize(
    "text",
    [
        'start v1.4.2 --override-freeze "hotfix --at "tue 09:00"',
        "start v1.4.2 --override-freeze 'hotfix --at 'tue 09:00'",
        "start v1.4.2 --override-freeze \N{LEFT DOUBLE QUOTATION MARK}hotfix --at "
        "\N{LEFT DOUBLE QUOTATION MARK}tue 09:00\N{RIGHT DOUBLE QUOTATION MARK}",
        "start --override-freeze 'INC-7 'v1.4.2' --flags-ready",
    ],
)
def test_a_quote_left_open_never_swallows_the_next_option(text: str) -> None:
    """The reason's quote, left open, ran to the `--at` value's closing quote: the start
    went ahead at once, the time it was to wait for kept inside the override's reason."""
    with pytest.raises(InvalidCommand, match="The quote after `--override-freeze` is not closed"):
        parse_command(text)


async def test_an_override_whose_quoted_reason_has_an_apostrophe_goes_through(
    sandbox: Sandbox,
) -> None:
    await sandbox.command("freeze 2h INC-7 investigation", user=OTHER)

    said = await sandbox.command(
        "start \N{LEFT DOUBLE QUOTATION MARK}v1.4.2\N{RIGHT DOUBLE QUOTATION MARK} --flags-ready "
        '--override-freeze "hotfix: don\'t wait for INC-7"'
    )

    assert "overrode the freeze for `v1.4.2`: hotfix: don't wait for INC-7" in said, said
    await sandbox.slack.wait_for(lambda: card(sandbox) is not None, timeout=30)
    assert (await sandbox.rollout()).tag == "v1.4.2"
    events = await sandbox.audit.list_for_actor(RELEASE_MANAGER)
    starts = [(e.result, e.detail) for e in events if e.action == "command:start"]
    assert starts == [
        ("ok", {"override_freeze": "hotfix: don't wait for INC-7", "freeze": "INC-7 investigation"})
    ]


NEWLINE_SECRETS = {
    "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN + "\n",
    "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET + "\n",
    "GITHUB_TOKEN": GITHUB_TOKEN + "\r\n",
    "GITHUB_WEBHOOK_SECRET": GITHUB_WEBHOOK_SECRET + "\n",
}
"""Secrets as a Kubernetes Secret made with `echo ... | base64` or `--from-file` gives them:
with the line's end. No token or signing secret of Slack or GitHub holds whitespace."""


async def test_secrets_with_a_trailing_newline_work_as_the_secrets_they_carry(
    tmp_path: Path, database_url: str
) -> None:
    """Every signed Slack request was refused 401 (the key had the newline), every GitHub call
    failed before it was sent (`requests` refuses a header with a line break), and every
    webhook delivery was refused."""
    env = APPROVERS_ENV | NEWLINE_SECRETS
    async with passing_sandbox(tmp_path, database_url=database_url, extra_env=env) as box:
        said = await box.command("start v1.4.2 --flags-ready")

        assert "Preflight of `v1.4.2` posted" in said, said
        await box.slack.wait_for(lambda: card(box) is not None, timeout=30)
        checks = (await box.rollout()).preflight  # read on GitHub with the token
        assert checks.migrations.state is CheckState.PASS, checks
        assert "All checks are clear" in json.dumps(card(box).blocks)  # type: ignore[union-attr]
        body = json.dumps({"zen": "Keep it simple.", "hook_id": 1}).encode()
        headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event="ping")
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{box.url}/github/webhook", data=body, headers=headers) as response,
        ):
            assert response.status == 200, await response.text()


async def test_a_setting_of_a_few_words_reads_without_its_trailing_newline(
    tmp_path: Path,
) -> None:
    """The whitespace was dropped from text settings only: `LOG_LEVEL=info` from a Kubernetes
    Secret or ConfigMap file (`info` and a newline) stopped the bot at start."""
    env = full_env(tmp_path) | {
        "LOG_LEVEL": "info\n",
        "LOG_FORMAT": "json\n",
        "UNFOLLOWED_RUN_DEFAULT": " approve\r\n",
    }

    code, out, err = await run("check-config", env=env, cwd=tmp_path)

    assert code == 0, out + err
    shown = dict(line.split(maxsplit=1) for line in out.splitlines() if line.strip())
    assert (shown["LOG_LEVEL"], shown["LOG_FORMAT"]) == ("INFO", "json"), out
    assert shown["UNFOLLOWED_RUN_DEFAULT"] == "approve", out


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            relay_args("0.001", "0.001", "1%"),
            "--current-error-rate '1%' is a percentage; rates are fractions: write 0.01 for 1%",
        ),
        (
            relay_args("0.001", "0.001", "0", "--error-rate-threshold", "0.5%"),
            "'0.5%' is a percentage; rates are fractions: write 0.005 for 0.5%",
        ),
        (desktop_args("0.1%", "0.002"), "write 0.001 for 0.1%"),
        # decimal.Overflow, a traceback and exit 1; and `write 0` for a figure that is not 0
        (relay_args("0.001", "0.001", "1e9999999%"), "write 1E+9999997 for 1e9999999%"),
        (desktop_args("1e-999999999%", "0.002"), "write 1E-1000000001 for 1e-999999999%"),
        (desktop_args("1e9999999999999999999999%", "0"), "rates are fractions: write 0.01 for 1%"),
    ],
)
def test_the_gate_command_refuses_a_percentage_naming_the_fraction(
    args: list[str], reason: str
) -> None:
    """It said `'1%' is not a decimal number`, not that a rate is a fraction, nor which."""
    assert_usage_error(run_in_process(args), reason)


@pytest.mark.parametrize(
    ("written", "fraction"),
    [("1%", "write 0.01 for 1%"), ("1e9999999%", "write 1E+9999997 for 1e9999999%")],
)
async def test_check_config_refuses_a_plan_threshold_written_as_a_percentage(
    tmp_path: Path, written: str, fraction: str
) -> None:
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml"))
    plan["tracks"]["relay"]["thresholds"]["error_threshold"] = written
    (tmp_path / "plan.yml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    env = full_env(tmp_path) | {"ROLLOUT_PLAN": str(tmp_path / "plan.yml")}

    code, out, err = await run("check-config", env=env, cwd=tmp_path)

    assert code == 2, out + err
    assert (
        f"tracks.relay.thresholds.error_threshold: {written!r} is a percentage; rates are "
        f"fractions: {fraction}"
    ) in err


def test_the_operator_commands_read_a_tag_as_slash_commands_do(tmp_path: Path) -> None:
    """`metrics` and `doctor` put `--tag` into the plan's queries as `$tag` unread: a tag
    no release has (`v1"} or vector(1)`) reached Prometheus as a query of its own making."""
    (tmp_path / "plan.yml").write_text(prometheus_plan(tmp_path, "failing"), encoding="utf-8")
    env = full_env(tmp_path) | {
        "ROLLOUT_PLAN": str(tmp_path / "plan.yml"),
        "PROMETHEUS_URL": "http://127.0.0.1:9",
    }
    injected = 'v1"} or vector(1)'
    for args in (["metrics", "canary", "--tag", injected], ["doctor", "--tag", injected]):
        code, out, err = run_here(args, env=env, cwd=tmp_path)
        assert (code, out) == (2, ""), err
        assert '" (U+0022 QUOTATION MARK) is not allowed in a tag' in err, err
    assert run_here(["migrate"], env=env, cwd=tmp_path)[0] == 0
    code, _, err = run_here(
        ["audit", "\N{LEFT DOUBLE QUOTATION MARK}v1.4.2\N{RIGHT DOUBLE QUOTATION MARK}"],
        env=env,
        cwd=tmp_path,
    )
    assert (code, err) == (
        2,
        "rollout-bot audit: No rollout of v1.4.2 is on record. /rollout history lists the recent "
        "ones.\n",
    )


@pytest.mark.parametrize(
    "typed",
    [
        "\N{RIGHT-TO-LEFT OVERRIDE}2.4.1v",  # shows as v1.4.2
        "v1.4.2\N{RIGHT-TO-LEFT ISOLATE}",
        "\N{LEFT-TO-RIGHT EMBEDDING}v1.4.2\N{POP DIRECTIONAL FORMATTING}",
    ],
)
def test_a_tag_with_a_direction_override_is_refused_not_read_as_another(typed: str) -> None:
    """The override was dropped as invisible: `\u202e2.4.1v`, which the person (and whoever
    pasted it for them) sees as `v1.4.2`, started 2.4.1v."""
    with pytest.raises(InvalidTag, match=r"\(U\+20(2[A-E]|6[6-9]) [A-Z -]+\) is not allowed"):
        parse_command(f"start {typed}")


@pytest.mark.parametrize(
    "typed",
    [
        "\N{ZERO WIDTH SPACE}start v1.4.2",
        "start\N{ZERO WIDTH NO-BREAK SPACE} v1.4.2",
        "\N{LEFT-TO-RIGHT MARK}start\N{WORD JOINER} v1.4.2\N{ZERO WIDTH SPACE}",
    ],
)
def test_a_command_pasted_with_invisible_characters_is_the_command(typed: str) -> None:
    """It answered `start` (a zero-width space unseen in it) `is not a /rollout subcommand`."""
    assert parse_command(typed) == Start("v1.4.2")
    assert named_service(typed.replace("start", "start relay"), {"relay"})[::2] == (
        "relay",
        Subcommand.START,
    )


@pytest.mark.parametrize(
    ("typed", "freeze"),
    [
        # A no-break space (a Mac's Option-Space, a runbook pasted from a document) after
        # `UTC`: it was read as the reason's first word, the end in the asker's zone (hours off).
        (
            "freeze 2026-12-24 18:00 UTC\N{NO-BREAK SPACE}holidays",
            ("2026-12-24 18:00Z", "holidays"),
        ),
        (
            "freeze 2026-12-24 18:00\N{NARROW NO-BREAK SPACE}UTC holidays",
            ("2026-12-24 18:00Z", "holidays"),
        ),
        # Between the date and the time: refused as `'2026-12-24' is not a duration`, its
        # example `2026-12-24 18:00` what the person saw they had typed.
        ("freeze 2026-12-24\N{NO-BREAK SPACE}18:00 holidays", ("2026-12-24 18:00", "holidays")),
        ("freeze\N{NO-BREAK SPACE}2h\N{NO-BREAK SPACE}code freeze", ("2h", "code freeze")),
    ],
)
def test_a_freeze_typed_with_no_break_spaces_reads_as_it_shows(
    typed: str, freeze: tuple[str, str]
) -> None:
    assert parse_command(typed) == Freeze(*freeze)


def test_a_zone_after_a_freeze_end_and_a_no_break_space_is_refused_as_any_other() -> None:
    """`18:00 CET` + a no-break space was taken as a reason, `CET ...`, and the end read in the
    asker's zone: a zone typed after the end is refused, not read as another."""
    with pytest.raises(InvalidCommand, match="`CET` is not a time zone I read"):
        parse_command("freeze 2026-12-24 18:00 CET\N{NO-BREAK SPACE}holiday freeze")


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        # An invisible character a document left between two words: it was read as part of
        # `--flags-ready` (refused as "`--flags-ready` is not an option of start", its own
        # name shown back) or of the freeze's end.
        (
            "start v1.4.2 --flags-ready\N{ZERO WIDTH SPACE} --at 09:00",
            Start("v1.4.2", flags_ready=True, at="09:00"),
        ),
        (
            "start v1.4.2 \N{WORD JOINER}--at 09:00 --flags-ready",
            Start("v1.4.2", flags_ready=True, at="09:00"),
        ),
        ("freeze 2h\N{ZERO WIDTH SPACE} code freeze", Freeze("2h", "code freeze")),
    ],
)
def test_invisible_characters_between_words_are_no_part_of_either(
    typed: str, command: Start | Freeze
) -> None:
    assert parse_command(typed) == command


@pytest.mark.parametrize("typed", ['"\u200b"', "\u200b", "'\u2060\u200b'"])
def test_an_override_whose_reason_is_only_invisible_characters_has_none(typed: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse_command(f"start v1.4.2 --override-freeze {typed}")
    assert "An override needs a reason" in caught.value.message
