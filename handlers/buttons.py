"""Buttons on the rollout cards and the manual-figures modal.

Each click is acknowledged at once, its typed value decoded, and one service call made;
refusals and errors come back ephemerally through the error handler.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.services import Services
from handlers import rollout_views
from handlers.actions import Action, ButtonValue, Callback, FiguresMetadata, InvalidPayload
from handlers.errors import acknowledged


def _clicked(body: dict[str, Any]) -> tuple[str, ButtonValue]:
    """The clicking user and the button's typed value."""
    action = body["actions"][0]
    return str(body["user"]["id"]), ButtonValue.decode(str(action.get("value", "")))


def _track(value: ButtonValue) -> str:
    if value.track is None:
        raise InvalidPayload("This button names no track; refresh the card and try again.")
    return value.track


def register(app: AsyncApp, services: Services) -> None:
    rollouts = services.rollouts

    @app.action(Action.CONFIRM_FLAGS)
    @acknowledged
    async def confirm_flags(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        actor, value = _clicked(body)
        await rollouts.confirm_flags(rollout_id=value.rollout_id, actor=actor)

    @app.action(Action.DISPATCH)
    @acknowledged
    async def dispatch(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        actor, value = _clicked(body)
        await rollouts.dispatch(rollout_id=value.rollout_id, actor=actor)

    @app.action(Action.CANCEL_PREFLIGHT)
    @acknowledged
    async def cancel(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        actor, value = _clicked(body)
        await rollouts.cancel(rollout_id=value.rollout_id, actor=actor)

    @app.action(Action.PROMOTE)
    @acknowledged
    async def promote(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        actor, value = _clicked(body)
        await rollouts.promote(
            actor=actor, rollout_id=value.rollout_id, track=_track(value), override=True
        )

    @app.action(Action.ROLLBACK)
    @acknowledged
    async def rollback(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        actor, value = _clicked(body)
        await rollouts.abort(actor=actor, gate="relay", rollout_id=value.rollout_id)

    @app.action(Action.KILL)
    @acknowledged
    async def kill(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        actor, value = _clicked(body)
        await rollouts.abort(actor=actor, gate="desktop", rollout_id=value.rollout_id)

    @app.action(Action.EXTEND_WINDOW)
    @acknowledged
    async def extend(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        actor, value = _clicked(body)
        await rollouts.extend(
            actor=actor,
            rollout_id=value.rollout_id,
            track=_track(value),
            by=rollout_views.EXTEND_STEP,
        )

    @app.action(Action.ENTER_FIGURES)
    @acknowledged
    async def enter_figures(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        actor, value = _clicked(body)
        await services.approvers.require(actor, "enter gate figures")
        rollout = await rollouts.get(value.rollout_id)
        plan = await rollouts.plan_of(rollout)
        if value.stage is None:
            raise InvalidPayload("This button names no stage; refresh the card and try again.")
        modal = rollout_views.figures_modal(rollout, plan, _track(value), value.stage)
        await client.views_open(trigger_id=body["trigger_id"], view=modal)

    @app.view(Callback.FIGURES)
    async def figures_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        actor = str(body["user"]["id"])
        figures, errors = rollout_views.parse_figures(view["state"]["values"])
        if not await services.approvers.is_approver(actor):
            errors = {rollout_views.CRASH_RATE_BLOCK: "Only release approvers may enter figures."}
        if figures is None or errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        metadata = FiguresMetadata.decode(view["private_metadata"])
        await rollouts.submit_figures(
            rollout_id=metadata.rollout_id,
            track=metadata.track,
            stage=metadata.stage,
            figures=figures,
            actor=actor,
        )
