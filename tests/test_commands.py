"""`/rollout` text parsing: every subcommand, the tag rule, and errors a user can act on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.errors import InvalidCommand, InvalidTag
from bot.domain.period_report import Period
from bot.domain.release_tag import TAG_RULE
from bot.domain.rollout_command import (
    Command,
    Help,
    History,
    Kill,
    NpmToken,
    Promote,
    Report,
    Rollback,
    Start,
    Status,
    Subcommand,
    allowed_in_direct_messages,
    allowed_outside_release_channels,
    is_direct_message,
    named_service,
    parse_command,
)
from bot.domain.rollout_help import HELP
from bot.domain.text import clean_text, without_invisible_ends

TAG = re.compile(TAG_RULE)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("", Help()),
        ("   ", Help()),
        ("help", Help()),
        ("start v1.4.2", Start(tag="v1.4.2")),
        ("start v1.4.2 --flags-ready", Start(tag="v1.4.2", flags_ready=True)),
        ("start --flags-ready v1.4.2", Start(tag="v1.4.2", flags_ready=True)),
        ("start v1.4.2 \N{EM DASH}flags-ready", Start(tag="v1.4.2", flags_ready=True)),
        ("  Start\tv1.4.2  ", Start(tag="v1.4.2")),
        ("start _build-7", Start(tag="_build-7")),
        ("start " + "a" * 128, Start(tag="a" * 128)),
        ("status", Status()),
        ("STATUS", Status()),
        ("promote", Promote()),
        ("rollback", Rollback()),
        ("kill", Kill()),
        ("kill  beta  crashes on start ", Kill(reason="beta  crashes on start")),
        ("kill <here> &amp; there", Kill(reason="<here> &amp; there")),  # as typed
        ('kill "beta crashes on start"', Kill(reason="beta crashes on start")),  # as lock's
        ("kill \u201cbeta crashes\u201d", Kill(reason="beta crashes")),  # Slack's smart quotes
        ('kill ""', Kill()),
        ("history", History()),
        ("history v1.4.2", History(tag="v1.4.2")),
        ("npm-token", NpmToken()),
        ("report", Report(period=Period(text="30d", days=30))),
        ("report 7D", Report(period=Period(text="7D", days=7))),
        ("report 2026-11", Report(period=Period(text="2026-11", month=(2026, 11)))),
    ],
)
def test_parses_every_subcommand(text: str, command: Command) -> None:
    assert parse_command(text) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deploy v1", "`deploy` is not a /rollout subcommand."),
        ("start", "start needs a release tag: `/rollout start <tag> [--flags-ready]`."),
        ("start --flags-ready", "start needs a release tag"),
        (
            "start v1 v2",
            "Unexpected `v2`: the usage is `/rollout start <tag> [--flags-ready] "
            '[--at "tue 09:00"] [--override-freeze "<reason>"]`.',
        ),
        (
            "start v1 --force",
            "`--force` is not an option of start; it takes `--flags-ready`, `--at",
        ),
        ("status all", "Unexpected `all`: the usage is `/rollout status`."),
        ("promote now", "the usage is `/rollout promote`"),
        ("help start", "the usage is `/rollout help`"),
        ("npm-token x", "the usage is `/rollout npm-token`"),
        ("history v1 v2", "the usage is `/rollout history [tag]`"),
        ("report 7d 30d", "Unexpected `30d`: the usage is `/rollout report [period]`."),
        ("`rm", "`'rm` is not a /rollout subcommand."),
    ],
)
def test_invalid_commands_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse_command(text)
    assert message in caught.value.message
    assert type(caught.value) is InvalidCommand


def test_a_kill_with_a_long_reason_goes_through_its_reason_cut() -> None:
    """A stack trace pasted as the reason: the kill-switch is never held back to retype it."""
    trace = "Traceback (most recent call last): " + "frame " * 200

    command = parse_command("kill " + trace)

    assert isinstance(command, Kill) and command.reason is not None
    assert len(command.reason) == 500 and command.reason.endswith("…")
    assert command.reason.startswith("Traceback (most recent call last): frame")


@pytest.mark.parametrize(
    "tag",
    ["-v1", ".v1", "v1/2", "v1:latest", "a" * 129, "v1;rm", "v\N{LATIN SMALL LETTER E WITH ACUTE}"],
)
def test_invalid_tags_quote_the_rule(tag: str) -> None:
    for text in (f"start {tag}", f"history {tag}"):
        with pytest.raises(InvalidTag) as caught:
            parse_command(text)
        assert "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}" in caught.value.message
        assert caught.value.code == "invalid_tag"


def test_long_input_is_shortened_in_messages() -> None:
    with pytest.raises(InvalidTag) as caught:
        parse_command("start " + "/" * 1000)
    assert len(caught.value.message) < 250


def test_help_lists_every_subcommand_once_in_order() -> None:
    named = [entry.usage.split()[1] for entry in HELP]
    assert named == [s.value for s in Subcommand]
    assert all(entry.usage.startswith("/rollout ") and entry.description for entry in HELP)
    assert HELP[0].usage.startswith("/rollout start <tag> ")


def test_the_help_names_every_option_of_start() -> None:
    """The options the parser lists when one is unknown are those `/rollout help` shows."""
    with pytest.raises(InvalidCommand) as caught:
        parse_command("start v1 --force")
    taken = set(re.findall(r"--[a-z-]+", caught.value.message.split("it takes", 1)[1]))
    assert taken == {"--flags-ready", "--at", "--override-freeze"}
    assert set(re.findall(r"--[a-z-]+", HELP[0].usage)) == taken


def test_only_help_works_outside_release_channels() -> None:
    allowed = {s for s in Subcommand if allowed_outside_release_channels(s)}
    assert allowed == {Subcommand.HELP}
    assert allowed_outside_release_channels(parse_command(""))
    assert not allowed_outside_release_channels(parse_command("start v1"))
    assert not allowed_outside_release_channels(parse_command("status"))


def test_only_help_and_npm_token_work_in_a_direct_message() -> None:
    allowed = {s for s in Subcommand if allowed_in_direct_messages(s)}
    assert allowed == {Subcommand.HELP, Subcommand.NPM_TOKEN}
    assert allowed_in_direct_messages(parse_command("npm-token"))
    assert not allowed_in_direct_messages(parse_command("kill"))
    assert is_direct_message("D0DIRECT01")
    assert not is_direct_message("C0RELEASES") and not is_direct_message("G0PRIVATE1")


def test_every_command_knows_its_subcommand() -> None:
    for subcommand in Subcommand:
        arguments = {Subcommand.START: " v1", Subcommand.LINK: " 12", Subcommand.FREEZE: " 2h x"}
        argument = arguments.get(subcommand, "")
        text = f"{subcommand}{argument}"
        assert parse_command(text).name is subcommand


tags = st.from_regex(TAG_RULE, fullmatch=True)


@given(tag=tags, flags_ready=st.booleans())
def test_any_valid_tag_round_trips(tag: str, flags_ready: bool) -> None:
    text = f"start {tag}" + (" --flags-ready" if flags_ready else "")
    assert parse_command(text) == Start(tag=tag, flags_ready=flags_ready)
    assert parse_command(f"history {tag}") == History(tag=tag)


def _outside_the_rule(text: str) -> bool:
    """One word the parser reads as a tag the rule refuses: it drops what the database cannot
    store (NUL) and invisible characters at the tag's ends (a soft hyphen pasted from a
    document) before it reads one."""
    typed = without_invisible_ends(clean_text(text).strip())
    return (
        bool(typed)
        and len(clean_text(text).split()) == 1
        and not TAG.fullmatch(typed)
        and text == text.strip()
        and not text.startswith(("--", "\N{EM DASH}"))
    )


@given(tag=st.text(min_size=1, max_size=200).filter(_outside_the_rule))
def test_any_tag_outside_the_rule_is_refused(tag: str) -> None:
    with pytest.raises(InvalidTag):
        parse_command(f"start {tag}")
    with pytest.raises(InvalidTag):
        parse_command(f"history {tag}")


@given(st.text(max_size=300))
def test_the_parser_raises_nothing_but_invalid_command(text: str) -> None:
    try:
        command = parse_command(text)
    except InvalidCommand as error:
        assert error.message and "\n" not in error.message
    else:
        assert command.name in set(Subcommand)


@given(
    word=st.sampled_from([s.value for s in Subcommand]),
    rest=st.lists(st.text(alphabet="abv1.-_ ", max_size=10), max_size=4),
)
def test_known_subcommands_with_any_arguments(word: str, rest: list[str]) -> None:
    try:
        command = parse_command(" ".join([word, *rest]))
    except InvalidCommand:
        return
    assert command.name == word


def test_the_slack_manifest_hints_at_every_subcommand() -> None:
    """Slack shows the command's `usage_hint` as people type: it names every subcommand."""
    manifest = Path(__file__).resolve().parent.parent / "manifest.yml"
    (command,) = yaml.safe_load(manifest.read_text(encoding="utf-8"))["features"]["slash_commands"]
    first_words = [part.split()[0] for part in command["usage_hint"].split("|")]
    assert sorted(first_words) == sorted(subcommand.value for subcommand in Subcommand)


def test_the_slack_manifest_hints_at_the_service_where_the_parser_reads_it() -> None:
    """`[service]` stands right after the subcommand, where `named_service` takes it: a hint
    that put it first would teach `/rollout relay start v1`, which is no subcommand."""
    manifest = Path(__file__).resolve().parent.parent / "manifest.yml"
    (command,) = yaml.safe_load(manifest.read_text(encoding="utf-8"))["features"]["slash_commands"]
    for part in command["usage_hint"].split("|"):
        words = part.split()
        typed = " ".join("relay" if word == "[service]" else word for word in words[:3])
        name, _, subcommand = named_service(typed, {"relay"})
        assert subcommand == words[0]
        assert name == ("relay" if "[service]" in words else None), part
