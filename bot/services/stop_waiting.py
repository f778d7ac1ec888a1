"""Who else asks for a stop (Roll back, Kill-switch) another person's claim is deciding, and
is answered that it is being done: recorded as waiting on its outcome, to be named in the
thread if it is put back (`bot.services.stops.Stops` records and names them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.domain.rollout import StopPutBack
from bot.services.records import Claim, ClaimState


class StopOutcomes(Protocol):
    """What becomes of a stop another person asked for, for whoever else asks for it (`Stops`):
    the only effect a claim's holder may undo after deciding it (put back, GitHub deploying)."""

    async def wait_on(self, claim: Claim, actor: str) -> bool | None:
        """Record `actor`, answered that the claim's effect is being done, as waiting on its
        outcome, to be named if it is put back: True when recorded, False when its outcome was
        settled meanwhile, None when the claim's effect is not a stop (nobody is recorded)."""
        ...

    async def put_back_of(self, claim: Claim) -> StopPutBack | None:
        """What the stop done under `claim` did not do after all, from what is stored (put
        back on some of its tracks); None when it did all it says, or is not a stop."""
        ...


NAMED = (
    " If GitHub makes it void (a last stage it already deploys cannot be stopped) and it is put "
    "back, the thread says so and names you."
)
"""Told to whoever is answered that a stop is being done and waits on its outcome (`wait_on`)."""


async def waited_on(
    stops: StopOutcomes | None,
    claim: Claim | None,
    asker: str,
    again: Callable[[Claim], Awaitable[Claim | None]],
) -> tuple[Claim | None, bool]:
    """The claim as it stands, and whether `asker` is recorded as waiting on its outcome:
    every answer that it is still being done by someone else records them. A stop not
    recorded (settled meanwhile, or not saved yet: its holder waits for the rollout) is waited
    for once more (`again`), then told as it ended, or recorded; one still not saved then is
    told without `NAMED`: what it stops, and whether GitHub is read, is not decided yet."""
    for last in (False, True):
        if stops is None or claim is None or claim.state is not ClaimState.CLAIMED:
            break
        if claim.actor == asker:
            break
        recorded = await stops.wait_on(claim, asker)
        if recorded is not False:
            return claim, bool(recorded)
        if not last:
            claim = await again(claim)
    return claim, False
