"""Block Kit of `/rollout status` (also the App Home's list) and `/rollout history`: the
rollouts, where each of their tracks stands or how it ended."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from slack_sdk.models.blocks import Block

from bot.adapters.slack.blocks import BlockJson, as_json, context, header, section, sections
from bot.adapters.slack.limits import CONTEXT_TEXT, MESSAGE_BLOCKS, clip, fit
from bot.adapters.slack.messages import slack_time
from bot.adapters.slack.rollout_words import card_facts, current_stage, lane_title, verdict_words
from bot.adapters.slack.schedule_words import held_then_text
from bot.domain.freeze import Frozen
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout

UNDONE = ", then rolled back after it completed (the previous release redeployed)"

PlanFor = Callable[[Rollout], RolloutPlan]
"""The plan a rollout runs under (each rollout keeps the snapshot it was started with)."""


def _status_lines(rollout: Rollout, plan: RolloutPlan, held: Frozen | None) -> list[str]:
    facts = [f"*{rollout.tag}* · {rollout.phase}", *card_facts(rollout, preflight=False)]
    lines = [" · ".join(facts)]
    if held is not None:
        lines.append(held_then_text(held))
    for track in rollout.tracks:
        plan_track = plan.track(track.name)
        line = f"• {lane_title(track, plan_track, rollout.refused_approvals)}"
        current = current_stage(track, plan_track, rollout.refused_approvals)
        if current is not None:
            stage, words = current
            line += f": {words}"
            if stage.verdict is not None:
                line += f"; gate {verdict_words(stage.verdict)}: {stage.verdict.summary}"
        lines.append(line)
    return lines


def status_blocks(
    rollouts: Sequence[Rollout],
    plan_for: PlanFor,
    *,
    service: str | None = None,
    room: int = MESSAGE_BLOCKS,
    held: Mapping[str, Frozen] | None = None,
) -> list[BlockJson]:
    """`/rollout status`: the active rollouts and where each of their tracks stands (of
    `service`, named when the bot releases several), in `room` blocks at most; a scheduled
    dispatch that a freeze known now will hold then (`held`, by rollout id) says so."""
    active = [rollout for rollout in rollouts if rollout.active]
    of = f" of {service}" if service is not None else ""
    if not active:
        return as_json([section(f"No active rollouts{of}.")])
    blocks: list[Block] = [header(f"Active rollouts{of}")]
    for rollout in active:
        lines = _status_lines(rollout, plan_for(rollout), (held or {}).get(rollout.id))
        blocks.extend(sections(lines))
    return as_json(fit(blocks, "finish or cancel a rollout to see the others", room))


def active_blocks(
    active: Sequence[tuple[Rollout, RolloutPlan]],
    *,
    service: str | None = None,
    room: int = MESSAGE_BLOCKS,
    held: Mapping[str, Frozen] | None = None,
) -> list[BlockJson]:
    """The status of the active rollouts, each drawn with its own plan."""
    plans = {rollout.id: plan for rollout, plan in active}
    rollouts = [rollout for rollout, _ in active]
    return status_blocks(rollouts, lambda r: plans[r.id], service=service, room=room, held=held)


def services_blocks(
    each: Sequence[tuple[str, list[BlockJson]]], *, room: int = MESSAGE_BLOCKS
) -> list[BlockJson]:
    """Several services' blocks (each its lane and its rollouts) in `room` blocks: whole
    services while they fit, then a line naming those left out."""
    if sum(len(blocks) for _, blocks in each) <= room:
        return [block for _, blocks in each for block in blocks]
    shown: list[BlockJson] = []
    left: list[str] = []
    for name, blocks in each:
        if not left and len(shown) + len(blocks) < room:
            shown += blocks
        else:
            left.append(name)
    note = f"_Not shown: {', '.join(left)}. `/rollout status &lt;service&gt;` shows one service._"
    return [*shown, *as_json([context(clip(note, CONTEXT_TEXT))])]


def history_blocks(
    rollouts: Sequence[Rollout],
    plan_for: PlanFor,
    rolled_back_after: Collection[tuple[str, str]] = (),
    *,
    service: str | None = None,
) -> list[BlockJson]:
    """`/rollout history`: the last rollouts, in the order given, and how each track ended
    (`rolled_back_after`: the (rollout id, track) a person rolled back after they completed),
    of `service`, named when the bot releases several."""
    of = f" of {service}" if service is not None else ""
    if not rollouts:
        return as_json([section(f"No rollouts{of} yet.")])
    blocks: list[Block] = [header(f"Recent rollouts{of}")]
    for rollout in rollouts:
        plan = plan_for(rollout)
        when = (
            f"ended {slack_time(rollout.ended_at)}"
            if rollout.ended_at is not None
            else str(rollout.phase)
        )
        lines = [
            f"*{rollout.tag}* · started {slack_time(rollout.created_at)} by "
            f"<@{rollout.started_by}> · {when}"
        ]
        lines.extend(
            f"• {lane_title(track, plan.track(track.name))}"
            + (UNDONE if (rollout.id, track.name) in rolled_back_after else "")
            for track in rollout.tracks
        )
        blocks.extend(sections(lines))
    return as_json(fit(blocks, "`/rollout history &lt;tag&gt;` shows one rollout"))
