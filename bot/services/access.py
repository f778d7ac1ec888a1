"""The controls' door: who may act (applying `bot.domain.permissions`), and each request's audit.

Every command, click and form passes here: it is refused from outside the release channels and
from people who are not approvers; a click on a stale card is told where the rollout stands now
(or who did it); the plan's two-person rule is applied; a dispatch is refused while the release
lane is frozen or locked by someone else (`bot.services.lane`). Whatever the outcome, the
request is one audit event (`click:promote`, `command:status`, ...).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bot.domain.controls import (
    AlreadyDone,
    CardRef,
    Control,
    StaleCard,
    card_applies,
    describe,
    effect_key,
    figures_card,
    once_per_version,
)
from bot.domain.errors import NotAReleaseChannel, NotAuthorized, RolloutError
from bot.domain.permissions import Asker, Refused, refusal
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import InvalidTransition, Phase, Rollout
from bot.services.actions import where_it_stands
from bot.services.authz import Approvers
from bot.services.exactly_once import ExactlyOnce
from bot.services.failures import TRANSIENT, log_failure
from bot.services.lane import ReleaseLane
from bot.services.outbox_messages import CARD
from bot.services.outbox_messages import card as card_redraw
from bot.services.ports import Clock
from bot.services.records import Claim
from bot.services.requests import Entry, Origin, current_entry
from bot.services.rollouts import RolloutService
from bot.services.store_ports import AuditLog
from bot.services.words import Words

log = logging.getLogger(__name__)

FORM_OUTSIDE_RELEASE_CHANNELS = (
    "This form was opened in a channel that is no longer a release channel of this service "
    "(its settings changed since), so nothing was changed. Steer the rollout from a release "
    "channel, or ask your bot admin to add that channel back."
)


@dataclass(frozen=True, kw_only=True)
class Access:
    """Admits a person's request, or refuses it saying why; records it in the audit trail."""

    rollouts: RolloutService
    approvers: Approvers
    release_channels: tuple[str, ...]
    once: ExactlyOnce
    audit: AuditLog
    clock: Clock
    lane: ReleaseLane

    @contextlib.asynccontextmanager
    async def audited(
        self,
        origin: Origin,
        name: str,
        *,
        rollout_id: str | None = None,
        track: str | None = None,
        stage: str | None = None,
    ) -> AsyncIterator[None]:
        """Record the request's outcome as one audit event (`click:promote`, `command:status`):
        `ok`, `refused`, `stale`, `duplicate`, or the error's code. A control called while a
        command is being recorded adds what it acts on to the command's event."""
        outer = current_entry.get()
        if outer is not None:
            outer.fill(rollout_id=rollout_id, track=track, stage=stage)
            yield
            return
        entry = Entry(origin, name, rollout_id, track, stage)
        if origin.retry:
            entry.detail["slack_retry"] = origin.retry
        token = current_entry.set(entry)
        result = "ok"
        try:
            yield
        except Exception as error:
            result, why = _outcome(error, self.rollouts.words)
            entry.detail.update(why)
            raise
        except BaseException:
            result = "interrupted"  # shut down mid-request
            raise
        finally:
            current_entry.reset(token)
            if not (entry.recorded and result == "ok"):  # else written with its change
                await self.audit.append(
                    at=self.clock(),
                    actor=origin.actor,
                    action=f"{origin.via}:{name}",
                    result=result,
                    rollout_id=entry.rollout_id,
                    track=entry.track,
                    stage=entry.stage,
                    detail=entry.detail or None,
                )

    @contextlib.asynccontextmanager
    async def on_card(self, origin: Origin, name: str, card: CardRef) -> AsyncIterator[None]:
        """A request on `card`, recorded as `audited`; refused as out of date on a card behind
        the stored rollout, the card is drawn again first (`catch_up`)."""
        scope = {"rollout_id": card.rollout_id, "track": card.track, "stage": card.stage}
        async with self.audited(origin, name, **scope):
            try:
                yield
            except StaleCard:
                if card.version is not None:
                    await self.catch_up(card.rollout_id, shown=card.version)
                raise

    async def catch_up(self, rollout_id: str, *, shown: int) -> None:
        """A card a click showed at version `shown`, behind the stored rollout, with no redraw
        of it owed (its replica died between a save and the redraw): drawn again from the
        rollout as it stands before the answer, so that the updated card the answer points to
        exists. Nothing is saved (the claims keyed by the stored version stay as they are), so
        any replica may do it, as often: a card is drawn at delivery, a redraw a later one
        supersedes is skipped, and none is a new post. Failing, the answer still goes."""
        outbox = self.rollouts.effects.outbox
        try:
            rollout = await self.rollouts.get(rollout_id)
            if rollout.version <= shown:
                return
            if any(m.kind == CARD for m in await outbox.store.pending(rollout_id)):
                return  # its redraw is on its way
            log.warning(
                "card of %s clicked at version %d of %d: drawn again",
                rollout_id,
                shown,
                rollout.version,
            )
            await outbox.send([card_redraw(rollout)])
        except TRANSIENT as error:
            log_failure(log, f"the card of {rollout_id} was not drawn again", error)

    async def admit(self, origin: Origin, control: Control) -> None:
        """Refuse requests from outside the release channels and from non-approvers."""
        await self._judge(origin, control)

    async def form_refusal(
        self, *, actor: str, channel_id: str, control: Control | None
    ) -> str | None:
        """Why `actor` may not submit a form opened in `channel_id` (nor, for `control`, take
        it), or None when they may: the words a form shows next to its input. The channel is
        checked again, as a click's is: it may have left the release channels (the settings or
        the services file changed, the bot restarted) since the form opened."""
        if channel_id not in self.release_channels:
            return FORM_OUTSIDE_RELEASE_CHANNELS
        if control is None:
            return None
        asker = Asker(
            actor=actor, channel_id=channel_id, approver=await self.approvers.is_approver(actor)
        )
        refused = refusal(control, asker, release_channels=self.release_channels)
        return refused.message if refused is not None else None

    async def checked(
        self, origin: Origin, control: Control, card: CardRef
    ) -> tuple[Rollout, RolloutPlan]:
        """The rollout and its plan, once the request is allowed and the card still applies."""
        asker = await self._judge(origin, control)
        rollout = await self.rollouts.get(card.rollout_id)
        plan = await self.rollouts.plan_of(rollout)
        refused = refusal(
            control,
            asker,
            release_channels=self.release_channels,
            rollout=rollout,
            plan=plan,
            card=card,
        )
        where = self.moved_past(card, rollout, plan)
        if where is not None or (refused is not None and refused.why is Refused.STALE):
            # An effect an earlier click claimed and never recorded done may have happened: on
            # a card the rollout moved past, a click is refused rather than acting again (and
            # its claim refuses it too, should that claim's lease run out after this look).
            where = where or where_it_stands(rollout, plan, self.rollouts.words)
            what = describe(control, rollout, plan, card)
            unsure = await self.once.unsure(control, card, what, where)
            if unsure is not None:
                raise unsure
        if refused is not None and refused.why is Refused.STALE:
            raise await self._stale(control, rollout, plan, card, asker=origin.actor)
        if refused is not None and refused.two_person is not None:
            raise NotAuthorized(self.rollouts.words.two_person_text(refused.two_person))
        if refused is not None:
            raise NotAuthorized(refused.message)
        if control is Control.LINK_RUN and (asked := await self._dispatch_under_way(rollout)):
            raise InvalidTransition(
                f"The bot is asking GitHub to dispatch `{rollout.tag}` right now (since "
                f"{self.once.when(asked.claimed_at)}), so nothing was linked: the card shows the "
                "run once GitHub answers. Link a run only if the card then says its run is not "
                "identified."
            )
        # A freeze or someone else's lock refuses a dispatch, and a run linked to a rollout
        # back in its preflight (the bot gave up): linking approves the run's first stages.
        if control is Control.DISPATCH or (
            control is Control.LINK_RUN and rollout.phase is Phase.PREFLIGHT
        ):
            linking = control is Control.LINK_RUN
            await self.lane.judge(actor=origin.actor, rollout_id=rollout.id, linking=linking)
        return rollout, plan

    async def _dispatch_under_way(self, rollout: Rollout) -> Claim | None:
        """The claim of the dispatch of `rollout` GitHub is being asked for right now (a
        click's or a schedule's, on any replica): the rollout as that dispatch saved it, one
        version past the card its claim is keyed by. None once GitHub answered (a dispatch
        whose run it did not identify saves the rollout again), or when its replica died and
        the claim's lease ran out."""
        if rollout.phase is not Phase.DISPATCHING:
            return None
        card = CardRef(rollout.id, version=rollout.version - 1)
        return await self.once.under_way(effect_key(Control.DISPATCH, card))

    def moved_past(self, card: CardRef, rollout: Rollout, plan: RolloutPlan) -> str | None:
        """Where the rollout stands, when `card` is a version of it the rollout has moved past
        (a click on it never takes over a claim an earlier click left unrecorded); else None."""
        if card.version is None or card.version == rollout.version:
            return None
        return where_it_stands(rollout, plan, self.rollouts.words)

    async def _judge(self, origin: Origin, control: Control) -> Asker:
        """Who asks, admitted by who they are and where they ask from (else refused)."""
        # Who is an approver is asked of Slack only for a request from a release channel.
        asked_there = origin.channel_id in self.release_channels
        asker = Asker(
            actor=origin.actor,
            channel_id=origin.channel_id,
            approver=asked_there and await self.approvers.is_approver(origin.actor),
        )
        refused = refusal(control, asker, release_channels=self.release_channels)
        if refused is not None and refused.why is Refused.CHANNEL:
            words = self.rollouts.words
            channels = ", ".join(words.channel(channel) for channel in self.release_channels)
            raise NotAReleaseChannel(
                f"Rollouts are steered from the release channels only ({channels}); this came "
                f"from {words.channel(origin.channel_id)}. Use the card or `/rollout` there, or "
                "ask your bot admin to add this channel to RELEASE_CHANNELS."
            )
        if refused is not None:
            raise NotAuthorized(refused.message)
        return asker

    async def _stale(
        self, control: Control, rollout: Rollout, plan: RolloutPlan, card: CardRef, *, asker: str
    ) -> RolloutError:
        """A card whose button no longer applies: who did it (waiting for them to finish), if
        someone did, else where the rollout stands now."""
        what = describe(control, rollout, plan, card)
        done = await self.once.done_by(control, card, what, asker=asker)
        if done is not None:
            return done
        return self._out_of_date(rollout, plan)

    async def unchanged_since(
        self, control: Control, card: CardRef, read: Rollout, plan: RolloutPlan
    ) -> None:
        """Before a request acts that waited for another's claim of its effect, given back:
        that request failed, maybe once it had saved (the window extended, then its timer's
        write lost). An effect once per card version is not done again on a rollout saved
        since this request `read` it, or past its card's version (the other's save may have
        come before that read): refused as out of date, saying where it stands. Figures are
        keyed by their window's end (`figures_card`): taken while that window still waits for
        them, whatever else was saved since."""
        if not once_per_version(control):
            return
        now = await self.rollouts.get(card.rollout_id)
        if control is Control.FIGURES:
            if figures_card(now, card) != card or not card_applies(control, now, plan, card):
                raise self._out_of_date(now, plan)
        elif now.version != read.version or self.moved_past(card, now, plan) is not None:
            raise self._out_of_date(now, plan)

    def _out_of_date(self, rollout: Rollout, plan: RolloutPlan) -> StaleCard:
        return StaleCard(
            f"This card is out of date: {where_it_stands(rollout, plan, self.rollouts.words)} "
            "Use the buttons on the updated card, or `/rollout status`."
        )


def _outcome(error: Exception, words: Words) -> tuple[str, dict[str, Any]]:
    """The request's result and its detail: a known error's answer kept as data (its words
    and the ids they name, no Slack text); of anything else only its kind."""
    if not isinstance(error, RolloutError):
        return "error", {"error": type(error).__name__}
    if isinstance(error, AlreadyDone):
        result = "duplicate"
    elif isinstance(error, StaleCard):
        result = "stale"
    elif isinstance(error, NotAuthorized | NotAReleaseChannel):
        result = "refused"
    else:
        result = error.code
    return result, words.recorded(error.message).detail()
