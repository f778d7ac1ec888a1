"""The `/rollout` slash command: acknowledge at once, then route to one service call and
answer ephemerally. What changes a rollout is also told in its thread, for everyone."""

from __future__ import annotations

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.adapters.slack import (
    audit_views,
    freeze_all_words,
    lane_words,
    report_views,
    schedule_words,
    views,
)
from bot.adapters.slack.blocks import BlockJson
from bot.adapters.slack.limits import MESSAGE_BLOCKS
from bot.adapters.slack.mrkdwn import as_typed
from bot.adapters.slack.rollout_words import stop_note
from bot.adapters.slack.status_views import active_blocks, history_blocks, services_blocks
from bot.domain import rollout_command as commands
from bot.domain.errors import NotAvailable, RolloutError
from bot.domain.gate import GateKind
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout
from bot.domain.service import DEFAULT_SERVICE
from bot.services.catalog import Services
from bot.services.directory import ServiceDirectory
from bot.services.freeze_all import FreezeAll
from bot.services.requests import Origin
from handlers.errors import acknowledged, subcommand_name
from handlers.origin import command_origin
from handlers.payloads import SlashCommand, parse


async def plans_of(services: Services, rollouts: list[Rollout]) -> dict[str, RolloutPlan]:
    return {r.id: await services.rollouts.plan_of(r) for r in rollouts}


async def lane_answer(services: Services, command: commands.Command, origin: Origin) -> str | None:
    """Freeze, unfreeze, lock and unlock: the answer, said in the channel for everyone; None
    for any other command."""
    lane, actor = services.controls.lane, origin.actor
    if isinstance(command, commands.Freeze):
        froze = await lane.freeze(origin, until=command.until, reason=command.reason)
        return lane_words.frozen_answer(
            froze.asked, froze.in_force, lane=froze.lane, zone=froze.zone
        )
    if isinstance(command, commands.Unfreeze):
        lifted = await lane.unfreeze(origin)
        return lane_words.unfrozen_answer(actor, lifted, lane=(await services.lane.state()).freeze)
    if isinstance(command, commands.Lock):
        return lane_words.locked_answer(await lane.lock(origin, reason=command.reason))
    if isinstance(command, commands.Unlock):
        removed = await lane.unlock(origin, reason=command.reason)
        return lane_words.unlocked_answer(actor, removed, command.reason)
    return None


def _of(shown: str | None, said: str) -> str:
    """What is said (to the whole channel, or to the person of a change they made), after the
    service's name when answers name it."""
    return said if shown is None else f"*{shown}*: {said}"


async def start_answer(
    services: Services, command: commands.Start, origin: Origin, *, shown: str | None
) -> tuple[str, list[BlockJson], bool]:
    """Start once. An override of a freeze in force is said in the channel for everyone
    (with the scheduled time, if any; after `shown`, the service's name, when answers name
    it); otherwise the starter is answered alone."""
    started = await services.controls.start(
        origin,
        tag=command.tag,
        flags_ready=command.flags_ready,
        override=command.override_freeze,
        at=command.at,
    )
    schedule = started.schedule
    if command.override_freeze is not None:
        at = schedule.at if schedule is not None else None
        freeze = (await services.lane.state(at=at)).freeze
        if freeze is not None:  # else nothing was frozen: an ordinary start
            said = lane_words.override_answer(
                origin.actor, started.tag, freeze, command.override_freeze, at=at
            )
            return *views.note(_of(shown, said)), True
    posted = started.message_ts is not None  # else Slack did not take the card (yet)
    if schedule is not None:
        return *views.note(
            schedule_words.scheduled_answer(started.tag, started.id, schedule, posted=posted)
        ), False
    return *views.note(schedule_words.started_answer(started.tag, started.id, posted=posted)), False


async def answer(
    services: Services, payload: SlashCommand, origin: Origin, *, several: bool
) -> tuple[str, list[BlockJson], bool]:
    """Run the command; the answer as (text, blocks, whether the whole channel sees it),
    naming the service unless it is the one `default` service (beside others, as its cards,
    `default` too: `several`). What changes a rollout or the release lane goes through the controls
    (approvers, exactly once, audit)."""
    command = services.commands.route(text=payload.text, channel_id=payload.channel_id)
    name = services.service.name
    shown = name if several or name != DEFAULT_SERVICE else None
    if isinstance(command, commands.Start):
        return await start_answer(services, command, origin, shown=shown)
    said = await lane_answer(services, command, origin)
    if said is not None:
        return *views.note(_of(shown, said)), True
    return *await _ephemeral(services, command, payload, origin, shown=shown), False


async def _ephemeral(
    services: Services,
    command: commands.Command,
    payload: SlashCommand,
    origin: Origin,
    *,
    shown: str | None,
) -> tuple[str, list[BlockJson]]:
    """The answer to the person alone; `shown`: the service's name, when answers name it."""
    rollouts = services.rollouts
    controls = services.controls
    actor = payload.user_id
    if isinstance(command, commands.Help):
        return views.help_text(), views.help_blocks()
    if isinstance(command, commands.Status):
        lane = lane_words.lane_blocks(await services.lane.state())
        room = MESSAGE_BLOCKS - len(lane)
        active = await rollouts.active_with_plans()
        held = await services.lane.held_then([rollout for rollout, _ in active])
        return "Active rollouts", lane + active_blocks(active, service=shown, room=room, held=held)
    if isinstance(command, commands.History) and command.tag is not None:
        timeline = await controls.timeline(command.tag)
        return audit_views.timeline_text(timeline), audit_views.timeline_blocks(
            timeline, service=shown
        )
    if isinstance(command, commands.History):
        recent = await rollouts.history(tag=command.tag)
        plans = await plans_of(services, recent)
        undone = await services.reports.rolled_back_after(recent)
        return "Rollout history", history_blocks(
            recent, lambda r: plans[r.id], undone, service=shown
        )
    if isinstance(command, commands.Report):
        report = await services.reports.period(command.period, asker=actor)
        return (
            report_views.report_text(report, service=shown),
            report_views.report_blocks(report, service=shown),
        )
    if isinstance(command, commands.Promote):
        promoted = await controls.promote(origin)
        return views.note(_of(shown, f"Promoted `{promoted.tag}`: see its thread."))
    if isinstance(command, commands.Rollback):
        stopped = await controls.abort(origin, gate="relay")
        plan = await rollouts.plan_of(stopped)
        return views.note(_of(shown, stop_note(stopped, plan, GateKind.RELAY)))
    if isinstance(command, commands.Kill):
        stopped = await controls.abort(origin, gate="desktop", reason=command.reason or "")
        plan = await rollouts.plan_of(stopped)
        return views.note(_of(shown, stop_note(stopped, plan, GateKind.DESKTOP)))
    if isinstance(command, commands.Link):
        linked = await controls.link_run(origin, command.run)
        return views.note(
            _of(shown, f"Run {linked.run_id} linked to `{linked.tag}`: see its thread.")
        )
    if isinstance(command, commands.NpmToken):
        await services.npm_token.open(channel=payload.channel_id, actor=actor)
        return views.note(
            "NPM_TOKEN walkthrough posted: follow its steps. Never paste a token into Slack."
        )
    raise NotAvailable(f"`/rollout {command.name}` is not available in this version yet.")


async def every_lane_answer(every: FreezeAll, text: str, origin: Origin) -> str:
    """`/rollout freeze --all` and `unfreeze --all`: said in this channel, for everyone; the
    other services' release channels told are named (docs/freezes.md)."""
    command = commands.parse_command(text)
    if isinstance(command, commands.Freeze):
        froze = await every.freeze(origin, until=command.until, reason=command.reason)
        each = [(name, f.asked, f.in_force, f.lane) for name, f in froze.each]
        return freeze_all_words.frozen_all_answer(each, zone=froze.zone, told=froze.told)
    unfrozen = await every.unfreeze(origin)
    return freeze_all_words.unfrozen_all_answer(
        origin.actor, unfrozen.lifted, unfrozen.untouched, unfrozen.still, told=unfrozen.told
    )


async def channel_status(each: tuple[Services, ...]) -> tuple[str, list[BlockJson]]:
    """A bare `/rollout status` in a channel of several services: each one's lane and rollouts."""
    shown: list[tuple[str, list[BlockJson]]] = []
    for services in each:
        name = services.service.name
        lane = lane_words.lane_blocks(await services.lane.state(), service=name)
        active = await services.rollouts.active_with_plans()
        held = await services.lane.held_then([rollout for rollout, _ in active])
        shown.append((name, lane + active_blocks(active, service=name, held=held)))
    return "Active rollouts", services_blocks(shown)


def register(app: AsyncApp, directory: ServiceDirectory) -> None:
    @app.command("/rollout")
    @acknowledged(directory.telemetry)
    async def rollout_command(
        ack: AsyncAck, body: dict[str, str], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        received = parse(SlashCommand, body)
        payload = received.model_copy(update={"text": as_typed(received.text)})  # once, here
        origin = command_origin(
            user_id=payload.user_id,
            channel_id=payload.channel_id,
            trigger_id=payload.trigger_id,
            request=request,
        )
        name = subcommand_name(payload.text)
        if each := directory.status_of_channel(payload.text, channel_id=payload.channel_id):
            async with directory.fallback(payload.channel_id).controls.audited(origin, name):
                text, blocks = await channel_status(each)
            await respond(response_type="ephemeral", text=text, blocks=blocks)
            return
        try:
            every = directory.every_lane(payload.text, channel_id=payload.channel_id)
            if every is None:
                services, typed = directory.for_command(payload.text, channel_id=payload.channel_id)
        except RolloutError:  # no service named where one is needed: refused, and audited
            async with directory.fallback(payload.channel_id).controls.audited(origin, name):
                raise
        if every is not None:
            async with every.here.access.audited(origin, name):
                said = await every_lane_answer(every, payload.text, origin)
            text, blocks = views.note(said)
            await respond(response_type="in_channel", text=text, blocks=blocks)
            return
        payload = payload.model_copy(update={"text": typed})
        async with services.controls.audited(origin, name):
            text, blocks, in_channel = await answer(
                services, payload, origin, several=directory.several
            )
        shown = "in_channel" if in_channel else "ephemeral"
        await respond(response_type=shown, text=text, blocks=blocks)
