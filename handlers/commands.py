"""The `/rollout` slash command: acknowledge at once, then route to one service call and
answer ephemerally. What changes a rollout is also told in its thread, for everyone."""

from __future__ import annotations

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.controls import Origin
from bot.domain.commands import (
    Help,
    History,
    Kill,
    NpmToken,
    Promote,
    Rollback,
    Start,
    Status,
    Subcommand,
)
from bot.domain.errors import NotAvailable
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout
from bot.services import Services
from handlers import audit_views, rollout_views, views
from handlers.errors import acknowledged
from handlers.origin import command_origin
from handlers.payloads import SlashCommand, parse
from handlers.views import Block


async def plans_of(services: Services, rollouts: list[Rollout]) -> dict[str, RolloutPlan]:
    return {r.id: await services.rollouts.plan_of(r) for r in rollouts}


def audit_name(text: str) -> str:
    """The subcommand a command's text names, for its audit event (`unknown` when none)."""
    word = (text.split() or ["help"])[0].lower()
    return word if word in set(Subcommand) else "unknown"


async def answer(
    services: Services, payload: SlashCommand, origin: Origin
) -> tuple[str, list[Block]]:
    """Run the command; the ephemeral answer as (text, blocks). What changes a rollout goes
    through the controls (approvers, exactly once, audit)."""
    command = services.commands.route(text=payload.text, channel_id=payload.channel_id)
    rollouts = services.rollouts
    controls = services.controls
    actor = payload.user_id
    if isinstance(command, Help):
        return views.help_text(), views.help_blocks()
    if isinstance(command, Start):
        started = await controls.start(origin, tag=command.tag, flags_ready=command.flags_ready)
        return views.note(f"Preflight of `{started.tag}` posted ({started.id}).")
    if isinstance(command, Status):
        active = await rollouts.active()
        plans = await plans_of(services, active)
        return "Active rollouts", rollout_views.status_blocks(active, lambda r: plans[r.id])
    if isinstance(command, History) and command.tag is not None:
        timeline = await controls.timeline(command.tag)
        return audit_views.timeline_text(timeline), audit_views.timeline_blocks(timeline)
    if isinstance(command, History):
        recent = await rollouts.history(tag=command.tag)
        plans = await plans_of(services, recent)
        return "Rollout history", rollout_views.history_blocks(recent, lambda r: plans[r.id])
    if isinstance(command, Promote):
        promoted = await controls.promote(origin)
        return views.note(f"Promoted `{promoted.tag}`: see its thread.")
    if isinstance(command, Rollback):
        stopped = await controls.abort(origin, gate="relay")
        return views.note(f"Rolling back `{stopped.tag}`: see its thread.")
    if isinstance(command, Kill):
        stopped = await controls.abort(origin, gate="desktop", reason=command.reason or "")
        return views.note(f"Kill-switch tripped for `{stopped.tag}`: see its thread.")
    if isinstance(command, NpmToken):
        await services.npm_token.open(channel=payload.channel_id, actor=actor)
        return views.note(
            "NPM_TOKEN walkthrough posted: follow its steps. Never paste a token into Slack."
        )
    raise NotAvailable(f"`/rollout {command.name}` is not available in this version yet.")


def register(app: AsyncApp, services: Services) -> None:
    @app.command("/rollout")
    @acknowledged
    async def rollout_command(
        ack: AsyncAck, body: dict[str, str], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        payload = parse(SlashCommand, body)
        origin = command_origin(
            user_id=payload.user_id,
            channel_id=payload.channel_id,
            trigger_id=payload.trigger_id,
            request=request,
        )
        async with services.controls.audited(origin, audit_name(payload.text)):
            text, blocks = await answer(services, payload, origin)
        await respond(response_type="ephemeral", text=text, blocks=blocks)
