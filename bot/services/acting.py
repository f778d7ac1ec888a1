"""The effect acting under a claim, in the context of the task that acts (`ExactlyOnce.once`):
what its steps tell the claim as they go (a call whose outcome may be unclear sent, a change
saved before a later step failed), and how the claim ends when the effect failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from bot.domain.controls import DoneButOwed
from bot.domain.rollout import CancelWindow, Effect, Review
from bot.services.ports import Clock
from bot.services.records import Claim
from bot.services.store_ports import Claims

T = TypeVar("T")

AFTER_SAVE = "A step after it failed: the bot's next look at the run does it."
"""Owed by an effect saved when a step after its save failed, and nothing more is known."""

SHOWN = "the card shows it"
ON_GITHUB = "on GitHub; the card may not show it yet"
"""Where what an effect did shows, when a step after it failed (`saved_then_failed`)."""


@dataclass
class Acting:
    """The claim an effect acts under (`ExactlyOnce.once`), and whether its call whose outcome
    may be unclear went out (`ExactlyOnce.sending`)."""

    claim: Claim
    sent: bool = False
    owed: str | None = None
    """Its change was saved (or sent to GitHub), then a later step failed: what is still owed,
    in words (`saved_then_failed`)."""
    where: str = SHOWN
    """Where what was done shows (`SHOWN`, `ON_GITHUB`)."""

    async def failed(
        self, claims: Claims, *, now: datetime, what: str, error: BaseException
    ) -> None:
        """The effect (`what`, in words) failed with `error`: its claim is given back, so the
        request can be repeated; unless its change was saved before an error (`owed`): then
        the claim is recorded done, and the person told what was done and what is still owed."""
        if self.owed is None or not isinstance(error, Exception):
            await asyncio.shield(claims.release(self.claim))
            return
        await asyncio.shield(claims.complete(self.claim, now=now))
        raise DoneButOwed(f"Done: {what} ({self.where}). {self.owed}") from error


acting_now: ContextVar[Acting | None] = ContextVar("exactly_once_acting", default=None)
"""The effect the task acts for, under its claim (None outside `ExactlyOnce.once`)."""


def saved_then_failed(owed: str = AFTER_SAVE, *, where: str = SHOWN) -> None:
    """Called once the effect acting under a claim (if any) is done: saved, or sent to GitHub
    before its save (`where` it shows). Should a later step fail, its claim is recorded done,
    not given back as if nothing was done (a waiting click would act again), and the person
    told it was done, where, and what is `owed` (in words)."""
    acting = acting_now.get()
    if acting is not None:
        acting.owed, acting.where = owed, where


async def acted(saving: Awaitable[T]) -> T:
    """`saving`, a save the effect acting under a claim (if any) makes: once it went through,
    a later step's failure leaves the effect done (`saved_then_failed`)."""
    done = await saving
    saved_then_failed()
    return done


async def still_held(claims: Claims, claim: Claim, *, clock: Clock) -> bool:
    """Whether the effect acting under `claim` may still send its one call whose outcome may be
    unclear (a re-run's POST, a Release's dispatch): the claim is its own still (not given
    back, nor taken over by another click) with at least half its lease left. A call sent
    later could outlive the lease, and a click that took the claim over then, finding no trace
    of it yet, would send it again. What is left is reckoned after the claim's read, on the
    clock that wrote `claim`: a stall during that read counts too."""
    held = await claims.get(claim.key)
    left = claim.claimed_at + claims.lease - clock()
    return held is not None and held.holder == claim.holder and left >= claims.lease / 2


def put_back() -> None:
    """The effect acting under a claim (if any), saved, was put back after all (a stop GitHub
    made void on every track), or what was saved only readied it (a stage saved evaluating
    before a Re-evaluate's verdict): should it fail now, its effect was not done, and its claim
    is given back."""
    acting = acting_now.get()
    if acting is not None:
        acting.owed = None


def owed_after(left: Sequence[Effect]) -> str:
    """What a saved decision still owes when one of its effects failed (`left`: that effect
    and those after it, none carried out), in words. The timer of a window it starts or moves
    is never owed: it was written with the save (`EffectRunner.apply`)."""
    owed = []
    if any(isinstance(effect, Review) for effect in left):
        owed.append(
            "GitHub's answer to the run could not be given (or recorded) right after: the "
            "bot's next look at the run gives it while GitHub still waits for it."
        )
    if any(isinstance(effect, CancelWindow) for effect in left):
        owed.append("A window's old timer could not be cancelled right after: it changes nothing.")
    return " ".join(owed) or AFTER_SAVE
