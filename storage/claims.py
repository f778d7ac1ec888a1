"""The exactly-once guard: a person's action claims the key of its effect before it acts.

The claim is one `INSERT ... ON CONFLICT DO NOTHING` on the key (the primary key), so among
every request for one effect, on every replica sharing the database, exactly one wins. The
winner completes its claim when the action is done, or deletes it when the action failed (a
GitHub 500), so the click can be repeated. A claim whose write failed with its outcome unknown
(the answer to its COMMIT lost) is looked for by its holder token and deleted before the
failure is raised (`ClaimUnsettled`). A claim whose owner died mid-action is taken over once
its lease has run out.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.records import Claim, ClaimState, ClaimUnsettled
from storage.db import from_row, insert_new, rows_changed
from storage.failures import DATABASE_FAILURES, timed_out
from storage.models import ActionClaimRow

DEFAULT_LEASE = timedelta(minutes=5)
"""How long an unfinished claim holds: far longer than any action takes (a dispatch, a review)."""


class ClaimStore:
    """Claims, completes and releases effect keys in the database."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        self._sessions = sessions
        self._lease = lease

    @property
    def lease(self) -> timedelta:
        return self._lease

    async def claim(
        self,
        *,
        key: str,
        action: str,
        actor: str,
        now: datetime,
        rollout_id: str | None = None,
        track: str | None = None,
        stage: str | None = None,
        done: bool = False,
        take_over: bool = True,
        replacing: Claim | None = None,
    ) -> Claim | None:
        """Whether a lapsed claim is taken over is decided in the same statement as the claim,
        so a lease that runs out meanwhile cannot let it through; `replacing` is matched by its
        holder token, which each claim and takeover writes anew."""
        claim = Claim(
            key=key,
            action=action,
            actor=actor,
            state=ClaimState.DONE if done else ClaimState.CLAIMED,
            claimed_at=now,
            holder=secrets.token_hex(8),
            rollout_id=rollout_id,
            track=track,
            stage=stage,
            done_at=now if done else None,
        )
        try:
            won = await self._write(claim, take_over=take_over, replacing=replacing)
        except BaseException as lost:
            # The write may have committed with its answer lost (a connection dropped at
            # COMMIT, a timeout, a cancellation): a claim nobody finishes would hold the key,
            # and tell every later click it is being done, until its lease ran out.
            withdrawn = await asyncio.shield(self._withdraw(claim))
            if not isinstance(lost, DATABASE_FAILURES):  # a cancellation, or a bug: as it is
                raise
            held_until = claim.claimed_at + self.lease
            raise ClaimUnsettled(
                claim, withdrawn=withdrawn, held_until=held_until, timed_out=timed_out(lost)
            ) from lost
        return claim if won else None

    async def _write(self, claim: Claim, *, take_over: bool, replacing: Claim | None) -> bool:
        """Insert the claim, or (`take_over`) take over its key's claim whose lease ran out
        (`replacing`: that one claim only); whether it won."""
        values = {**asdict(claim), "state": claim.state.value}
        async with self._sessions.begin() as session:
            won = await session.scalar(
                insert_new(session, ActionClaimRow, values, unique=ActionClaimRow.key).returning(
                    ActionClaimRow.key
                )
            )
            if won is None and (take_over or replacing is not None):
                # Take over a claim whose owner died before finishing (its lease ran out).
                lapsed = [
                    ActionClaimRow.key == claim.key,
                    ActionClaimRow.state == ClaimState.CLAIMED.value,
                    ActionClaimRow.claimed_at < claim.claimed_at - self._lease,
                ]
                if replacing is not None:
                    lapsed.append(ActionClaimRow.holder == replacing.holder)
                won = await session.scalar(
                    update(ActionClaimRow)
                    .where(*lapsed)
                    .values(**values)
                    .returning(ActionClaimRow.key)
                )
        return won is not None

    async def _withdraw(self, claim: Claim) -> bool:
        """Delete `claim` if its write went through: by its holder token, so never a claim
        another request or replica holds. Whether it is known to be gone."""
        try:
            async with self._sessions.begin() as session:
                await session.execute(
                    delete(ActionClaimRow).where(
                        ActionClaimRow.key == claim.key, ActionClaimRow.holder == claim.holder
                    )
                )
        except DATABASE_FAILURES:  # the database is still away: the lease is what frees the key
            return False
        return True

    async def complete(self, claim: Claim, *, now: datetime) -> None:
        """The claimed action is done: later requests for the key are told who did it."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(ActionClaimRow)
                .where(ActionClaimRow.key == claim.key, ActionClaimRow.holder == claim.holder)
                .values(state=ClaimState.DONE.value, done_at=now)
            )

    async def release(self, claim: Claim) -> bool:
        """The claimed action failed and changed nothing: the key may be claimed again."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(ActionClaimRow).where(
                    ActionClaimRow.key == claim.key,
                    ActionClaimRow.holder == claim.holder,
                    ActionClaimRow.state == ClaimState.CLAIMED.value,
                )
            )
        return rows_changed(result) > 0

    async def prune(self, *, before: datetime) -> int:
        """Forget claims made before `before` (retention); returns how many. The audit trail
        keeps who did what; a claim only guards an effect while a repeat is plausible."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(ActionClaimRow).where(ActionClaimRow.claimed_at < before)
            )
            return rows_changed(result)

    async def unrecorded(self, action: str, before: datetime) -> list[Claim]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ActionClaimRow).where(
                    ActionClaimRow.action == action,
                    ActionClaimRow.state == ClaimState.CLAIMED.value,
                    ActionClaimRow.claimed_at < before,
                )
            )
            return [_claim(row) for row in rows]

    async def get(self, key: str) -> Claim | None:
        async with self._sessions() as session:
            row = await session.get(ActionClaimRow, key, populate_existing=True)
            return None if row is None else _claim(row)


def _claim(row: ActionClaimRow) -> Claim:
    return from_row(Claim, row, state=ClaimState(row.state))
