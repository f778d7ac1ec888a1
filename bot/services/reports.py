"""`/rollout report [period]`: the rollouts that ended in a period, each summed up from its
state and audit trail as its thread's summary is (`bot.domain.rollout_summary`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bot.domain.errors import InvalidCommand
from bot.domain.period_report import Period, PeriodReport, period_report
from bot.domain.rollout import Rollout, TrackState
from bot.domain.rollout_summary import rolled_back_after, summarize
from bot.domain.schedule import zone_named
from bot.services.lane_controls import TimeZoneOf
from bot.services.ports import Clock
from bot.services.records import is_machine
from bot.services.store_ports import AuditLog, Rollouts


class RolloutReports:
    """Reads the rollouts of a period and their audit trails; changes nothing."""

    def __init__(
        self,
        *,
        rollouts: Rollouts,
        audit: AuditLog,
        clock: Clock,
        time_zone_of: TimeZoneOf | None = None,
    ) -> None:
        """`time_zone_of`: where the asker's time zone is asked (Slack's `users.info`), which
        a month's days are read in."""
        self._rollouts = rollouts
        self._audit = audit
        self._clock = clock
        self._time_zone_of = time_zone_of

    async def period(self, period: Period, *, asker: str | None = None) -> PeriodReport:
        """The report of the rollouts dispatched that ended in `period` (a rollout cancelled
        in its preflight never ran, and is not counted). A month is read in `asker`'s time
        zone (UTC when Slack cannot say it, or this host does not know it: the report says
        which)."""
        if period.month is not None and asker is not None and self._time_zone_of is not None:
            period = replace(period, zone=known_zone(await self._time_zone_of(asker)))
        start, end = period.bounds(self._clock())
        summaries = [
            summarize(
                rollout,
                await self._rollouts.plan(rollout.id),
                await self._audit.list_for_rollout(rollout.id),
                machine=is_machine,
            )
            for rollout in await self._rollouts.ended_between(start, end)
            if rollout.run_id is not None
        ]
        return period_report(period, start, end, summaries)

    async def rolled_back_after(self, rollouts: Sequence[Rollout]) -> set[tuple[str, str]]:
        """The (rollout id, track) of the completed tracks of `rollouts` that a person rolled
        back afterwards (the previous release redeployed over them), as `/rollout history`
        marks them; one read of the audit trail per rollout that completed a track."""
        undone = set()
        for rollout in rollouts:
            completed = [t.name for t in rollout.tracks if t.state is TrackState.COMPLETED]
            if not completed:
                continue
            events = await self._audit.list_for_rollout(rollout.id)
            undone |= {(rollout.id, t) for t in completed if rolled_back_after(events, t)}
        return undone


def known_zone(name: str | None) -> str | None:
    """`name` when this host's time zone database knows it, else None (read as UTC)."""
    if name is None:
        return None
    try:
        zone_named(name)
    except InvalidCommand:
        return None
    return name
