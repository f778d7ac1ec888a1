"""A second person's click that waited for a first person's claim of the same effect, given
back because the first failed: when that failure came once the first had saved (the window
extended, then the write of its timer lost), an effect once per card version is not done
again by the second. It is told the card is out of date, where the rollout stands."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from figures import every_gate_passes
from sqlalchemy.exc import OperationalError
from test_claim_lapses import audited, observing
from test_stop_second_person import SECOND, two_approvers

from bot.services.effects import WINDOW_TIMER
from bot.services.records import Claim

pytestmark = pytest.mark.story


async def test_a_second_extend_is_not_done_again_after_the_first_saved_then_failed(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with two_approvers(tmp_path, database_url, window="1h", extension="15m") as box:
        every_gate_passes(box)
        value = await observing(box)
        before = await box.rollout()
        once = box.services.controls._once  # type: ignore[attr-defined]
        settled = once._settled
        waiting, saved = asyncio.Event(), asyncio.Event()

        async def the_second_waits(held: Claim, *, wait: bool) -> Claim | None:
            waiting.set()
            return await settled(held, wait=wait)

        timers = box.services.rollouts.effects.timers
        schedule = timers.schedule

        async def lost_once_the_second_waits(**timer: Any) -> Any:
            if timer["kind"] != WINDOW_TIMER:
                return await schedule(**timer)
            monkeypatch.setattr(timers, "schedule", schedule)
            saved.set()
            await waiting.wait()  # the extension is saved; its timer's write is lost
            raise OperationalError("INSERT INTO timers", {}, ConnectionResetError("lost"))

        monkeypatch.setattr(once, "_settled", the_second_waits)
        monkeypatch.setattr(timers, "schedule", lost_once_the_second_waits)
        first = asyncio.create_task(box.click("extend_window", value=value))
        await saved.wait()  # the first person's click holds the claim
        second = await box.click("extend_window", value=value, user=SECOND)
        told = await first
        assert told is not None and "lost its connection" in told, told

        after = await box.rollout()
        assert await audited(box, after, "extend") == 1, "it extended twice"
        was = before.track("relay").stage("canary").window_ends_at
        assert was is not None
        assert after.track("relay").stage("canary").window_ends_at == was + timedelta(minutes=15)
        assert second is not None and "This card is out of date" in second, second
