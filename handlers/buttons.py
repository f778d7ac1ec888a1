"""Buttons on the rollout cards and the forms they open (figures, custom extension, redeploy).

Each click is acknowledged at once, its payload and typed value validated, and one control
called (`bot.controls`: channel, approver, stale card, two-person rule, exactly once, audit);
refusals and errors come back ephemerally. A form is validated before Slack is answered;
what goes wrong after that is answered ephemerally in the channel it came from.

The plain clicks are a table (`CLICKS`: action id to control call); a button that opens a
form has a listener of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.controls import ControlService, Origin
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
from handlers.errors import Listener, acknowledged, explain
from handlers.origin import card_of, click_origin, form_origin
from handlers.payloads import BlockActions, ViewSubmission, parse

Click = Callable[[ControlService, Origin, CardRef], Awaitable[object]]
"""What a plain button does: one call on the controls for the card it was clicked on."""

CLICKS: dict[Action, Click] = {
    Action.CONFIRM_FLAGS: lambda controls, origin, card: controls.confirm_flags(origin, card),
    Action.DISPATCH: lambda controls, origin, card: controls.dispatch(origin, card),
    Action.RECHECK: lambda controls, origin, card: controls.recheck(origin, card),
    Action.CANCEL_PREFLIGHT: lambda controls, origin, card: controls.cancel(origin, card),
    Action.PROMOTE: lambda controls, origin, card: controls.promote(origin, card),
    Action.ROLLBACK: lambda controls, origin, card: controls.abort(origin, gate="relay", card=card),
    Action.KILL: lambda controls, origin, card: controls.abort(origin, gate="desktop", card=card),
    Action.EXTEND_WINDOW: lambda controls, origin, card: controls.extend(
        origin, card, by=rollout_views.EXTEND_STEP
    ),
    Action.REEVALUATE: lambda controls, origin, card: controls.reevaluate(origin, card),
}


def _card(click: BlockActions) -> CardRef:
    """What the clicked button acts on (its typed value)."""
    return card_of(ButtonValue.decode(click.action.value))


def _stage(card: CardRef) -> tuple[str, str]:
    if card.track is None or card.stage is None:
        raise InvalidPayload("This button names no stage; refresh the card and try again.")
    return card.track, card.stage


def _clicked(controls: ControlService, act: Click) -> Listener:
    async def clicked(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        click = parse(BlockActions, body)
        await act(controls, click_origin(click, request), _card(click))

    return acknowledged(clicked)


async def _answer_form(
    client: AsyncWebClient, form: ViewSubmission, channel: str | None, work: Awaitable[object]
) -> None:
    """Run a submitted form's work; its refusal or error goes to the submitter, ephemerally."""
    try:
        await work
    except Exception as error:
        text, blocks = explain(error, form.model_dump(mode="json"))
        if not channel:
            return
        with contextlib.suppress(SlackApiError):  # a lost answer; `explain` logged the error
            await client.chat_postEphemeral(
                channel=channel, user=form.user.id, text=text, blocks=blocks
            )


def register(app: AsyncApp, services: Services) -> None:
    controls = services.controls
    for action, act in CLICKS.items():
        app.action(action)(_clicked(controls, act))

    @app.action(Action.EXTEND_CUSTOM)
    @acknowledged
    async def extend_custom(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        click = parse(BlockActions, body)
        origin, card = click_origin(click, request), _card(click)
        track, stage = _stage(card)
        rollout, plan = await controls.open_form(origin, Control.EXTEND_BY, card)
        modal = control_views.extend_modal(
            rollout, plan, track=track, stage=stage, channel_id=origin.channel_id
        )
        await client.views_open(trigger_id=click.trigger_id or "", view=modal)

    @app.action(Action.ENTER_FIGURES)
    @acknowledged
    async def enter_figures(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        click = parse(BlockActions, body)
        origin, card = click_origin(click, request), _card(click)
        track, stage = _stage(card)
        rollout, plan = await controls.open_form(origin, Control.FIGURES, card)
        modal = rollout_views.figures_modal(rollout, plan, track, stage)
        await client.views_open(trigger_id=click.trigger_id or "", view=modal)

    @app.action(Action.REDEPLOY)
    @acknowledged
    async def redeploy(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        click = parse(BlockActions, body)
        origin = click_origin(click, request)
        offer = await controls.redeploy_offer(origin, _card(click))
        modal = control_views.redeploy_modal(offer, channel_id=origin.channel_id)
        await client.views_open(trigger_id=click.trigger_id or "", view=modal)

    @app.view(Callback.FIGURES)
    async def figures_submitted(
        ack: AsyncAck, body: dict[str, Any], request: AsyncBoltRequest, client: AsyncWebClient
    ) -> None:
        form = parse(ViewSubmission, body)
        figures, errors = rollout_views.parse_figures(form.values())
        if not await services.approvers.is_approver(form.user.id):
            errors = {rollout_views.CRASH_RATE_BLOCK: "Only release approvers may enter figures."}
        metadata = _metadata(FiguresMetadata, form)
        if metadata is None:
            errors = {rollout_views.CRASH_RATE_BLOCK: _FOREIGN_FORM}
        if figures is None or errors or metadata is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        card = CardRef(metadata.rollout_id, metadata.track, metadata.stage)
        origin = form_origin(form, request, channel_id=metadata.channel_id)
        await _answer_form(
            client, form, metadata.channel_id, controls.submit_figures(origin, card, figures)
        )

    @app.view(Callback.EXTEND)
    async def extend_submitted(
        ack: AsyncAck, body: dict[str, Any], request: AsyncBoltRequest, client: AsyncWebClient
    ) -> None:
        form = parse(ViewSubmission, body)
        by, errors = control_views.parse_extension(form.values())
        metadata = _metadata(ExtendMetadata, form)
        if metadata is None:
            errors = {control_views.DURATION_BLOCK: _FOREIGN_FORM}
        if by is None or metadata is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        card = CardRef(metadata.rollout_id, metadata.track, metadata.stage, metadata.version)
        origin = form_origin(form, request, channel_id=metadata.channel_id)
        work = controls.extend(origin, card, by=by, control=Control.EXTEND_BY)
        await _answer_form(client, form, metadata.channel_id, work)

    @app.view(Callback.REDEPLOY)
    async def redeploy_submitted(
        ack: AsyncAck, body: dict[str, Any], request: AsyncBoltRequest, client: AsyncWebClient
    ) -> None:
        form = parse(ViewSubmission, body)
        metadata = _metadata(RedeployMetadata, form)
        if metadata is None:
            # The dialog has no input to hang an error on: it turns into the explanation.
            await ack(response_action="update", view=control_views.notice_modal(_FOREIGN_FORM))
            return
        await ack()
        card = CardRef(metadata.rollout_id, metadata.track)
        origin = form_origin(form, request, channel_id=metadata.channel_id)
        work = controls.redeploy(origin, card, tag=metadata.tag)
        await _answer_form(client, form, metadata.channel_id, work)


_FOREIGN_FORM = "This form was not made by this bot (or by an older version): open it again."


Metadata = TypeVar("Metadata", FiguresMetadata, ExtendMetadata, RedeployMetadata)


def _metadata(model: type[Metadata], form: ViewSubmission) -> Metadata | None:
    """The form's private_metadata as the bot wrote it, or None (a forged or foreign form)."""
    try:
        return model.decode(form.view.private_metadata)
    except InvalidPayload:
        return None
