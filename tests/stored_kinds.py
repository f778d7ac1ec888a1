"""Samples of the timers, outbox messages and claim keys the bot stores, each written and read
by the product's own code (`tests/stored_forms.py`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from cleared import ALL_CLEAR
from event_samples import AT
from stored_forms import Family, Sample, as_json, earlier

from bot.domain.controls import (
    _SCOPE,
    CardRef,
    Control,
    Hold,
    delivery_key,
    effect_attempt,
    effect_key,
)
from bot.domain.freeze import (
    LANE_FREEZE,
    Freeze,
    LaneHold,
    freeze_end_timer_key,
    freeze_end_timer_payload,
    freeze_key,
    hold_told_key,
    hold_watch_timer,
    override_kind,
    roll_back_kind,
)
from bot.domain.freeze_all import (
    LanesFrozen,
    LanesUnfrozen,
    lifted_freeze,
    lifted_timer,
    thread_told_key,
    told_freeze,
    told_from_json,
    told_timer,
)
from bot.domain.gate import GateKind, GateReason, GateVerdict, Verdict
from bot.domain.metrics import Figures, MetricReading, Reading
from bot.domain.npm import ReleaseFollow, ReleasePhase, Walkthrough
from bot.domain.plan import Notifications
from bot.domain.protection_rules import RuleRequest
from bot.domain.rollout import (
    EARLY_GATE_TIMER,
    Phase,
    Rollout,
    Stage,
    StageState,
    Track,
    TrackState,
    backstop_timer_key,
    early_gate_timer_key,
    window_timer_key,
    window_timer_payload,
)
from bot.domain.rollout import events as told
from bot.domain.unfollowed_runs import RunFate, UnfollowedRun, timer_key, timer_payload
from bot.services import outbox_messages as messages
from bot.services.channel_refusals import notice_of, refusal_notice
from bot.services.effects import WINDOW_TIMER, dispatch_timer
from bot.services.lane_controls import tell_lifted_later, tell_scheduled_later
from bot.services.npm_release import CLAIM_ACTION, MessageRef, ReleaseLook, release_claim_key
from bot.services.records import NewMessage, NewTimer, Timer
from bot.services.reviews import OVERTAKEN, overtaken_key
from bot.services.scheduled_starts import _scheduled_at
from bot.services.unconfirmed_rules import Unconfirmed, _timer
from bot.services.window_ends import _window
from storage.outbox import REFUSAL_TOLD, TOLD, refusal_told_key

RID = "r-0123456789ab"
DUE = AT + timedelta(minutes=30)


# -- timers --------------------------------------------------------------------------------------


def _new_timer(timer: NewTimer) -> dict[str, Any]:
    return {"key": timer.key, "kind": timer.kind, "payload": as_json(dict(timer.payload))}


def _stored(data: dict[str, Any], rollout_id: str | None = RID) -> Timer:
    """The timer as the scheduler reads it back from its row."""
    return Timer(
        id=1,
        key=data["key"],
        kind=data["kind"],
        due_at=DUE,
        created_at=AT,
        attempts=0,
        rollout_id=rollout_id,
        payload=data["payload"],
    )


REQUEST = RuleRequest(7001, "Relay-Half", 42, AT, event="push", sender="octocat")
CARD = UnfollowedRun(
    7001,
    "Deploy",
    "https://github.com/o/r/actions/runs/7001",
    "v1.4.2",
    "v1.4.2",
    "push",
    "octocat",
    "relay-half",
    AT,
    DUE,
    RunFate.ADOPTED,
    "U1",
    RID,
    2,
    "r-old",
    True,
    "",
    True,
)
FREEZE = Freeze("INC-1", DUE, actor="U2", key="freeze:U2:2025-06-02T09:30:00+00:00")
ALL_FROZEN = LaneHold(LANE_FREEZE, "U2", "INC-9 outage", AT, DUE, service="search")
WALKTHROUGH = Walkthrough(
    release=ReleaseFollow(requested_by="U1", phase=ReleasePhase.RUNNING, run_id=9001)
)
LOOK = ReleaseLook(
    channel="C1",
    ts="1717320600.000100",
    walkthrough=WALKTHROUGH,
    claim_key=release_claim_key(MessageRef("C1", "1717320600.000100"), None),
    holder="h-1",
    actor="U1",
    dispatched_at=AT,
    until=DUE,
    number=2,
)
UNCONFIRMED = Unconfirmed(delivery_id="d-1", installation=99, request=REQUEST, number=3)

WAITING = UnfollowedRun(
    7001,
    "Deploy",
    "https://github.com/o/r/actions/runs/7001",
    "main",
    "",
    "push",
    "octocat",
    "relay-half",
    AT,
    DUE,
)
FIRST_LOOK = LOOK.model_copy(update={"number": 0})


def _unfollowed(name: str, card: UnfollowedRun) -> Sample:
    return Sample(
        name,
        card,
        lambda card: {
            "key": timer_key(REQUEST.run_id),
            "kind": "unfollowed_run",
            "payload": as_json(timer_payload(REQUEST, card)),
        },
        lambda data: (
            data["payload"]["request"],
            UnfollowedRun.from_json(data["payload"]["card"]),
        ),
        decoded=(REQUEST.key, card),
    )


def _look(name: str, look: ReleaseLook) -> Sample:
    return Sample(
        name,
        look,
        lambda look: {
            "key": look.key,
            "kind": "npm_release",
            "payload": look.model_dump(mode="json", exclude_none=True),
        },
        lambda data: ReleaseLook.model_validate(data["payload"]),
    )


def _unconfirmed(name: str, held: Unconfirmed) -> Sample:
    return Sample(
        name,
        held,
        lambda held: _new_timer(_timer(held, DUE)),
        lambda data: Unconfirmed.model_validate(data["payload"]),
    )


TIMERS = Family(
    "timers",
    "Every timer kind: its key, kind and payload (TIMER_KINDS, bot/services/effects.py).",
    [
        Sample(
            "window",
            (RID, "relay", "canary", AT),
            lambda v: {
                "key": window_timer_key(*v),
                "kind": WINDOW_TIMER,
                "payload": as_json(window_timer_payload(*v[1:])),
            },
            lambda data: _window(_stored(data)),
        ),
        Sample(
            "window:reevaluated",
            (RID, "relay", "canary", AT),
            lambda v: {
                "key": backstop_timer_key(*v, asked_at=AT + timedelta(hours=2)),
                "kind": WINDOW_TIMER,
                "payload": as_json(window_timer_payload(*v[1:])),
            },
            lambda data: _window(_stored(data)),
        ),
        Sample(
            "early_gate",
            (RID, "relay", "canary", AT),
            lambda v: {
                "key": early_gate_timer_key(*v, asked_at=AT - timedelta(minutes=50)),
                "kind": EARLY_GATE_TIMER,
                "payload": as_json(window_timer_payload(*v[1:])),
            },
            lambda data: _window(_stored(data), kind=EARLY_GATE_TIMER),
        ),
        Sample(
            "scheduled_dispatch",
            dispatch_timer(RID, AT),
            _new_timer,
            lambda data: (data["kind"], data["key"], _scheduled_at(_stored(data))),
            decoded=("scheduled_dispatch", dispatch_timer(RID, AT).key, AT),
        ),
        Sample(
            "window:earlier",
            (RID, "relay", "canary", AT),
            lambda v: {
                "key": window_timer_key(*v),
                "kind": WINDOW_TIMER,
                "payload": {"track": v[1], "stage": v[2]},  # its end in its key alone
            },
            lambda data: _window(_stored(data)),
        ),
        _unfollowed("unfollowed_run", CARD),
        earlier(
            _unfollowed("unfollowed_run:waiting", WAITING),
            at=lambda data: data["payload"]["card"],
        ),
        # A run on a release tag the bot cannot follow to its commit (091736d reads it as a run
        # on no release tag).
        _unfollowed(
            "unfollowed_run:tag-unread",
            replace(WAITING, ref="v1.4.2", tag_unread="a tag of a tag too deep"),
        ),
        _look("npm_release", LOOK),
        earlier(_look("npm_release:first", FIRST_LOOK), at=lambda data: data["payload"]),
        _unconfirmed("unconfirmed_rule", UNCONFIRMED),
        earlier(
            _unconfirmed("unconfirmed_rule:first", UNCONFIRMED.model_copy(update={"number": 1})),
            at=lambda data: data["payload"],
        ),
        Sample(
            "freeze_end",
            FREEZE,
            lambda freeze: {
                "key": freeze_end_timer_key(RID, freeze),
                "kind": "freeze_end",
                "payload": as_json(freeze_end_timer_payload(freeze)),
            },
            lambda data: datetime.fromisoformat(data["payload"]["free_at"]),
            decoded=FREEZE.free_at,
        ),
        Sample(
            "freeze_end:hold",
            FREEZE,
            lambda freeze: dict(
                zip(
                    ("key", "payload"),
                    hold_watch_timer(freeze_end_timer_key(RID, freeze), "relay:half", DUE),
                    strict=True,
                ),
                kind="freeze_end",
            ),
            lambda data: datetime.fromisoformat(data["payload"]["free_at"]),
            decoded=FREEZE.free_at,
        ),
        Sample(
            "freeze_all_told",
            ALL_FROZEN,
            lambda hold: _new_timer(tell_scheduled_later(hold)),
            lambda data: told_freeze(data["payload"]),
            decoded=(freeze_key("U2", AT), DUE),
        ),
        Sample(
            "freeze_lifted",
            ALL_FROZEN,
            lambda hold: _new_timer(tell_lifted_later(hold, by="U1", at=DUE)),
            lambda data: lifted_freeze(data["payload"], "search"),
            decoded=("U1", DUE, ALL_FROZEN),
        ),
    ],
)


# -- outbox --------------------------------------------------------------------------------------

ROLLOUT = Rollout(RID, "v1.4.2", "C1", "U1", Phase.RUNNING, (), ALL_CLEAR, AT)
VERDICT = GateVerdict(
    GateKind.RELAY,
    Verdict.ROLLBACK,
    GateReason.ERROR_RATE,
    Decimal("0.002"),
    Decimal("0.001"),
    Decimal("2"),
    Decimal("0.002"),
    current_error=Decimal("0.03"),
    error_threshold=Decimal("0.01"),
    sample=1200,
    min_sample=100,
)
READING = Reading(
    Decimal("0.001"),
    Figures(Decimal("0.002"), Decimal("0.03"), 1200),
    "prometheus",
    (
        MetricReading(
            "error_rate",
            Decimal("0.03"),
            1200,
            link="https://prometheus/graph",
            series=((AT, 0.01), (DUE, 0.03)),
        ),
    ),
    window=(AT, DUE),
)
FAILED = told.GateFailed(
    "Relay", "5%", Verdict.ROLLBACK, GateReason.ERROR_RATE, "x", "5%", False, "rb"
)


def _message(message: NewMessage) -> dict[str, Any]:
    return {
        "kind": message.kind,
        "channel_id": message.channel_id,
        "rollout_id": message.rollout_id,
        "payload": as_json(dict(message.payload)),
    }


def _row(data: dict[str, Any], read: Any) -> tuple[Any, ...]:
    assert data["kind"] in messages.KINDS
    return (data["kind"], data["channel_id"], data["rollout_id"], read)


def _outbox(name: str, message: NewMessage, read: Any, expected: Any) -> Sample:
    return Sample(
        name,
        message,
        _message,
        lambda data: _row(data, read(data["payload"])),
        decoded=(message.kind, message.channel_id, message.rollout_id, expected),
    )


def _gate(payload: dict[str, Any]) -> Any:
    read = messages.verdict_from_json(payload["verdict"]), messages.gate_reading(payload)
    return (messages.stage_of(payload), *read, messages.gate_window(payload))


def _judging(stage: Stage) -> Rollout:
    """`ROLLOUT` with its relay canary as `stage`."""
    return replace(ROLLOUT, tracks=(Track("relay", TrackState.ACTIVE, (stage,)),))


JUDGED = Stage("canary", StageState.EVALUATING, AT, AT + timedelta(minutes=30))


SHOWN = Notifications(failure_channel="C0FAILURES")
THREAD, ELSEWHERE = messages.told(ROLLOUT, FAILED, failure=True, notifications=SHOWN)
NOTICE = refusal_notice("C9", refusing="C1", refusal="not_in_channel")
REFUSAL = replace(NOTICE, payload={**NOTICE.payload, "after": 4})  # as `told_once` stores it
REPLIES = refusal_notice("C9", refusing="C1", refusal="restricted_action", replies=True)
REPLIES_ONLY = replace(REPLIES, payload={**REPLIES.payload, "after": 4})
LONGER = LaneHold(LANE_FREEZE, "U2", "reindex", AT, DUE + timedelta(days=1), service="search")
FROZEN = LanesFrozen("U1", "INC-9 outage", DUE, "C1", ("search", "docs"), (LONGER,))
UNFROZEN = LanesUnfrozen("U1", "C1", (LONGER,))
OUTBOX = Family(
    "outbox",
    "Every outbox message kind: its row's kind, channels and payload (bot/services/"
    "outbox_messages.py KINDS).",
    [
        _outbox("card", messages.card(ROLLOUT), dict, {}),
        _outbox("summary", messages.summary(ROLLOUT), dict, {}),
        _outbox("thread", THREAD, messages.told_event, FAILED),
        _outbox(
            "thread_as_text",
            NewMessage("thread", "C1", RID, {"text": "old"}),
            messages.told_event,
            "old",
        ),
        _outbox("failure", ELSEWHERE, messages.told_event, FAILED),
        _outbox(
            "figures",
            messages.figures_request(ROLLOUT, track="relay", stage="canary"),
            messages.stage_of,
            ("relay", "canary"),
        ),
        _outbox(  # as a 38840bf replica writes it: no window
            "gate",
            messages.gate_card(
                _judging(Stage("canary")),
                track="relay",
                stage="canary",
                verdict=VERDICT,
                reading=READING,
            ),
            _gate,
            (("relay", "canary"), VERDICT, READING, None),
        ),
        _outbox(
            "gate:window",
            messages.gate_card(
                _judging(JUDGED), track="relay", stage="canary", verdict=VERDICT, reading=None
            ),
            _gate,
            (("relay", "canary"), VERDICT, None, (AT, AT + timedelta(minutes=30))),
        ),
        _outbox(
            "unfollowed_run",
            NewMessage(kind=messages.UNFOLLOWED, channel_id="C1", payload=CARD.to_json()),
            UnfollowedRun.from_json,
            CARD,
        ),
        _outbox(
            "channel_refused",
            REFUSAL,
            notice_of,
            ("C1", "not_in_channel", 4, False),
        ),
        _outbox(
            "channel_refused:replies",
            REPLIES_ONLY,
            notice_of,
            ("C1", "restricted_action", 4, True),
        ),
        _outbox("channel_refused:earlier", NOTICE, notice_of, ("C1", "not_in_channel", 0, False)),
        _outbox("freeze_all", messages.lanes_notice("C2", FROZEN), told_from_json, FROZEN),
        _outbox(
            "freeze_all:unfrozen", messages.lanes_notice("C2", UNFROZEN), told_from_json, UNFROZEN
        ),
    ],
)


# -- claims --------------------------------------------------------------------------------------


def _claim(control: Control) -> dict[str, str]:
    """A control's claim row: its effect's key and its action (read back as text and enum)."""
    return {"key": effect_key(control, FULL_CARD), "action": control.value}


FULL_CARD = CardRef(RID, track="relay", stage="canary", version=7, hold=Hold.PASS, attempt=2)
CLAIMS = Family(
    "claims",
    "The exactly-once claim keys (bot/domain/controls.py effect_key, delivery_key; the npm "
    "walkthrough's) and the lane holds' kinds: an old row's key must be the one computed now, "
    "or an effect claimed before the upgrade happens again after it.",
    [
        *(
            Sample(f"effect:{control.value}", control, _claim, lambda data: Control(data["action"]))
            for control in _SCOPE
        ),
        Sample(
            "effect:promote:unscoped",
            Control.PROMOTE,
            lambda c: effect_key(c, CardRef(RID)),
        ),
        Sample(
            "effect:rerun_failure_job:attempt",
            Control.RERUN_FAILURE_JOB,
            lambda c: effect_key(c, FULL_CARD),
            effect_attempt,  # a lapsed re-run is followed by it (bot/services/lapsed_reruns.py)
            decoded=FULL_CARD.attempt,
        ),
        Sample("delivery", "T1:abc", delivery_key),
        Sample(
            "npm_release",
            (MessageRef("C1", "1717320600.000100"), 9001),
            lambda v: {"key": release_claim_key(*v), "action": CLAIM_ACTION},
        ),
        Sample(
            "npm_release:first",
            (MessageRef("C1", "1717320600.000100"), None),
            lambda v: {"key": release_claim_key(*v), "action": CLAIM_ACTION},
        ),
        Sample(
            "told_once:freeze_end",
            (RID, FREEZE),
            lambda v: {"key": freeze_end_timer_key(*v), "action": TOLD},
        ),
        Sample(
            "told_once:freeze_end:hold",
            (RID, FREEZE),
            lambda v: {
                "key": hold_told_key(freeze_end_timer_key(*v), "relay:half"),
                "action": TOLD,
            },
        ),
        Sample(
            "told_once:freeze_all_told",
            (told_timer(ALL_FROZEN)[0], RID),
            lambda v: {"key": thread_told_key(*v), "action": TOLD},
        ),
        Sample(
            "told_once:freeze_lifted",
            (lifted_timer(ALL_FROZEN, by="U1", at=DUE)[0], RID),
            lambda v: {"key": thread_told_key(*v), "action": TOLD},
        ),
        Sample(
            "told_once:freeze_lifted:held",
            (lifted_timer(ALL_FROZEN, by="U1", at=DUE)[0] + ":held", RID),
            lambda v: {"key": thread_told_key(*v), "action": TOLD},
        ),
        Sample(
            "told_once:channel_refused",
            ("C1", "C9", 4, 0),
            lambda v: {"key": refusal_told_key(*v), "action": REFUSAL_TOLD},
        ),
        Sample(
            "told_once:channel_refused:replies",
            ("C1", "C9", 4, 0),
            lambda v: {
                "key": refusal_told_key(*v, kinds=messages.REPLIES),
                "action": REFUSAL_TOLD,
            },
        ),
        Sample(
            "told_once:channel_refused:lost",
            ("C1", "C9", 4, 2),
            lambda v: {"key": refusal_told_key(*v), "action": REFUSAL_TOLD},
        ),
        Sample(
            "approval_overtaken",
            (RID, 2),
            lambda v: {"key": overtaken_key(*v), "action": OVERTAKEN},
        ),
        Sample("lane:override", RID, override_kind),
        Sample("lane:rollback", RID, roll_back_kind),
    ],
)

FAMILIES = (TIMERS, OUTBOX, CLAIMS)
