"""Many services: which service a command acts on when its first word names (or nearly names)
another service. A kill-switch tripped on the wrong service, or a lane locked there, is an
incident of its own while the service named keeps burning. Each test's docstring says what
went wrong before."""

from __future__ import annotations

from test_services import card_of
from test_services_corners import SEARCH_CHANNEL, box

from bot.domain.rollout import Phase, holding_tracks
from sandbox.config import RELEASE_CHANNEL
from sandbox.harness import Sandbox

__all__ = ["box"]  # the fixture this module's tests use (test_services_corners')


async def test_a_reason_that_starts_with_a_service_released_elsewhere_is_refused(
    box: Sandbox,
) -> None:
    """In search's own channel, `/rollout kill relay calls time out` tripped search's
    kill-switch with the reason "relay calls time out" (and `lock relay ...` locked search's
    lane), silently: the person named relay, and relay kept burning. It is refused, saying
    where relay is released and how to give search's kill-switch that reason."""
    for subcommand in ("kill", "lock", "unlock"):
        answer = await box.command(f"{subcommand} relay calls time out", channel=SEARCH_CHANNEL)
        assert "Nothing was changed" in answer, answer
        assert "`relay` is released in" in answer and RELEASE_CHANNEL in answer, answer
        assert f"`/rollout {subcommand} search relay ...`" in answer, answer
        assert "no rollout in progress" not in answer, answer
    assert "lock" not in (await box.command("status", channel=SEARCH_CHANNEL)).lower()
    # In a channel of several, the same: relay's kill-switch does not trip for search.
    answer = await box.command("kill search errors spiking", channel=RELEASE_CHANNEL)
    assert "`search` is released in" in answer and SEARCH_CHANNEL in answer, answer
    assert "`/rollout kill relay search ...`" in answer, answer
    # Named first, the reason is search's, as the refusal says.
    answer = await box.command("kill search relay calls time out", channel=SEARCH_CHANNEL)
    assert "no rollout in progress" in answer, answer


async def test_a_misspelt_service_is_asked_about_not_read_as_a_tag_or_a_reason(
    box: Sandbox,
) -> None:
    """`/rollout start billing-apl v1.4.2` answered "Unexpected `v1.4.2`" (the misspelt name
    read as the tag), and in search's channel `/rollout kill billing-apl checkout errors`
    tripped search's kill-switch. Each is refused, naming the service meant."""
    typed = {
        "start billing-apl v1.4.2": RELEASE_CHANNEL,
        "promote billing-apl": RELEASE_CHANNEL,
        "status billing-apl": RELEASE_CHANNEL,
        "history billing-apl": SEARCH_CHANNEL,
        "freeze billing-apl 2h INC-1": SEARCH_CHANNEL,
        "kill billing-apl checkout errors spiking": SEARCH_CHANNEL,
        "lock billing-apl checkout errors spiking": SEARCH_CHANNEL,
        "kill Relya calls time out": SEARCH_CHANNEL,
    }
    for text, channel in typed.items():
        answer = await box.command(text, channel=channel)
        meant = "relay" if "Relya" in text else "billing-api"
        word = text.split()[1]
        assert f"`{word}` is not a service of this bot: did you mean `{meant}`?" in answer, answer
        assert "Nothing was changed" in answer and "`search`" in answer, answer
        assert "no rollout in progress" not in answer, answer
        if text.startswith(("kill", "lock")):
            assert f"`/rollout {text.split()[0]} search {word} ...`" in answer, answer
    status = (await box.command("status", channel=SEARCH_CHANNEL)).lower()
    assert "lock" not in status and "frozen" not in status, status


async def test_a_reason_that_starts_like_the_channels_own_service_is_its_reason(
    box: Sandbox,
) -> None:
    """A reason whose first word is close to the name of the channel's own (only) service
    cannot act on another service, nor can a quoted reason: the kill-switch goes through,
    with the reason as typed."""
    for text in ("kill serch is down", 'kill "relay calls time out"'):
        answer = await box.command(text, channel=SEARCH_CHANNEL)
        assert "no rollout in progress" in answer, answer


async def test_what_a_kill_or_a_promote_acted_on_is_said_with_its_services_name(
    box: Sandbox,
) -> None:
    """In search's channel, `/rollout kill checkout errors` answered "Kill-switch tripped for
    `v3.0.0`": nothing said it was search's, in a bot whose other services may release the
    same tag. The answer names the service acted on, as the lane's answers do."""
    assert "Preflight" in await box.command("start v3.0.0 --flags-ready", channel=SEARCH_CHANNEL)
    await box.slack.wait_for(lambda: bool(box.slack.messages(SEARCH_CHANNEL)), timeout=30)
    card = card_of(box, "search v3.0.0", SEARCH_CHANNEL)
    await box.click("dispatch", channel=SEARCH_CHANNEL, message=card)
    await box.wait_until(lambda r: bool(holding_tracks(r)), service="search")
    promoted = await box.command("promote", channel=SEARCH_CHANNEL)
    assert promoted.startswith("*search*: ") and "Promoted `v3.0.0`" in promoted, promoted
    killed = await box.command("kill checkout errors", channel=SEARCH_CHANNEL)
    assert killed.startswith("*search*: ") and "`v3.0.0`" in killed, killed
    assert (await box.rollout("search")).phase is not Phase.PREFLIGHT


async def test_a_history_names_the_service_whose_rollouts_it_lists(box: Sandbox) -> None:
    """`/rollout history billing-api` answered "No rollouts yet." beside relay's rollouts in
    the same channel, and `history relay` "Recent rollouts", as if of the channel: nothing
    said whose. Each names its service, as `status` and `report` do."""
    assert "Preflight" in await box.command("start relay v1.4.2 --flags-ready")
    assert "Recent rollouts of relay" in await box.command("history relay")
    answer = await box.command("history billing-api")
    assert "No rollouts of billing-api yet." in answer, answer
    answer = await box.command("history relay v1.4.2")
    assert "Timeline of v1.4.2 of relay" in answer, answer


async def test_a_tag_close_to_the_channels_service_is_refused_saying_how_to_give_it(
    box: Sandbox,
) -> None:
    """In search's channel, `/rollout start search-v2` (a tag) was refused as a typo of
    `search`, and the answer said no way to start that tag: the person was left retyping it.
    The refusal says to name the service first, and that form is search's, with the tag."""
    for subcommand in ("start", "history"):
        answer = await box.command(f"{subcommand} search-v2", channel=SEARCH_CHANNEL)
        assert "`search-v2` is not a service of this bot" in answer, answer
        assert f"`/rollout {subcommand} search search-v2 ...`" in answer, answer
    answer = await box.command("history search search-v2", channel=SEARCH_CHANNEL)
    assert "not a service" not in answer and "search-v2" in answer, answer
