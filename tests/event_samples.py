"""Samples of every thread event kind (the `Event` union), as the outbox stores them: the
messages tests word each, and the saved copy of their stored form
(`tests/test_stored_forms.py`) pins its JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.freeze import Freeze, Frozen, LaneHold, Locked
from bot.domain.gate import GateReason, Verdict
from bot.domain.github_events import GitHubReported, RunEvent
from bot.domain.reasons import Reason
from bot.domain.rollout import Left, StageState, StopKind, StopReason, TrackLeft, TrackState
from bot.domain.rollout import events as told
from bot.domain.run import EnvironmentReview
from bot.domain.schedule import Held

AT = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)


def review_rejected(comment: str) -> GitHubReported:
    """GitHub's word that octocat rejected relay-half of run 7001, saying `comment`."""
    return GitHubReported(
        RunEvent(
            "deployment_review",
            "rejected",
            "o/r",
            7001,
            environment="relay-half",
            reviews=(EnvironmentReview("relay-half", "rejected", "octocat", comment),),
        ),
        None,
    )


EVENTS: list[told.Event] = [
    told.RunDispatched("Deploy", "v1.4.2", 7001, "https://gh/run", (("5%", "Relay"),)),
    told.RunDispatched("Deploy", "v1.4.2", 7001, "https://gh/run", (), late=timedelta(minutes=10)),
    told.StageApproved("Relay", "5%"),
    told.ApprovalRefused("Desktop", "GA ring", "GitHub refused to approve (403: <no>)", None),
    told.ApprovalRefused("Relay", "rb", "GitHub refused (404: Not Found).", "https://gh/run"),
    told.ApprovalRefused("Relay", "50%", "GitHub refused (403: <no>)", None, rejected=True),
    told.ReviewUnanswered("Relay", "50%", "GitHub answered 502 (<bad>)", AT, None, rejected=True),
    told.ReviewUnanswered("Desktop", "GA ring", "no answer", AT, "https://gh/run"),
    told.ApprovalRefused("Desktop", "GA ring", "GitHub refused (403: <no>)", None, by_rule=True),
    told.ApprovalRefused("Relay", "50%", "403", "https://gh/run", rejected=True, by_rule=True),
    told.ReviewUnanswered("Desktop", "GA ring", "no answer", AT, None, by_rule=True),
    told.StageJobFailed("Relay", "deploy", "failure", (("deploy", "https://gh/j"),), "u", "rb"),
    told.StageJobFailed("Relay", "deploy", None, (), "https://gh/run", "rb"),
    told.PromotedOnGitHub("Relay", "5%", "50%", StageState.OBSERVING, "octocat"),
    told.PromotedOnGitHub("Relay", "5%", "50%", StageState.HOLDING, None, late_minutes=3),
    told.RejectedOnGitHub("Desktop", "beta", None, "", None, desktop=True, failure_job="kill"),
    told.StageDeployed("Relay", "5%", timedelta(minutes=30), AT),
    told.TrackCompleted("Relay", "100%"),
    told.LandedWhileStopping("Relay", "50%", None),
    told.StageRejected("Relay", "50%"),
    told.FailureJobEnded("Relay", "rb", "failure", "https://gh/j", TrackState.FAILED),
    told.FailureJobRerun("U1", "Relay", "rb", 2, "https://gh/run", "5%"),
    told.FailureJobRerun("U1", "Desktop", "ks", 3, None, None, desktop=True),
    told.RunEnded("Relay", "cancelled", TrackState.FAILED),
    told.RerunUnconfirmed("U1", "Relay", "rb", 1, "https://gh/run", "not_seen", AT, "5%"),
    told.RerunUnconfirmed("U1", "Desktop", "<ks>", 2, None, "unread", None, None, desktop=True),
    told.RerunUnconfirmed("U1", "Relay", "rb", 1, "https://gh/run", "interrupted", AT, None),
    told.RerunNotFollowed(7001, "https://gh/run", 2, "v1.4.2", (("Relay", "5%"),), ("<!here>",)),
    told.ApprovalOvertaken(
        told.RerunNotFollowed(7001, "https://gh/run", 2, "v1.4.2", (("Desktop", "beta"),), ()),
        "Desktop",
        "GA ring",
        "desktop-ga",
        waits=False,
    ),
    told.ApprovalOvertaken(
        told.RerunNotFollowed(7001, "https://gh/run", 3, "v1.4.2", (), ("<ga>",)),
        "<Desktop>",
        "*GA*",
        "<ga>",
        waits=True,
    ),
    told.RejectionOvertaken(
        told.RerunNotFollowed(7001, "https://gh/run", 2, "v1.4.2", (("Desktop", "beta"),), ()),
        "Desktop",
        "GA ring",
        "desktop-ga",
        waits=True,
        rejected=True,
    ),
    told.RejectionOvertaken(
        told.RerunNotFollowed(7001, "https://gh/run", 3, "v1.4.2", (), ("<ga>",)),
        "<Desktop>",
        "*GA*",
        "<ga>",
        waits=True,
        rejected=False,
    ),
    told.RejectionOvertaken(
        told.RerunNotFollowed(7001, "https://gh/run", 2, "v1.4.2", (), ()),
        "Desktop",
        "GA ring",
        "desktop-ga",
        waits=False,
        rejected=False,
    ),
    told.RerunNotFollowed(7001, "https://gh/run", 3, "v1.4.2", (("Relay", None),), ()),
    told.RolloutEnded("v1.4.2", (("Relay", TrackState.COMPLETED),)),
    told.GateMissed("Relay", "5%", AT, 3, Reason("timeout"), manual=False),
    told.GateMissed("Relay", "5%", AT, 3, Reason("held by @U1 since", ("U1",)), manual=True),
    told.GatePassed("5%", "crash rate 0.1%", "50%", auto=True),
    told.GatePassed(
        "5%", "crash rate 0.1%", "50%", auto=False, frozen=Freeze("INC-1", AT, actor="U2")
    ),
    told.GateInconclusive("5%", "sample 3", timedelta(minutes=15), AT),
    told.GateFailed("Relay", "5%", Verdict.ROLLBACK, GateReason.ERROR_RATE, "x", "5%", False, "rb"),
    told.StagePromoted("U1", "Relay", "50%", StageState.HOLDING),
    told.WindowExtended("U1", "Relay", "5%", timedelta(minutes=15), AT),
    told.Reevaluated("U1", "Relay", "5%", Verdict.PASS, "crash rate 0.1%", None),
    told.TrackStopped(
        "Relay", StopReason(StopKind.ROLLED_BACK, "U1", detail="spike"), None, False, "rb"
    ),
    told.StopUnconfirmed("Desktop", StopReason(StopKind.KILL_SWITCH, "U1"), "GA", True, "kill"),
    told.RolloutCancelled("U1"),
    told.Redeploying("U1", "v1.4.1", "v1.4.2", rollout_id="r-2"),
    told.Redeploying(
        "U1",
        "v1.4.1",
        "v1.4.2",
        rollout_id="r-2",
        freeze=Freeze("INC-1", AT, actor="U2"),
        lock=LaneHold("lock", "U3", "db", AT),
    ),
    told.Redeploying(
        "U1",
        "v1.4.1",
        "v1.4.2",
        workflow="rb.yml",
        run_id=7,
        run_url="https://github.com/o/r/actions/runs/7",
        track="API",
        still=("Relay",),
    ),
    told.TracksLeft(
        "v1.4.2",
        False,
        (
            TrackLeft("api", "API", Left.COMPLETED, TrackState.COMPLETED, "100%", redeploy=True),
            TrackLeft("web", "Web", Left.LANDING, TrackState.ACTIVE, "100%", redeploy=False),
            TrackLeft("cdn", "CDN", Left.ENDED, TrackState.ROLLED_BACK, "5%", redeploy=False),
            TrackLeft("edge", "Edge", Left.ENDED, TrackState.ABORTING, None, redeploy=False),
            TrackLeft("db", "DB", Left.RUNNING, TrackState.ACTIVE, None, redeploy=False),
        ),
        actor="U1",
    ),
    told.TracksLeft(
        "v1.4.2",
        True,
        (TrackLeft("cli", "CLI", Left.COMPLETED, TrackState.COMPLETED, "GA", redeploy=False),),
    ),
    # A stop put back, told to who else asked for it meanwhile (each track it did not stop).
    told.StopPutBack(
        "v1.4.2",
        True,
        "U1",
        ("U2", "U3"),
        (TrackLeft("cli", "CLI", Left.LANDING, TrackState.ACTIVE, "beta", redeploy=False),),
        (),
    ),
    told.StopPutBack(
        "v1.4.2",
        False,
        "U1",
        ("U2",),
        (TrackLeft("web", "Web", Left.LANDING, TrackState.ACTIVE, "50%", redeploy=False),),
        ("API",),
    ),
    told.DispatchGaveUp("v1.4.2", "Deploy", timedelta(minutes=10)),
    told.DispatchUnclear("GitHub did not say which run"),
    told.DispatchScheduled("U1", AT, "Europe/Berlin"),
    told.ScheduleHeld(AT, Held(blocking=("Image tag: `relay:v1` is not published yet",))),
    told.ScheduleHeld(AT, Held(lane=Frozen(Freeze("INC-1", AT, actor="U2"), dispatch=True))),
    told.ScheduleHeld(AT, Held(lane=Locked(LaneHold("lock", "U2", "db", AT)))),
    told.ScheduleHeld(AT, Held(two_person=True)),
    told.ScheduleHeld(AT, Held(error=Reason("the bot was not running then"))),
    told.ScheduleHeld(AT, Held(error=Reason("held by @U1 & co", people=("U1",)))),
    told.ScheduleFrozen(Frozen(Freeze("INC-1", AT, actor="U2"), dispatch=True, at=AT)),
    told.ScheduleFrozen(Frozen(Freeze("<b> & co", AT, actor="U2"), at=AT), lifted_by="U1"),
    told.FreezeLiftedHolding("U1", "U2", ("5% canary → 50%",)),
    told.FreezeLiftedHolding("U1", "U1", ("<b> → 50%",), Freeze("weekend", AT, calendar="weekend")),
    told.FreezeEnded(AT, ("5% canary → 50%", "<b> → beta")),
    told.FreezeEnded(AT, dispatch_at=AT),
    told.ScheduleCancelled("U1", AT),
    told.FreezeOverridden("U1", "v1.4.2", "hotfix", Freeze("INC-1", AT, calendar="weekend")),
    review_rejected("no"),
    told.WaitsOutsidePlan("desktop-internal", 9001, "https://github.com/o/r/actions/runs/9001"),
    told.WaitsOutsidePlan("staging", 9001, "https://github.com/o/r/actions/runs/9001", True),
    told.RunUnreadable(AT, "GitHub answered 502 (<Bad Gateway>)", None, rate_limited=False),
    told.RunReadable(AT, AT + timedelta(minutes=7, microseconds=5)),
]
