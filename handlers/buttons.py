"""Buttons on the rollout cards and the forms they open (figures, custom extension, redeploy,
link a run, the reason to override a freeze for a refused Dispatch or Adopt).

Each click is acknowledged at once, its payload and typed value validated, and one control
called (`bot.services.controls`: channel, approver, stale card, two-person rule, exactly once,
audit); refusals and errors come back ephemerally. A form is validated before Slack is answered;
what goes wrong after that is answered ephemerally in the channel it came from.

The plain clicks are a table (`CLICKS`: action id to control call), and so are the buttons
that open a form (`FORMS`: action id to the modal it draws), and so are the submitted forms
(`SUBMISSIONS`: callback id to how the form is checked and what it does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from slack_bolt.async_app import AsyncAck, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack import contents_view, control_views, figures_modal
from bot.adapters.slack.actions import (
    Action,
    AdoptOverrideMetadata,
    ButtonValue,
    Callback,
    ExtendMetadata,
    FiguresMetadata,
    InvalidPayload,
    LinkMetadata,
    OverrideMetadata,
    RedeployMetadata,
)
from bot.adapters.slack.blocks import ViewJson
from bot.adapters.slack.mrkdwn import plain_answer
from bot.adapters.slack.rollout_card import EXTEND_STEP
from bot.domain.controls import CardRef, Control
from bot.domain.errors import InvalidCommand, ServiceNotConfigured
from bot.services.controls import ControlService
from bot.services.directory import ServiceDirectory
from bot.services.requests import Origin
from bot.services.telemetry import Telemetry
from handlers.errors import Listener, acknowledged, explain, failure_outcome, opens_form
from handlers.form_refusals import (
    CHECK_SLOW,
    LOOKUP_SLOW,
    audit_form,
    check_deadline,
    sender_refusal,
)
from handlers.origin import card_of, click_origin, form_origin
from handlers.payloads import BlockActions, ViewSubmission, parse
from handlers.routing import Routes
from handlers.run_buttons import APP_ONLY

log = logging.getLogger(__name__)

Click = Callable[[ControlService, Origin, CardRef], Awaitable[object]]
"""What a plain button does: one call on the controls for the card it was clicked on."""

CLICKS: dict[Action, Click] = {
    Action.CONFIRM_FLAGS: lambda controls, origin, card: controls.confirm_flags(origin, card),
    Action.DISPATCH: lambda controls, origin, card: controls.dispatch(origin, card),
    Action.RECHECK: lambda controls, origin, card: controls.recheck(origin, card),
    Action.CANCEL_PREFLIGHT: lambda controls, origin, card: controls.cancel(origin, card),
    Action.CANCEL_SCHEDULE: lambda controls, origin, card: controls.preflight(
        origin, Control.CANCEL_SCHEDULE, card
    ),
    Action.PROMOTE: lambda controls, origin, card: controls.promote(origin, card),
    Action.ROLLBACK: lambda controls, origin, card: controls.abort(origin, gate="relay", card=card),
    Action.KILL: lambda controls, origin, card: controls.abort(origin, gate="desktop", card=card),
    Action.EXTEND_WINDOW: lambda controls, origin, card: controls.extend(
        origin, card, by=EXTEND_STEP
    ),
    Action.REEVALUATE: lambda controls, origin, card: controls.reevaluate(origin, card),
    Action.RERUN_FAILURE_JOB: lambda controls, origin, card: controls.rerun_failure_job(
        origin, card
    ),
}


def _card(click: BlockActions) -> CardRef:
    """What the clicked button acts on (its typed value)."""
    return card_of(ButtonValue.decode(click.action.value))


def _stage(card: CardRef) -> tuple[str, str]:
    if card.track is None or card.stage is None:
        raise InvalidPayload("This button names no stage; refresh the card and try again.")
    return card.track, card.stage


async def _controls(
    directory: ServiceDirectory, click: BlockActions, card: CardRef, origin: Origin
) -> ControlService:
    """The controls of the service whose rollout the card is of."""
    async with directory.refusal_audited(origin, click.action.action_id):
        services = await directory.of_rollout(card.rollout_id, channel_id=click.channel_id)
    return services.controls


def _clicked(directory: ServiceDirectory, act: Click) -> Listener:
    async def clicked(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        click = parse(BlockActions, body)
        card, origin = _card(click), click_origin(click, request)
        await act(await _controls(directory, click, card, origin), origin, card)

    return acknowledged(directory.telemetry)(clicked)


async def _answer_form(
    telemetry: Telemetry,
    client: AsyncWebClient,
    form: ViewSubmission,
    request: AsyncBoltRequest,
    channel: str | None,
    act: Callable[[Origin], Awaitable[object]],
) -> None:
    """Run a submitted (and acknowledged) form's control call; its refusal or error goes to
    the submitter, ephemerally, in the channel the form was opened from."""
    try:
        await act(form_origin(form, request, channel_id=channel))
    except Exception as error:
        failure_outcome(error, telemetry)  # a form is not a click: only a refusal is counted
        text, blocks = explain(error, form.model_dump(mode="json"))
        if not channel:
            return
        with contextlib.suppress(SlackApiError):  # a lost answer; `explain` logged the error
            await client.chat_postEphemeral(
                channel=channel, user=form.user.id, text=text, blocks=blocks
            )


async def _extend_form(controls: ControlService, origin: Origin, card: CardRef) -> ViewJson:
    track, stage = _stage(card)
    rollout, plan = await controls.open_form(origin, Control.EXTEND_BY, card)
    return control_views.extend_modal(
        rollout, plan, track=track, stage=stage, channel_id=origin.channel_id
    )


async def _figures_form(controls: ControlService, origin: Origin, card: CardRef) -> ViewJson:
    track, stage = _stage(card)
    rollout, plan = await controls.open_form(origin, Control.FIGURES, card)
    return figures_modal.figures_modal(rollout, plan, track, stage)


async def _link_form(controls: ControlService, origin: Origin, card: CardRef) -> ViewJson:
    rollout, plan = await controls.open_form(origin, Control.LINK_RUN, card)
    return control_views.link_modal(rollout, plan, channel_id=origin.channel_id)


async def _override_form(controls: ControlService, origin: Origin, card: CardRef) -> ViewJson:
    rollout, _ = await controls.open_form(origin, Control.OVERRIDE_FREEZE, card)
    return control_views.override_modal(
        replace(rollout, version=card.version or rollout.version), channel_id=origin.channel_id
    )


async def _redeploy_form(controls: ControlService, origin: Origin, card: CardRef) -> ViewJson:
    offer = await controls.redeploy_offer(origin, card)
    return control_views.redeploy_modal(offer, channel_id=origin.channel_id)


async def _contents_list(controls: ControlService, origin: Origin, card: CardRef) -> ViewJson:
    return contents_view.contents_modal(await controls.release_contents(card.rollout_id))


Form = Callable[[ControlService, Origin, CardRef], Awaitable[ViewJson]]
"""What a button that opens a form does: checks with the controls that the clicker may act on
the card now, and draws the modal."""

FORMS: dict[Action, Form] = {
    Action.EXTEND_CUSTOM: _extend_form,
    Action.ENTER_FIGURES: _figures_form,
    Action.REDEPLOY: _redeploy_form,
    Action.LINK_RUN: _link_form,
    Action.OVERRIDE_FREEZE: _override_form,
    Action.SHOW_CONTENTS: _contents_list,
}


def _opens(directory: ServiceDirectory, form: Form) -> Listener:
    async def draw(click: BlockActions, request: AsyncBoltRequest) -> ViewJson:
        card, origin = _card(click), click_origin(click, request)
        return await form(await _controls(directory, click, card, origin), origin, card)

    return opens_form(directory.telemetry, draw)


def register(routes: Routes, directory: ServiceDirectory) -> None:
    for action, act in CLICKS.items():
        routes.action(action)(_clicked(directory, act))
    for action, form in FORMS.items():
        routes.action(action)(_opens(directory, form))
    for callback, submission in SUBMISSIONS.items():
        routes.view(callback)(_submitted(directory, submission))


_FOREIGN_FORM = "This form was not made by this bot (or by an older version): open it again."

Metadata = TypeVar(
    "Metadata",
    FiguresMetadata,
    ExtendMetadata,
    RedeployMetadata,
    LinkMetadata,
    OverrideMetadata,
    AdoptOverrideMetadata,
)
Typed = TypeVar("Typed")


def _metadata(model: type[Metadata], form: ViewSubmission) -> Metadata | None:
    """The form's private_metadata as the bot wrote it, or None (a forged or foreign form)."""
    try:
        return model.decode(form.view.private_metadata)
    except InvalidPayload:
        return None


@dataclass(frozen=True)
class Submission(Generic[Metadata, Typed]):
    """How one submitted form is checked before Slack is answered, and what it does after."""

    metadata: type[Metadata]
    read: Callable[[Mapping[str, Any]], tuple[Typed | None, dict[str, str]]]
    """The typed input, or Slack's `errors` keyed by block id."""
    block: str | None
    """The input block an error hangs on; None: the dialog has no input, and a foreign form
    turns into the explanation instead."""
    act: Callable[[ControlService, Origin, Metadata, Typed], Awaitable[object]]
    control: Control | None = None
    """Checked before the answer, so the form itself says who may submit it."""


def _confirmed(_: Mapping[str, Any]) -> tuple[bool, dict[str, str]]:
    """A dialog without inputs: submitting it is the confirmation."""
    return True, {}


SUBMISSIONS: dict[Callback, Submission[Any, Any]] = {
    Callback.FIGURES: Submission(
        FiguresMetadata,
        figures_modal.parse_figures,
        figures_modal.CRASH_RATE_BLOCK,
        lambda controls, origin, meta, figures: controls.submit_figures(
            origin, CardRef(meta.rollout_id, meta.track, meta.stage), figures, window=meta.window
        ),
        control=Control.FIGURES,
    ),
    Callback.EXTEND: Submission(
        ExtendMetadata,
        control_views.parse_extension,
        control_views.DURATION_BLOCK,
        lambda controls, origin, meta, by: controls.extend(
            origin,
            CardRef(meta.rollout_id, meta.track, meta.stage, meta.version),
            by=by,
            control=Control.EXTEND_BY,
        ),
        control=Control.EXTEND_BY,
    ),
    Callback.REDEPLOY: Submission(
        RedeployMetadata,
        _confirmed,
        None,
        lambda controls, origin, meta, _: controls.redeploy(
            origin, CardRef(meta.rollout_id, meta.track), tag=meta.tag
        ),
    ),
    Callback.LINK_RUN: Submission(
        LinkMetadata,
        control_views.parse_link,
        control_views.LINK_BLOCK,
        lambda controls, origin, meta, run: controls.link_run(
            origin, run, CardRef(meta.rollout_id)
        ),
        control=Control.LINK_RUN,
    ),
    Callback.OVERRIDE_FREEZE: Submission(
        OverrideMetadata,
        control_views.parse_reason,
        control_views.REASON_BLOCK,
        lambda controls, origin, meta, reason: controls.lane.override_freeze(
            origin, CardRef(meta.rollout_id, version=meta.version), reason=reason
        ),
        control=Control.OVERRIDE_FREEZE,
    ),
    Callback.OVERRIDE_ADOPT: Submission(
        AdoptOverrideMetadata,
        control_views.parse_reason,
        control_views.REASON_BLOCK,
        lambda controls, origin, meta, reason: _adopt_overriding(controls, origin, meta, reason),
        control=Control.ADOPT,
    ),
}


async def _adopt_overriding(
    controls: ControlService, origin: Origin, meta: AdoptOverrideMetadata, reason: str
) -> object:
    """The Override freeze… form of a refused Adopt: adopt the run through the freeze."""
    runs = controls.unfollowed
    if runs is None:
        raise InvalidCommand(APP_ONLY)
    return await runs.adopt(origin, meta.run_id, override=reason)


async def _form_controls(
    directory: ServiceDirectory,
    metadata: FiguresMetadata
    | ExtendMetadata
    | RedeployMetadata
    | LinkMetadata
    | OverrideMetadata
    | AdoptOverrideMetadata
    | None,
) -> ControlService:
    """The controls of the service the form's rollout (or run) is of; a foreign form's are the
    first service's (it is refused before any of them acts)."""
    if metadata is None:
        services = directory.each[0]
    elif isinstance(metadata, AdoptOverrideMetadata):
        services = await directory.of_run(metadata.run_id, channel_id=metadata.channel_id)
    else:
        services = await directory.of_rollout(metadata.rollout_id, channel_id=metadata.channel_id)
    return services.controls


def _submitted(directory: ServiceDirectory, submission: Submission[Any, Any]) -> Listener:
    async def submitted(
        ack: AsyncAck, body: dict[str, Any], request: AsyncBoltRequest, client: AsyncWebClient
    ) -> None:
        form = parse(ViewSubmission, body)
        metadata = _metadata(submission.metadata, form)
        typed, errors = submission.read(form.values())
        block = submission.block
        if block is None and metadata is None:
            await ack(response_action="update", view=control_views.notice_modal(_FOREIGN_FORM))
            return
        origin = form_origin(form, request, channel_id=metadata.channel_id if metadata else None)
        name, refused = submission.control or form.view.callback_id, None
        until = check_deadline()
        try:
            async with asyncio.timeout_at(until), directory.refusal_audited(origin, name):
                controls = await _form_controls(directory, metadata)
        except ServiceNotConfigured as gone:  # a form of a service removed since it opened
            await ack(response_action="update", view=control_views.notice_modal(gone.message))
            return
        except TimeoutError:  # answered before Slack stops waiting, and nothing done after
            log.warning("the rollout of a %s form was not looked up in time", form.view.callback_id)
            if block is None:
                await ack(response_action="update", view=control_views.notice_modal(LOOKUP_SLOW))
            else:
                await ack(response_action="errors", errors={block: LOOKUP_SLOW})
            return
        if block is not None and metadata is None:
            errors = {block: _FOREIGN_FORM}
        elif metadata is not None:
            refused = await sender_refusal(
                controls, form, metadata, submission.control, until=until
            )
            if refused is not None and block is None:  # a dialog: it turns into the reason
                await ack(response_action="update", view=control_views.notice_modal(refused))
                return
            # A field error is plain text: a mention in it would show as `<@U123>`.
            errors = {block: plain_answer(refused)} if refused is not None and block else errors
        if typed is None or errors or metadata is None:
            await ack(response_action="errors", errors=errors)
            if metadata is not None and refused != CHECK_SLOW:  # as a refused command is
                await audit_form(controls.audited, origin, name, metadata, refused, errors)
            return
        await ack()
        await _answer_form(
            directory.telemetry,
            client,
            form,
            request,
            metadata.channel_id,
            lambda origin: submission.act(controls, origin, metadata, typed),
        )

    return submitted
