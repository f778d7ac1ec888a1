"""Buttons on the rollout cards and the forms they open (figures, custom extension, redeploy).

Each click is acknowledged at once, its typed value decoded, and one control called
(`bot.controls`: channel, approver, stale card, two-person rule, exactly once, audit);
refusals and errors come back ephemerally. A form is validated before Slack is answered;
what goes wrong after that is answered ephemerally in the channel it came from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.controls import CardRef, Control
from bot.services import Services
from handlers import control_views, rollout_views
from handlers.actions import (
    Action,
    ButtonValue,
    Callback,
    ExtendMetadata,
    FiguresMetadata,
    InvalidPayload,
    RedeployMetadata,
)
from handlers.errors import acknowledged, explain
from handlers.origin import card_of, click_origin, form_origin


def _card(body: dict[str, Any]) -> CardRef:
    """What the clicked button acts on (its typed value)."""
    action = body["actions"][0]
    return card_of(ButtonValue.decode(str(action.get("value", ""))))


def _stage(card: CardRef) -> tuple[str, str]:
    if card.track is None or card.stage is None:
        raise InvalidPayload("This button names no stage; refresh the card and try again.")
    return card.track, card.stage


async def _answer_form(
    client: AsyncWebClient, body: dict[str, Any], channel: str | None, work: Awaitable[object]
) -> None:
    """Run a submitted form's work; its refusal or error goes to the submitter, ephemerally."""
    try:
        await work
    except Exception as error:
        text, blocks = explain(error, body)
        if not channel:
            return
        with contextlib.suppress(SlackApiError):  # a lost answer; `explain` logged the error
            await client.chat_postEphemeral(
                channel=channel, user=str(body["user"]["id"]), text=text, blocks=blocks
            )


def register(app: AsyncApp, services: Services) -> None:
    controls = services.controls

    @app.action(Action.CONFIRM_FLAGS)
    @acknowledged
    async def confirm_flags(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        await controls.confirm_flags(click_origin(body, request), _card(body))

    @app.action(Action.DISPATCH)
    @acknowledged
    async def dispatch(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        await controls.dispatch(click_origin(body, request), _card(body))

    @app.action(Action.RECHECK)
    @acknowledged
    async def recheck(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        await controls.recheck(click_origin(body, request), _card(body))

    @app.action(Action.CANCEL_PREFLIGHT)
    @acknowledged
    async def cancel(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        await controls.cancel(click_origin(body, request), _card(body))

    @app.action(Action.PROMOTE)
    @acknowledged
    async def promote(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        # The button asks to confirm when it overrides an INCONCLUSIVE gate.
        await controls.promote(click_origin(body, request), _card(body), override=True)

    @app.action(Action.ROLLBACK)
    @acknowledged
    async def rollback(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        await controls.abort(click_origin(body, request), gate="relay", card=_card(body))

    @app.action(Action.KILL)
    @acknowledged
    async def kill(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        await controls.abort(click_origin(body, request), gate="desktop", card=_card(body))

    @app.action(Action.EXTEND_WINDOW)
    @acknowledged
    async def extend(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        await controls.extend(
            click_origin(body, request), _card(body), by=rollout_views.EXTEND_STEP
        )

    @app.action(Action.REEVALUATE)
    @acknowledged
    async def reevaluate(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        await controls.reevaluate(click_origin(body, request), _card(body))

    @app.action(Action.EXTEND_CUSTOM)
    @acknowledged
    async def extend_custom(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        origin, card = click_origin(body, request), _card(body)
        track, stage = _stage(card)
        rollout, plan = await controls.open_form(origin, Control.EXTEND_BY, card)
        modal = control_views.extend_modal(
            rollout, plan, track=track, stage=stage, channel_id=origin.channel_id
        )
        await client.views_open(trigger_id=body["trigger_id"], view=modal)

    @app.action(Action.ENTER_FIGURES)
    @acknowledged
    async def enter_figures(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        card = _card(body)
        track, stage = _stage(card)
        rollout, plan = await controls.open_form(click_origin(body, request), Control.FIGURES, card)
        modal = rollout_views.figures_modal(rollout, plan, track, stage)
        await client.views_open(trigger_id=body["trigger_id"], view=modal)

    @app.action(Action.REDEPLOY)
    @acknowledged
    async def redeploy(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        origin = click_origin(body, request)
        offer = await controls.redeploy_offer(origin, _card(body))
        modal = control_views.redeploy_modal(offer, channel_id=origin.channel_id)
        await client.views_open(trigger_id=body["trigger_id"], view=modal)

    @app.view(Callback.FIGURES)
    async def figures_submitted(
        ack: AsyncAck,
        body: dict[str, Any],
        view: dict[str, Any],
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        actor = str(body["user"]["id"])
        figures, errors = rollout_views.parse_figures(view["state"]["values"])
        if not await services.approvers.is_approver(actor):
            errors = {rollout_views.CRASH_RATE_BLOCK: "Only release approvers may enter figures."}
        if figures is None or errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        metadata = FiguresMetadata.decode(view["private_metadata"])
        card = CardRef(metadata.rollout_id, metadata.track, metadata.stage)
        origin = form_origin(body, request, channel_id=metadata.channel_id)
        await _answer_form(
            client, body, metadata.channel_id, controls.submit_figures(origin, card, figures)
        )

    @app.view(Callback.EXTEND)
    async def extend_submitted(
        ack: AsyncAck,
        body: dict[str, Any],
        view: dict[str, Any],
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        by, errors = control_views.parse_extension(view["state"]["values"])
        if by is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        metadata = ExtendMetadata.decode(view["private_metadata"])
        card = CardRef(metadata.rollout_id, metadata.track, metadata.stage, metadata.version)
        origin = form_origin(body, request, channel_id=metadata.channel_id)
        work = controls.extend(origin, card, by=by, control=Control.EXTEND_BY)
        await _answer_form(client, body, metadata.channel_id, work)

    @app.view(Callback.REDEPLOY)
    async def redeploy_submitted(
        ack: AsyncAck,
        body: dict[str, Any],
        view: dict[str, Any],
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        await ack()
        metadata = RedeployMetadata.decode(view["private_metadata"])
        card = CardRef(metadata.rollout_id, metadata.track)
        origin = form_origin(body, request, channel_id=metadata.channel_id)
        work = controls.redeploy(origin, card, tag=metadata.tag)
        await _answer_form(client, body, metadata.channel_id, work)
