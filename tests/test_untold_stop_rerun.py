"""The owed line of a stop (`Rollout.untold_stops`: saved, its process reading GitHub or dead)
when the run changes under it: a re-run the bot did not see coming ends the track, and a run
cancelled on GitHub ends it too. Either way the stop's own line is told first, once, with the
stop's reason, and nothing is owed after. The machine on hand-built snapshots."""

from __future__ import annotations

from dataclasses import replace

from test_rollout_machine import PLAN, at, running, snapshot

from bot.domain.rollout import Announce, Decision, Rollout, StopKind, abort, reconcile
from bot.domain.rollout.events import RerunNotFollowed, TrackStopped


def killed_untold() -> Rollout:
    """`v1.4.2` following attempt 1, its desktop kill-switch saved by U1, its line owed."""
    rollout = replace(running(), attempt=1)
    killed = abort(rollout, PLAN, track="desktop", actor="U1", reason="crash", now=at(10)).rollout
    return replace(killed, untold_stops=("desktop",), untold_stops_kept=True)


def told(decision: Decision) -> list[object]:
    return [e.event for e in decision.effects if isinstance(e, Announce)]


def test_a_rerun_unseen_tells_the_owed_stop_first_with_its_own_reason() -> None:
    rerun = replace(snapshot(), attempt=2)

    decision = reconcile(killed_untold(), PLAN, rerun, at(20))

    events = told(decision)
    stops = [e for e in events if isinstance(e, TrackStopped)]
    assert len(stops) == 1, events
    assert stops[0].reason.kind is StopKind.KILL_SWITCH and stops[0].reason.actor == "U1"
    (rerun_told,) = [e for e in events if isinstance(e, RerunNotFollowed)]
    assert events.index(stops[0]) < events.index(rerun_told)
    assert decision.rollout.untold_stops == ()


def test_a_run_cancelled_tells_the_owed_stop_once() -> None:
    cancelled = snapshot(status="completed", conclusion="cancelled")

    decision = reconcile(killed_untold(), PLAN, cancelled, at(20))

    stops = [e for e in told(decision) if isinstance(e, TrackStopped)]
    assert len(stops) == 1 and stops[0].reason.kind is StopKind.KILL_SWITCH, told(decision)
    assert decision.rollout.untold_stops == ()
