"""Exactly once: a Slack delivery acted on once, an effect claimed by one winner across replicas.

A delivery (its `trigger_id` and the digest of what Slack sent, `handlers.origin.delivery`)
is remembered as a completed claim, so a repeat of it is told who did what and when. An
effect's key (`bot.domain.controls.effect_key`) is claimed in the database before its one
service call, completed after it, or released when the call failed so the click can be
repeated. A claim whose answer the database lost was withdrawn by the store: the person is
told nothing was done (`NothingDone`), not that it may have been. Whoever loses a claim waits
for the winner and is told "already done by @someone at <time>"; when the winner failed and
changed nothing, the request acts after all, and is told its own outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from bot.domain.controls import (
    AlreadyDone,
    BeingDone,
    CardRef,
    Control,
    NothingDone,
    StaleCard,
    delivery_key,
    effect_key,
)
from bot.domain.errors import (
    PromotedWhileStopping,
    RerunLaneTaken,
    RerunNotSeen,
    RerunUnclear,
    RerunUnsaved,
    RolloutError,
    RunNotIdentified,
)
from bot.domain.permissions import VERBS
from bot.domain.rollout import InvalidTransition, Rollout
from bot.services.acting import Acting, acting_now, still_held
from bot.services.ports import Clock
from bot.services.records import BOT, Claim, ClaimState, ClaimUnsettled
from bot.services.requests import Origin, Via, current_entry, fill
from bot.services.stop_waiting import NAMED, StopOutcomes, waited_on
from bot.services.store_ports import Claims
from bot.services.words import Words

T = TypeVar("T")


log = logging.getLogger(__name__)


class ExactlyOnce:
    """Claims deliveries and effects, and answers whoever comes second."""

    def __init__(
        self,
        *,
        claims: Claims,
        clock: Clock,
        words: Words,
        holder_wait: timedelta = timedelta(seconds=10),
        poll_interval: float = 0.1,
        stops: StopOutcomes | None = None,
    ) -> None:
        self._claims = claims
        self._stops = stops
        self._clock = clock
        self._words = words
        self._holder_wait = holder_wait.total_seconds()
        self._poll_interval = poll_interval

    async def delivery(
        self,
        origin: Origin,
        control: Control,
        card: CardRef | None = None,
        what: str | None = None,
    ) -> None:
        """A Slack delivery is acted on once: a repeat of it (the same trigger_id and body) is
        told who did `what` (the effect in words) and when."""
        entry = current_entry.get()
        if origin.delivery is None or (entry is not None and entry.delivered):
            return
        key = delivery_key(origin.delivery)
        try:
            seen = await self._claims.claim(
                key=key,
                action=f"delivery:{control}",
                actor=origin.actor,
                now=self._clock(),
                rollout_id=card.rollout_id if card else None,
                done=True,
            )
        except ClaimUnsettled as lost:
            raise nothing_done(self._words, lost, what or VERBS[control]) from lost
        if seen is None:
            first = await self._claims.get(key)
            fill(rollout_id=first.rollout_id if first is not None else None)
            raise await self._repeated(origin, control, card, what, first)
        if entry is not None:
            entry.delivered = True

    async def once(
        self,
        origin: Origin,
        control: Control,
        card: CardRef,
        what: str,
        act: Callable[[], Awaitable[T]],
        *,
        wait: bool = True,
        moved_past: str | None = None,
        given_back: Callable[[], Awaitable[object]] | None = None,
    ) -> T:
        """Claim the effect `control` on `card` (`what`, in words), then `act` once. Whoever
        holds the claim is waited for, unless not `wait` (then `BeingDone` at once).
        `moved_past`: where the rollout stands, when `card` is a version it has moved past;
        a claim an earlier click never recorded done is then refused in the claim's own
        statement, not taken over (its lease may run out after any earlier look).
        `given_back`: the holder gave the claim back: raises, under it, if this must not act."""
        key = effect_key(control, card)
        claim: Claim | None = None
        regained = False
        for _ in range(3):  # a claim released between our INSERT and our read: try again
            try:
                claim = await self._claims.claim(
                    key=key,
                    action=control.value,
                    actor=origin.actor,
                    now=self._clock(),
                    rollout_id=card.rollout_id,
                    track=card.track,
                    stage=card.stage,
                    take_over=moved_past is None,
                )
            except ClaimUnsettled as lost:
                raise nothing_done(self._words, lost, what) from lost
            if claim is not None:
                break
            held = await self._claims.get(key)
            if held is not None and moved_past is not None and self._lapsed(held):
                raise self._stale(held, what, moved_past)
            if held is not None:
                settled, named = await self._waited_on(held, origin.actor, wait=wait)
                if settled is None and wait:
                    # Its holder failed (maybe after a save: `given_back`): this request acts,
                    # told its own outcome, not sent to the holder's answer they never see.
                    regained = True
                    continue
                raise await self._told(held, settled, what, named=named)
        if claim is None:
            raise InvalidTransition("Others are trying this very action right now: try again.")
        acting = Acting(claim)
        entered = acting_now.set(acting)
        try:
            if regained and given_back is not None:
                await given_back()
            result = await act()
        except (RunNotIdentified, PromotedWhileStopping, RerunUnclear, RerunLaneTaken):
            # The dispatch may have started a run, the approval is on GitHub, the job may have
            # been (or was) re-run: never invite a second one.
            await self._claims.complete(claim, now=self._clock())
            raise
        except (RerunUnsaved, RerunNotSeen) as unsaved:
            # GitHub re-runs (or may yet re-run) the job, and the rollout does not follow it:
            # the claim is left unrecorded, so the click after its lease follows that attempt,
            # sending nothing (or, when GitHub never made it, asks for it then).
            lapses = self._words.slack_time(claim.claimed_at + self._claims.lease)
            unsaved.message = (
                f"{unsaved.message} Click it again after {lapses}: the bot then follows the "
                "attempt GitHub made (or, if none, asks for it again)."
            )
            unsaved.args = (unsaved.message,)
            raise
        except BaseException as stopped:
            if acting.sent and not isinstance(stopped, Exception):
                # Interrupted (a shutdown cancels the work in flight) once its call went out:
                # that call may have acted, so the claim is left unrecorded, as a bot that died
                # leaves it, for the click after its lease to look before acting again.
                log.warning("%s interrupted after its call went out: its claim is kept", key)
                raise
            await acting.failed(self._claims, now=self._clock(), what=what, error=stopped)
            raise
        finally:
            acting_now.reset(entered)
        await self._claims.complete(claim, now=self._clock())
        return result

    async def sending(self) -> datetime | None:
        """Called by an effect right before its one call whose outcome may be unclear (a
        re-run's POST): refused, nothing sent, unless its claim is `still_held`; from then
        on an interruption (a shutdown's cancellation) keeps the claim instead of releasing it.
        Returns when the claim's lease runs out (None when not under a claim)."""
        acting = acting_now.get()
        if acting is None:  # not under a claim
            return None
        mine = acting.claim
        if not await still_held(self._claims, mine, clock=self._clock):
            raise InvalidTransition(
                "This click waited too long before the bot could send it (its claim ran out, "
                "or was about to): nothing was sent. Click again."
            )
        acting.sent = True
        return mine.claimed_at + self._claims.lease

    async def done_by(
        self, control: Control, card: CardRef, what: str, *, asker: str
    ) -> RolloutError | None:
        """Who did (or is doing) the effect `asker` asks for, waited for; None if nobody."""
        claim = await self._claims.get(effect_key(control, card))
        return None if claim is None else await self._already(claim, what, asker=asker)

    async def unsure(
        self, control: Control, card: CardRef, what: str, where: str
    ) -> StaleCard | None:
        """The refusal of a click on a card the rollout has moved past, when an earlier click
        claimed the same effect and never recorded it done (its done write failed, or its
        replica died) and the claim's lease has run out: that click may have acted, so taking
        its claim over could act twice. None when no such claim holds the effect's key."""
        claim = await self.lapsed(effect_key(control, card))
        return None if claim is None else self._stale(claim, what, where)

    def _stale(self, claim: Claim, what: str, where: str) -> StaleCard:
        return StaleCard(
            f"This card is out of date: {self.unrecorded(claim, what)} {where} Use the buttons "
            "on the updated card, or `/rollout status`."
        )

    async def under_way(self, key: str) -> Claim | None:
        """The claim on `key` while its request may be at work: claimed, not recorded done,
        its lease not run out."""
        claim = await self._claims.get(key)
        if claim is None or claim.state is not ClaimState.CLAIMED or self._lapsed(claim):
            return None
        return claim

    async def lapsed(self, key: str) -> Claim | None:
        """The claim on `key` whose request never recorded it done (its done write failed, or
        its replica died) and whose lease ran out: that request may have acted. None when no
        such claim holds the key (a claim still held: its owner may be at work)."""
        claim = await self._claims.get(key)
        return claim if claim is not None and self._lapsed(claim) else None

    def _lapsed(self, claim: Claim) -> bool:
        lapses = claim.claimed_at + self._claims.lease
        return claim.state is ClaimState.CLAIMED and self._clock() >= lapses

    def unrecorded(self, claim: Claim, what: str) -> str:
        """Who clicked, when and to do `what`, under a claim that was never recorded done."""
        at = self._words.slack_time(claim.claimed_at)
        return (
            f"{self._who(claim.actor)} clicked it at {at} to {what}, and the bot could not record "
            "whether that was done."
        )

    def when(self, at: datetime) -> str:
        """`at`, as a person reads it in an answer."""
        return self._words.slack_time(at)

    async def _repeated(
        self,
        origin: Origin,
        control: Control,
        card: CardRef | None,
        what: str | None,
        first: Claim | None,
    ) -> RolloutError:
        """The answer to a delivery seen before. Slack re-sends a command it got no answer to
        (marked with its retry number), but never a click: a click seen twice is a double
        click or a replay, so the answer names what was done, by whom and when."""
        when = f" at {self._words.slack_time(first.claimed_at)}" if first is not None else ""
        who = self._who(first.actor) if first is not None else "someone"
        if origin.via is Via.COMMAND and origin.retry:
            return AlreadyDone(
                f"Already done by {who}{when}: Slack delivered this request again "
                f"(retry {origin.retry}), and it is handled once."
            )
        described = what or VERBS[control]
        held = await self._claims.get(effect_key(control, card)) if card is not None else None
        if held is not None:  # the same click again: its first answer is on its way
            return await self._already(held, described, asker=origin.actor, wait=False)
        return AlreadyDone(f"Already done by {who}{when}: {described}. Nothing more was done.")

    async def _already(
        self, held: Claim, what: str, *, asker: str, wait: bool = True
    ) -> RolloutError:
        """Wait for the claim's owner to finish (unless not `wait`), then say who did it and
        when, or who is doing it (`asker` recorded as waiting on it: `_waited_on`)."""
        settled, named = await self._waited_on(held, asker, wait=wait)
        return await self._told(held, settled, what, named=named)

    async def _waited_on(self, held: Claim, asker: str, *, wait: bool) -> tuple[Claim | None, bool]:
        """The claim `held` as `_settled` leaves it, and whether `asker` is recorded as waiting
        on its outcome (`bot.services.stop_waiting.waited_on`)."""
        claim = await self._settled(held, wait=wait)
        return await waited_on(self._stops, claim, asker, partial(self._settled, wait=wait))

    async def _settled(self, held: Claim, *, wait: bool) -> Claim | None:
        """The claim `held` once its owner finished (waited for unless not `wait`), or as it
        stands when the wait ran out (still claimed); None when its owner gave it back."""
        claim: Claim | None = held
        deadline = time.monotonic() + (self._holder_wait if wait else 0.0)
        while claim is not None and claim.state is ClaimState.CLAIMED:
            if time.monotonic() >= deadline:
                return claim
            await asyncio.sleep(self._poll_interval)
            claim = await self._claims.get(held.key)
        return claim

    async def _told(
        self, first: Claim, claim: Claim | None, what: str, *, named: bool = False
    ) -> RolloutError:
        """What whoever came second is told of the claim `first` as it now stands (`claim`,
        `_settled`): being done (`named`: waited on, `StopOutcomes`), done (but a stop put
        back on some tracks, by whichever replica settled it, says so), or failed by its owner."""
        at = self._words.slack_time
        if claim is not None and claim.state is ClaimState.CLAIMED:
            lapses = at(claim.claimed_at + self._claims.lease)
            return BeingDone(
                f"Already being done by {self._who(claim.actor)} since {at(claim.claimed_at)}: "
                f"{what}. The card shows the outcome.{NAMED if named else ''} If the bot "
                f"stopped in the middle of it, its claim lapses at {lapses}: click again after "
                "that."
            )
        if claim is None:
            return InvalidTransition(
                f"{self._who(first.actor, start=True)} tried to {what} at "
                f"{at(first.claimed_at)} but it failed and changed nothing (their answer says "
                "why). Click again to retry."
            )
        undone = None if self._stops is None else await self._stops.put_back_of(claim)
        did = self._words.stop_put_back_answer(undone) if undone else ". Nothing more was done."
        who, done_at = self._who(claim.actor), claim.done_at or claim.claimed_at
        return AlreadyDone(f"Already done by {who} at {at(done_at)}: {what}{did}")

    def _who(self, actor: str, *, start: bool = False) -> str:
        """Who holds a claim, for an answer (`start`: opening a sentence): the person, or the
        bot's schedule (the only claims the bot takes on its own are scheduled dispatches)."""
        if actor != BOT:
            return self._words.person(actor)
        return "The bot's schedule" if start else "the bot's schedule"


async def rerun_under_way(once: ExactlyOnce, rollout: Rollout | None) -> bool:
    """Whether a failure job of `rollout` (ended, its run's failure job failed) is being
    re-run right now: claimed, not yet recorded done (the rollout is saved as following
    the new attempt just before), the claim's lease not run out."""
    if rollout is None or rollout.attempt is None:
        return False
    for track in rollout.tracks:
        card = CardRef(rollout.id, track.name, attempt=rollout.attempt)
        if await once.under_way(effect_key(Control.RERUN_FAILURE_JOB, card)) is not None:
            return True
    return False


def nothing_done(words: Words, lost: ClaimUnsettled, what: str) -> NothingDone:
    """The truth after a claim whose answer was lost: what lost it (the connection, or a wait
    that ran out: a burst of clicks), that nothing was done; whether the claim was withdrawn,
    or until when it may tell a repeat that it is being done."""
    cause = (
        "The bot's database did not answer the bot in time"
        if lost.timed_out
        else "The bot lost its connection to its database"
    )
    told = f"{cause} while it took this request ({what}), before acting on it: nothing was done."
    if lost.withdrawn:
        return NothingDone(f"{told} Try again.")
    until = words.slack_time(lost.held_until)
    return NothingDone(
        f"{told} The database may still hold the request as under way until {until} (it "
        f"could not be withdrawn): until then, a try is told it is being done. Try again "
        f"after {until}."
    )
