"""What tests read off the sandbox (a stage's state, a button's value on the rollout card, the
relay's reviews, the App Home), the signed click on the card and the command of their own making
that they send it, and the first steps of a rollout (dispatched, a stage held and promoted, a
tag rolled out to the end)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
from cleared import ended_rollout
from figures import RINGS_OK

from bot.domain.rollout import (
    Phase,
    Rollout,
    StageState,
    TrackState,
    holding_tracks,
    window_timer_key,
)
from bot.plan_file import load_plan
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER, SLACK_SIGNING_SECRET
from sandbox.harness import Sandbox, write_figures
from sandbox.signing import event_callback_body, slack_signature_headers, slash_command_body
from sandbox.slack import SlackTestServer
from storage.db import create_session_factory, engine_for_one_task
from storage.rollout_store import RolloutStore


def stage_state(rollout: Rollout, track: str, stage: str) -> StageState:
    return rollout.track(track).stage(stage).state


def window_timer_of(rollout: Rollout, track: str, stage: str) -> str:
    """The key of the durable timer at the end of the window `stage` of `track` observes."""
    ends = rollout.track(track).stage(stage).window_ends_at
    assert ends is not None
    return window_timer_key(rollout.id, track, stage, ends)


def holding(track: str, stage: str) -> Callable[[Rollout], bool]:
    """Whether `stage` of `track` holds on its gate, waiting for a Promote."""
    return lambda rollout: stage_state(rollout, track, stage) is StageState.HOLDING


async def held(box: Sandbox, track: str, stage: str) -> Rollout:
    """The rollout once `stage` of `track` holds on its gate."""
    return await box.wait_until(holding(track, stage))


async def both_held(box: Sandbox) -> Rollout:
    """The rollout once the relay and desktop tracks both hold (on a gate or a review)."""
    return await box.wait_until(lambda r: set(holding_tracks(r)) == {"relay", "desktop"})


async def begun(box: Sandbox, track: str, stage: str) -> Rollout:
    """The rollout once `stage` of `track` is pending no more (let through, or stopped)."""
    return await box.wait_until(lambda r: stage_state(r, track, stage) is not StageState.PENDING)


async def promote(box: Sandbox, track: str, stage: str) -> None:
    """Once `stage` holds, click the lane's Promote button when the card offers it for `stage`;
    nothing is answered when it works."""
    await held(box, track, stage)
    await box.click("promote", value=await value_of(box, "promote", track, stage=stage), wait=False)


def card_button(box: Sandbox, action_id: str, track: str | None = None) -> dict[str, Any] | None:
    """The card's `action_id` button (of `track`, if given) as the card shows it now, if it does."""
    for block in box.card_message().blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id and (
                track is None or f'"track":"{track}"' in element["value"]
            ):
                return dict(element)
    return None


def button(box: Sandbox, action_id: str, track: str | None = None) -> str | None:
    """The value of the card's `action_id` button (of `track`, if given), if the card shows it."""
    found = card_button(box, action_id, track)
    return None if found is None else str(found["value"])


async def value_of(
    box: Sandbox, action_id: str, track: str | None = None, *, stage: str | None = None
) -> str:
    """The value of a button on the card, once the card shows it (for `stage`, if given: the
    card is redrawn just after the state is saved, so a wait for the state can end while the
    card still shows the stage before)."""

    def shown() -> bool:
        value = button(box, action_id, track)
        return value is not None and (stage is None or json.loads(value)["stage"] == stage)

    await box.slack.wait_for(shown, timeout=30)
    found = button(box, action_id, track)
    assert found is not None
    return found


def reviews(box: Sandbox, prefix: str = "") -> list[tuple[str, str]]:
    """The reviews on GitHub, in order, as (environment, state), of the environments whose name
    starts with `prefix`."""
    return [
        (name, review.state)
        for review in box.github.reviews
        for name in review.environments
        if name.startswith(prefix)
    ]


RELAY_COMPLETED = [
    ("relay-canary-5", "approved"),
    ("relay-rollout-50", "approved"),
    ("relay-rollout-100", "approved"),
]
"""The relay's `reviews` of a rollout that went to 100%."""
RELAY_ROLLED_BACK_AT_CANARY = [
    ("relay-canary-5", "approved"),
    ("relay-rollout-50", "rejected"),
    ("relay-rollback", "approved"),
]
"""The relay's `reviews` of a rollout rolled back during (or after) its canary window."""
RINGS_COMPLETED = [
    ("desktop-internal", "approved"),
    ("desktop-beta", "approved"),
    ("desktop-ga", "approved"),
]
"""The desktop `reviews` of a rollout that reached the GA ring."""
HALTED_ON_INTERNAL = [
    ("desktop-internal", "approved"),
    ("desktop-beta", "rejected"),
    ("desktop-kill-switch", "approved"),
]
"""The desktop `reviews` of a track stopped on its internal ring, in order."""
HALTED_ON_BETA = [
    ("desktop-internal", "approved"),
    ("desktop-beta", "approved"),
    ("desktop-ga", "rejected"),
    ("desktop-kill-switch", "approved"),
]
"""The desktop `reviews` of a track stopped on its beta ring (the beta job ran), in order."""


async def open_home(box: Sandbox, user: str, *, refused: bool = False) -> str:
    """Open the App Home as `user` does; the tab Slack shows them then (as JSON text). Waits
    for a publish Slack took, or with `refused` for one it refused (a test's `fail_next`)."""
    body = event_callback_body(event={"type": "app_home_opened", "user": user, "tab": "home"})
    headers = slack_signature_headers(SLACK_SIGNING_SECRET, body, content_type="application/json")

    def published() -> int:  # a publish Slack refused (a 429, to be retried) shows nothing
        calls = box.slack.calls_to("views.publish")
        return sum(1 for c in calls if bool(c.response.get("ok")) is not refused)

    before = published()
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{box.url}/slack/events", data=body, headers=headers) as r,
    ):
        assert r.status == 200
    await box.slack.wait_for(lambda: published() > before)
    return json.dumps(box.slack.home_tabs[user])


def command_body(
    slack: SlackTestServer, text: str, *, channel: str = RELEASE_CHANNEL, **fields: str
) -> tuple[str, str]:
    """`/rollout <text>` as the release manager types it in `channel` (`fields`: more of the
    payload's, as `team_id` or `trigger_id`), with a fresh response_url of its own:
    (response_url, body), to sign and post as the test needs (`Sandbox.command` does both)."""
    url = slack.new_response_url(channel=channel, user=RELEASE_MANAGER)
    body = slash_command_body(
        text=text, user_id=RELEASE_MANAGER, channel_id=channel, response_url=url, **fields
    )
    return url, body


async def dispatched(box: Sandbox, tag: str = "v1.4.2") -> Rollout:
    """`/rollout start <tag> --flags-ready`, then Dispatch on its card: the rollout once it runs."""
    assert "Preflight" in await box.command(f"start {tag} --flags-ready")
    await box.wait_for_button("dispatch")
    await box.click("dispatch")
    return await box.wait_until(lambda r: r.phase is Phase.RUNNING and r.tag == tag)


async def figures_form_opened(box: Sandbox) -> str:
    """A relay track of typed figures (`manual_tracks`) dispatched, its window ended, and the
    figures form opened by the release manager: the form's view id."""
    write_figures(box.figures, "desktop", RINGS_OK)
    await dispatched(box)
    await box.wait_for_thread("Enter the observed rates")
    request = next(r for r in box.card_message().replies if "[Enter figures]" in r.rendered)
    await box.click("enter_figures", message=request)
    opened = await box.slack.wait_for_call("views.open")
    return str(opened[-1].response["view"]["id"])


async def finish(box: Sandbox, tag: str, *, changed_within: float = 30.0) -> Rollout:
    """Roll `tag` out to the end of both tracks, promoting each held gate by command (the
    harness's wait skips each window on the clock instead of sleeping through it). A promote
    after which the same stages still hold, `changed_within` seconds on, fails the test saying
    so, instead of being sent again for ever."""
    await dispatched(box, tag)
    promoted: set[tuple[str, str]] = set()  # the stages the last promote was for

    def held(rollout: Rollout) -> set[tuple[str, str]]:
        tracks = holding_tracks(rollout)
        return {(t.name, t.current.key) for t in rollout.tracks if t.name in tracks and t.current}

    def moved_on(rollout: Rollout) -> bool:
        holds = bool(holding_tracks(rollout))
        return rollout.phase is Phase.ENDED or (holds and held(rollout) != promoted)

    rollout = await box.wait_until(lambda r: r.phase is Phase.ENDED or bool(holding_tracks(r)))
    while rollout.phase is not Phase.ENDED:
        promoted = held(rollout)
        await box.command("promote")
        try:
            rollout = await box.wait_until(moved_on, timeout=changed_within)
        except TimeoutError:
            # Judged by a look after the bound: a loaded machine may have cut the last one short.
            if not moved_on(rollout := await box.rollout()):
                stages = ", ".join(f"{track} {stage}" for track, stage in sorted(promoted))
                said = (
                    f"`/rollout promote` changed nothing: {stages} still held"
                    if held(rollout) == promoted
                    else "it neither holds a stage it did not hold before nor ended"
                )
                raise TimeoutError(f"after {changed_within} s, {tag}: {said}") from None
    return rollout


async def released(box: Sandbox, tag: str) -> Rollout:
    """`tag` stored as a rollout that ended an hour ago with every track completed, as `finish`
    leaves one, without running it: the history a scene after it needs (the previous good
    release to roll back to), for a fraction of the CPU of a whole rollout."""
    plan = load_plan(box.plan_file)
    ends = (TrackState.COMPLETED,) * len(plan.tracks)
    async with engine_for_one_task(box.database_url) as engine:
        return await ended_rollout(
            RolloutStore(create_session_factory(engine), clock=box.clock),
            plan,
            tag=tag,
            rollout_id=f"r-{tag}",
            at=box.clock() - timedelta(hours=1),
            ends=ends,
            started_by=RELEASE_MANAGER,
        )


async def deploying_canary(box: Sandbox) -> Rollout:
    """Dispatched, its relay canary deploying on a run the bot knows."""
    await dispatched(box)
    rollout = await box.wait_until(
        lambda r: r.track("relay").stage("canary").state is StageState.DEPLOYING
    )
    assert rollout.run_id is not None
    return rollout


async def audit_results(box: Sandbox, rollout_id: str, action: str, count: int) -> list[str]:
    """The results of the rollout's `action` audit events, once `count` are recorded (a
    click's event is written when its answer is complete, after the card moved); what there is
    after 10 s otherwise."""
    results: list[str] = []
    for _ in range(100):
        events = await box.audit.list_for_rollout(rollout_id)
        results = [e.result for e in events if e.action == action]
        if len(results) >= count:
            break
        await asyncio.sleep(0.1)
    return results


async def github_until(
    box: Sandbox,
    holds: Callable[[], bool],
    *,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> None:
    """Wait until `holds()`, looked at again each time a run on the sandbox GitHub changes (a
    dispatch, a job's step, a run's end): what Slack records says nothing of those."""
    moved = asyncio.Event()
    engine = box.github.engine

    def changed(_: object) -> None:
        moved.set()

    engine.listeners.append(changed)
    try:
        async with asyncio.timeout(timeout):
            while not holds():
                moved.clear()
                await moved.wait()
    finally:
        engine.listeners.remove(changed)
