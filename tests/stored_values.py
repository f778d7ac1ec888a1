"""Samples of a rollout as stored (its rows, their states and reasons) and of the values the
bot puts on Slack cards (action ids, button values, modal metadata), each written and read by
the product's own code (`tests/stored_forms.py`)."""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cleared import ALL_CLEAR
from event_samples import AT
from stored_forms import Family, Sample, as_json, earlier
from stored_kinds import RID, VERDICT, WALKTHROUGH

from bot.adapters.slack import actions as slack
from bot.adapters.slack.npm_views import NpmAction, decode_state, encode_state
from bot.domain.controls import Hold
from bot.domain.freeze import Freeze, Frozen
from bot.domain.gate import GateKind, GateReason, Verdict
from bot.domain.npm import SecretCheck, Walkthrough
from bot.domain.npm_environment import RuleFlag
from bot.domain.reasons import Reason
from bot.domain.rollout import (
    Check,
    CheckState,
    Phase,
    Preflight,
    Rollout,
    Stage,
    StageState,
    StopKind,
    StopReason,
    Track,
    TrackState,
    check_from_json,
    check_to_json,
    reason_from_json,
    reason_to_json,
    schedule_from_json,
    schedule_to_json,
    verdict_from_json,
    verdict_to_json,
)
from bot.domain.schedule import Held, Schedule
from bot.domain.unfollowed_runs import RunFate
from storage.rollout_records import RolloutRecord, StageRecord, TrackRecord
from storage.rollout_store import _record, _rollout

LATER = AT + timedelta(minutes=45)
ROLLED_BACK = StopReason(
    StopKind.FAILURE_JOB_FAILED,
    "U1",
    subject="rb",
    outcome="failure",
    detail="spike",
    cause=StopReason(StopKind.GATE_FAILED, subject="canary"),
)
ROLLOUT = Rollout(
    RID,
    "v1.4.2",
    "C1",
    "U1",
    Phase.RUNNING,
    (
        Track(
            "relay",
            TrackState.ROLLED_BACK,
            (
                Stage("canary", StageState.FAILED, AT, LATER, 1, VERDICT, AT, AT),
                Stage("half"),
            ),
            ending=None,
            ended_reason=ROLLED_BACK,
            ended_at=LATER,
        ),
        Track(
            "desktop", TrackState.ABORTING, (Stage("beta", StageState.HOLDING),), TrackState.HALTED
        ),
    ),
    Preflight(
        Check(CheckState.PASS),
        Check(CheckState.SKIPPED, "old", "U2"),
        Check(CheckState.FAIL, "no image"),
    ),
    AT,
    run_id=7001,
    run_url="https://github.com/o/r/actions/runs/7001",
    message_ts="1717320600.000100",
    dispatched_at=AT,
    gave_up_at=AT,
    schedule=Schedule(AT, "U1", "Europe/Berlin", Held(error=Reason("late", ("U1",), times=(AT,)))),
    version=4,
    told_outside=("staging",),
    unread_since=AT,
    told_unread=True,
    attempt=2,
)


def _base(rollout: Rollout) -> RolloutRecord:
    """The rows as created: what `_record` fills in from the rollout is left at its start."""
    return RolloutRecord(
        rollout.id,
        rollout.tag,
        rollout.channel_id,
        rollout.started_by,
        "preflight",
        {},
        rollout.created_at,
        rollout.created_at,
        0,
        tracks=tuple(
            TrackRecord(
                track.name,
                at,
                "pending",
                stages=tuple(
                    StageRecord(track.name, stage.key, n, f"env-{stage.key}", "pending", AT)
                    for n, stage in enumerate(track.stages)
                ),
            )
            for at, track in enumerate(rollout.tracks)
        ),
    )


def _rows(rollout: Rollout) -> dict[str, Any]:
    return as_json(asdict(_record(rollout, _base(rollout)), dict_factory=_columns))


def _columns(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in items}


def _moments(cls: type[Any], data: dict[str, Any]) -> Any:
    """A record from its JSON: its datetime columns parsed back."""
    values = {}
    for field in fields(cls):
        value = data[field.name]
        if field.name == "tracks":
            value = tuple(_moments(TrackRecord, t) for t in value)
        elif field.name == "stages":
            value = tuple(_moments(StageRecord, s) for s in value)
        elif isinstance(value, str) and ("_at" in field.name or field.name.endswith("_from")):
            value = datetime.fromisoformat(value)
        values[field.name] = value
    return cls(**values)


def _rollout_sample(name: str, rollout: Rollout) -> Sample:
    return Sample(name, rollout, _rows, lambda data: _rollout(_moments(RolloutRecord, data)))


NEW = replace(
    ROLLOUT,
    tracks=(Track("relay", TrackState.ACTIVE, (Stage("canary", StageState.DEPLOYING),)),),
    preflight=ALL_CLEAR,
    run_id=None,
    run_url=None,
    dispatched_at=None,
    gave_up_at=None,
    schedule=None,
    told_outside=(),
    unread_since=None,
    told_unread=False,
    attempt=None,
    version=1,
)
PLAIN = replace(VERDICT, reason=None, sample=None, min_sample=0, current_error=None)


def _enum(cls: type[StrEnum]) -> Sample:
    return Sample(
        f"enum:{cls.__name__}",
        cls,
        lambda c: [member.value for member in c],
        lambda values: [cls(value) for value in values],
        decoded=list(cls),
    )


FROZEN = Schedule(AT, "U1", held=Held(lane=Frozen(Freeze("INC-1", LATER, actor="U2"), at=AT)))


def _schedule_sample(name: str, schedule: Schedule) -> Sample:
    return Sample(name, schedule, lambda s: as_json(schedule_to_json(s)), schedule_from_json)


ROLLOUT_STATE = Family(
    "rollout",
    "A rollout's rows (storage/rollout_store.py: states, context, stop reasons, verdicts) and "
    "the enum values its columns hold.",
    [
        _rollout_sample("rollout", ROLLOUT),
        # A stop whose thread line is still owed (`untold_stops`, stored once a stop set it).
        _rollout_sample(
            "rollout:untold", replace(ROLLOUT, untold_stops=("desktop",), untold_stops_kept=True)
        ),
        # Who else asked for that stop while it was decided (`stop_waiters`, stored while any).
        _rollout_sample(
            "rollout:waiting",
            replace(
                ROLLOUT,
                untold_stops=("desktop",),
                untold_stops_kept=True,
                stop_waiters=(("desktop", "U2"), ("desktop", "U3")),
            ),
        ),
        # Approvals GitHub refused while their jobs wait (`refused_approvals`, stored while any).
        _rollout_sample("rollout:refused", replace(ROLLOUT, refused_approvals=("desktop-ga",))),
        # Reviews GitHub failed without refusing them, since when (`unreviewed_since`, stored
        # while any; the second told, as `refused_approvals` says).
        _rollout_sample(
            "rollout:unreviewed",
            replace(
                ROLLOUT,
                refused_approvals=("relay-rollout-50",),
                unreviewed_since=(("relay-rollout-50", AT), ("desktop-ga", AT)),
            ),
        ),
        # As stored before the context's later keys (told_outside, unread_since, ...) existed.
        earlier(_rollout_sample("rollout:new", NEW), at=lambda data: data["context"]),
        # The commit the preflight read the tag at (beside "preflight", which 091736d reads).
        _rollout_sample(
            "rollout:preflight-commit",
            replace(NEW, preflight=replace(ALL_CLEAR, tag_commit="c0ffee0")),
        ),
        # Where a person's refused Dispatch found the tag moved (the card offers Re-check).
        _rollout_sample(
            "rollout:tag-moved",
            replace(NEW, preflight=replace(ALL_CLEAR, tag_commit="c0ffee0", moved_to="decaf00")),
        ),
        Sample("verdict", VERDICT, verdict_to_json, verdict_from_json),
        earlier(Sample("verdict:plain", PLAIN, verdict_to_json, verdict_from_json)),
        *(
            _enum(cls)
            for cls in (Phase, TrackState, StageState, CheckState, StopKind, Verdict, GateKind)
        ),
        _enum(GateReason),
        _enum(RunFate),
        Sample("stop_reason", ROLLED_BACK, reason_to_json, reason_from_json),
        Sample(
            "stop_reason:legacy",
            "cancelled by <@U1>",
            lambda text: text,
            reason_from_json,
            decoded=StopReason(StopKind.LEGACY, detail="cancelled by <@U1>"),
        ),
        Sample("check", Check(CheckState.SKIPPED, "old", "U2"), check_to_json, check_from_json),
        _schedule_sample("schedule:frozen", replace(FROZEN, tag_commit="c0ffee0")),
        # As stored before a schedule kept its tag's commit.
        earlier(_schedule_sample("schedule:frozen", FROZEN)),
    ],
)


# -- Slack ---------------------------------------------------------------------------------------


def _payload(value: Any) -> Any:
    return json.loads(value.encode())


def _decoder(cls: Any) -> Any:
    return lambda data: cls.decode(json.dumps(data, separators=(",", ":")))


def _value(name: str, value: Any) -> Sample:
    return Sample(name, value, _payload, _decoder(type(value)))


def _walkthrough(name: str, walkthrough: Walkthrough) -> Sample:
    """An npm walkthrough as its card's button carries it (the JSON of encode_state)."""
    return Sample(
        name,
        walkthrough,
        lambda w: json.loads(encode_state(w)),
        lambda data: decode_state(json.dumps(data)),
    )


SLACK = Family(
    "slack",
    "The action and callback ids the bot puts on cards and modals, and the values they carry "
    "(bot/adapters/slack/actions.py, npm_views.py): a card posted before the upgrade is clicked "
    "after it.",
    [
        _enum(slack.Action),
        _enum(slack.Callback),
        _enum(NpmAction),
        _enum(Hold),
        _value(
            "button",
            slack.ButtonValue(
                rollout_id=RID, track="relay", stage="canary", version=3, hold=Hold.PASS, attempt=2
            ),
        ),
        _value("button:rollout_only", slack.ButtonValue(rollout_id=RID)),
        _value(
            "button:confirm_flags",
            slack.ButtonValue(
                rollout_id=RID, version=3, commit="4aedc969ae180507455ecddaefcb0e32834c6847"
            ),
        ),
        _value("button:confirm_flags:no_tag", slack.ButtonValue(rollout_id=RID, commit="")),
        _value("run", slack.RunValue(run_id=7001)),
        _value(
            "figures",
            slack.FiguresMetadata(
                rollout_id=RID, track="relay", stage="canary", channel_id="C1", window=1796630400
            ),
        ),
        _value(
            "extend",
            slack.ExtendMetadata(
                rollout_id=RID, track="relay", stage="canary", version=3, channel_id="C1"
            ),
        ),
        _value(
            "redeploy",
            slack.RedeployMetadata(rollout_id=RID, track="relay", tag="v1.4.1", channel_id="C1"),
        ),
        _value("link_run", slack.LinkMetadata(rollout_id=RID, channel_id="C1")),
        _value("override", slack.OverrideMetadata(rollout_id=RID, version=3, channel_id="C1")),
        _value("override_adopt", slack.AdoptOverrideMetadata(run_id=7001, channel_id="C1")),
        _walkthrough("npm_walkthrough", WALKTHROUGH),
        # Since e248966: the job's trusted publishing read when drawn, and the rules' new kinds
        # (a GitHub App's custom rule, an unprotected branch under "protected branches only", the
        # bot's own App's rule, which it never answers for the npm job).
        _walkthrough(
            "npm_walkthrough_trusted",
            Walkthrough(
                trusted_publishing=True,
                secret=SecretCheck(
                    max_age_days=80,
                    environment="npm",
                    rules=(1, 0, int(RuleFlag.TAGS_REFUSED)),
                    app_rule=True,
                    ref_unprotected=True,
                    own_app_rule=True,
                ),
            ),
        ),
        # Step 3 found trusted publishing only; the workflow read since says otherwise.
        _walkthrough(
            "npm_walkthrough_trusted_no_more",
            Walkthrough(
                trusted_publishing=False,
                secret=SecretCheck(max_age_days=80, oidc=True, oidc_only=True),
            ),
        ),
    ],
)
