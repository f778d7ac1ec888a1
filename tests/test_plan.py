"""The rollout plan: the built-in Scriptum plan, the schema's rules, errors that name the key."""

from __future__ import annotations

import copy
from datetime import timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.durations import format_duration, parse_duration
from bot.domain.errors import PlanError
from bot.domain.gate import GateKind, GateReason, Verdict
from bot.domain.plan import PromoteMode, RolloutPlan, StaticMetrics
from bot.plan_file import load_plan, parse_plan
from sandbox.workflows import deployment_strategy_workflow

DEFAULT_TEXT = resources.files("bot.domain").joinpath("default_plan.yml").read_text("utf-8")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "plan.md"


def default_data() -> dict[str, Any]:
    data = yaml.load(DEFAULT_TEXT, Loader=yaml.CSafeLoader)
    assert isinstance(data, dict)
    return data


def dump(data: object) -> str:
    return yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False)


def problems_of(data: object) -> list[str]:
    """The problem lines of the PlanError for `data` (which must be invalid)."""
    with pytest.raises(PlanError) as caught:
        parse_plan(dump(data), "plan.yml")
    header, *lines = caught.value.message.splitlines()
    assert header == "the rollout plan plan.yml is invalid:"
    return [line.strip() for line in lines]


# The built-in plan is SPEC's Scriptum plan.


def test_default_plan_matches_the_runbook() -> None:
    plan = load_plan(None)
    assert (plan.workflow.file, plan.workflow.name, plan.workflow.ref) == (
        "deployment-strategy.yml",
        "Deployment Strategy",
        "main",
    )
    assert plan.preflight.job == "Relay preflight checks"
    assert plan.preflight.migrations.directory == "crates/relay/src/db/migrations"
    assert plan.preflight.migrations.destructive == ("DROP TABLE", "DROP COLUMN")
    relay = plan.track("relay")
    assert relay.gate is GateKind.RELAY
    assert [(s.key, s.percent, s.environment, s.job, s.window) for s in relay.stages] == [
        ("canary", 5, "relay-canary-5", "Relay rollout 5% canary (30m)", timedelta(minutes=30)),
        ("half", 50, "relay-rollout-50", "Relay rollout 50% (60m)", timedelta(minutes=60)),
        ("full", 100, "relay-rollout-100", "Relay rollout 100%", None),
    ]
    assert (relay.on_failure.environment, relay.on_failure.job) == (
        "relay-rollback",
        "Relay auto-rollback",
    )
    assert relay.thresholds.crash_multiplier == Decimal("2.0")
    assert relay.thresholds.error_threshold == Decimal("0.01")
    desktop = plan.track("desktop")
    assert desktop.gate is GateKind.DESKTOP
    assert [(s.ring, s.environment, s.job) for s in desktop.stages] == [
        ("internal", "desktop-internal", "Desktop/CLI ring deploy - internal"),
        ("beta", "desktop-beta", "Desktop/CLI ring deploy - beta"),
        ("ga", "desktop-ga", "Desktop/CLI ring deploy - GA"),
    ]
    assert [s.window for s in desktop.stages] == [timedelta(hours=1), timedelta(hours=2), None]
    assert (desktop.on_failure.environment, desktop.on_failure.job) == (
        "desktop-kill-switch",
        "Desktop/CLI kill-switch",
    )
    assert desktop.thresholds.error_threshold is None
    observed = [s.observe for t in plan.tracks.values() for s in t.stages[:-1]]
    assert [o.promote if o else None for o in observed] == [PromoteMode.MANUAL] * 4


def test_default_plan_fills_every_workflow_input_as_a_string() -> None:
    inputs = load_plan(None).dispatch_inputs(
        tag="v1.4.2",
        feature_flags_ready=True,
        baselines={"relay": Decimal("0.001"), "desktop": Decimal("2E-3")},
    )
    workflow = deployment_strategy_workflow()
    assert set(inputs) == {spec.name for spec in workflow.inputs}
    assert inputs["relay_image_tag"] == "v1.4.2"
    assert inputs["feature_flags_ready"] == "true"
    assert inputs["relay_baseline_crash_rate"] == inputs["relay_half_crash_rate"] == "0.001"
    assert inputs["relay_canary_error_rate"] == "0"
    assert inputs["desktop_beta_crash_rate"] == "0.002"


def test_docs_show_the_default_plan_in_full() -> None:
    docs = DOCS.read_text("utf-8")
    assert f"```yaml\n{DEFAULT_TEXT}```" in docs


def test_docs_error_example_is_what_the_bot_says() -> None:
    data = default_data()
    data["tracks"]["relay"]["stages"][1]["observe"]["window"] = "6o"
    data["tracks"]["relay"]["stages"][1]["colour"] = "blue"
    data["tracks"]["desktop"]["thresholds"]["error_threshold"] = "0.01"
    docs = DOCS.read_text("utf-8")
    for line in problems_of(data):
        assert f"  {line}\n" in docs


def test_accessors() -> None:
    plan = load_plan(None)
    relay = plan.track("relay")
    assert relay.stage("half").percent == 50
    assert relay.next_stage("canary") == relay.stage("half")
    assert relay.next_stage("full") is None
    assert relay.stage_for_environment("Relay-Rollout-50") == relay.stage("half")
    assert relay.stage_for_environment("desktop-beta") is None
    assert relay.stage_for_job("Relay rollout 100%") == relay.stage("full")
    assert relay.stage_for_job("Relay rollout 100% ") is None
    with pytest.raises(KeyError, match="no stage 'quarter'"):
        relay.stage("quarter")
    with pytest.raises(KeyError, match="no track 'mobile'"):
        plan.track("mobile")


def test_track_gate_uses_the_plan_thresholds() -> None:
    plan = load_plan(None)
    relay, desktop = plan.track("relay"), plan.track("desktop")
    at_limit = relay.evaluate_gate(
        baseline_crash=Decimal("0.001"),
        current_crash=Decimal("0.002"),
        current_error=Decimal("0.01"),
    )
    assert at_limit.verdict is Verdict.PASS
    errors = relay.evaluate_gate(
        baseline_crash=Decimal("0.001"), current_crash=Decimal("0"), current_error=Decimal("0.02")
    )
    assert errors.reason is GateReason.ERROR_RATE
    ring = desktop.evaluate_gate(baseline_crash=Decimal("0"), current_crash=Decimal("0.1"))
    assert (ring.verdict, ring.reason) == (Verdict.KILL_SWITCH, GateReason.ZERO_BASELINE)


def test_min_sample_makes_the_track_gate_inconclusive() -> None:
    data = default_data()
    data["tracks"]["relay"]["thresholds"]["min_sample"] = 1000
    relay = parse_plan(dump(data), "plan.yml").track("relay")
    verdict = relay.evaluate_gate(
        baseline_crash=Decimal("0.001"),
        current_crash=Decimal("0.001"),
        current_error=Decimal("0"),
        sample=999,
    )
    assert verdict.verdict is Verdict.INCONCLUSIVE


def test_migrations_rule_is_a_case_sensitive_word_match() -> None:
    rule = load_plan(None).preflight.migrations
    sql = "ALTER TABLE a ADD COLUMN b int;\nDROP TABLE old;\ndrop table x;\nXDROP TABLEY;\n"
    sql += "-- keep: DROP COLUMN_NAME\nALTER TABLE t DROP COLUMN c;"
    assert rule.offending_lines(sql) == [
        (2, "DROP TABLE old;"),
        (6, "ALTER TABLE t DROP COLUMN c;"),
    ]
    assert rule.applies_to("crates/relay/src/db/migrations/0004_add.sql")
    assert not rule.applies_to("crates/relay/src/db/migrations/README.md")
    assert not rule.applies_to("crates/relay/src/db/migrations/old/0001.sql")


def test_a_static_metrics_plan() -> None:
    data = default_data()
    data["tracks"]["relay"]["metrics"] = {
        "source": "static",
        "baseline_crash_rate": "0.001",
        "stages": {
            "canary": {"crash_rate": "0.001", "error_rate": "0.002", "sample": 5000},
            "half": {"crash_rate": 0.0015, "error_rate": "1e-3"},
        },
    }
    metrics = parse_plan(dump(data), "plan.yml").track("relay").metrics
    assert isinstance(metrics, StaticMetrics)
    assert metrics.stages["half"].crash_rate == Decimal("0.0015")
    assert metrics.stages["half"].error_rate == Decimal("0.001")
    assert metrics.stages["canary"].sample == 5000


def test_plan_round_trips_through_yaml() -> None:
    plan = load_plan(None)
    dumped = dump(plan.model_dump(mode="json", by_alias=True))
    assert parse_plan(dumped, "dumped") == plan


def test_plan_file_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "plan.yml"
    path.write_text(DEFAULT_TEXT.replace("ref: main", "ref: release"), encoding="utf-8")
    assert load_plan(path).workflow.ref == "release"


# Every rule of the schema, each error naming the key.

Mutation = tuple[str, Any]


def mutate(data: dict[str, Any], where: str, value: Any) -> None:
    """Set (or, with value `...`, delete) the key at a dotted path: `tracks.relay.stages.1.key`."""
    *parents, last = where.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value


RULES: list[tuple[list[Mutation], str]] = [
    (
        [("tracks.relay.stages.1.observe.window", "6o")],
        "tracks.relay.stages[1].observe.window: '6o' is not a duration (use 90s, 30m or 1h)",
    ),
    (
        [("tracks.relay.stages.0.observe.window", 30)],
        "tracks.relay.stages[0].observe.window: 30 is not a duration (use 90s, 30m or 1h)",
    ),
    (
        [("tracks.relay.stages.0.observe.window", "0m")],
        "tracks.relay.stages[0].observe.window: '0m' is not longer than zero",
    ),
    (
        [("tracks.relay.stages.0.observe.promote", "sometimes")],
        "tracks.relay.stages[0].observe.promote: input should be 'manual' or 'auto', not 'some",
    ),
    (
        [("tracks.relay.stages.1.key", "canary")],
        "tracks.relay.stages[1].key: 'canary' is already the key of stages[0]",
    ),
    (
        [("tracks.relay.stages.1.key", "Half")],
        "tracks.relay.stages[1].key: 'Half' is not a valid key",
    ),
    (
        [("tracks.relay.stages.1.percent", 5)],
        "tracks.relay.stages[1].percent: 5 is not above the previous stage's 5",
    ),
    (
        [("tracks.relay.stages.2.percent", 90)],
        "tracks.relay.stages[2].percent: the last stage must reach 100, not 90",
    ),
    (
        [("tracks.relay.stages.1.percent", 101)],
        "tracks.relay.stages[1].percent: input should be less than or equal to 100",
    ),
    (
        [("tracks.relay.stages.1.percent", "50")],
        "tracks.relay.stages[1].percent: input should be a valid integer",
    ),
    (
        [("tracks.relay.stages.1.ring", "half")],
        "tracks.relay.stages[1]: needs exactly one of percent (a share of traffic) or ring",
    ),
    (
        [("tracks.desktop.stages.1.ring", ...)],
        "tracks.desktop.stages[1]: needs exactly one of percent",
    ),
    (
        [("tracks.desktop.stages.1.ring", ...), ("tracks.desktop.stages.1.percent", 50)],
        "tracks.desktop.stages[1]: mixes percent and ring stages in one track",
    ),
    (
        [("tracks.relay.stages.1.observe", ...)],
        "tracks.relay.stages[1].observe: is required on every stage but the last",
    ),
    (
        [("tracks.relay.stages.2.observe", {"window": "1h"})],
        "tracks.relay.stages[2].observe: the last stage has no next stage to hold",
    ),
    (
        [("tracks.relay.stages", [])],
        "tracks.relay.stages: must not be empty",
    ),
    (
        [("tracks.relay.thresholds.error_threshold", ...)],
        "tracks.relay.thresholds.error_threshold: is required by the relay gate",
    ),
    (
        [("tracks.desktop.thresholds.error_threshold", "0.01")],
        "tracks.desktop.thresholds.error_threshold: the desktop gate reads no error rate",
    ),
    (
        [("tracks.relay.thresholds.crash_multiplier", "-2")],
        "tracks.relay.thresholds.crash_multiplier: input should be greater than or equal to 0",
    ),
    (
        [("tracks.relay.thresholds.crash_multiplier", "inf")],
        "tracks.relay.thresholds.crash_multiplier: input should be a finite number",
    ),
    (
        # Rates are fractions: an error threshold of 1 (meant as 1%) could never roll back.
        [("tracks.relay.thresholds.error_threshold", "1")],
        "tracks.relay.thresholds.error_threshold: 1 is 100%: an error rate never exceeds it "
        "(rates are fractions: 0.01 = 1%)",
    ),
    (
        [("tracks.relay.thresholds.error_threshold", 5)],
        "tracks.relay.thresholds.error_threshold: 5 is 500%: an error rate never exceeds it",
    ),
    (
        [("tracks.relay.metrics.baseline_crash_rate", "2")],
        "tracks.relay.metrics.baseline_crash_rate: 2 is 200%: a baseline crash rate is below 1 "
        "(100%, every session crashing); rates are fractions: write 0.02 for 2%",
    ),
    (
        # `1` meant as 1%: twice 100% is a limit no crash rate exceeds.
        [("tracks.desktop.metrics.baseline_crash_rate", 1)],
        "tracks.desktop.metrics.baseline_crash_rate: 1 is 100%: a baseline crash rate is below 1 "
        "(100%, every session crashing); rates are fractions: write 0.01 for 1%",
    ),
    (
        # `0.5` meant as 0.5%: twice 50% is a limit of 100%, which no crash rate exceeds.
        [("tracks.relay.metrics.baseline_crash_rate", "0.5")],
        "tracks.relay.metrics.baseline_crash_rate: 0.5 with crash_multiplier 2.0 is a limit of "
        "100%: no crash rate exceeds it, so the crash rule could never fail (rates are "
        "fractions: write 0.005 for 0.5%)",
    ),
    (
        [("tracks.relay.thresholds.crash_multiplier", "1000")],
        "tracks.relay.metrics.baseline_crash_rate: 0.001 with crash_multiplier 1000 is a limit "
        "of 100%: no crash rate exceeds it, so the crash rule could never fail (lower "
        "crash_multiplier)",
    ),
    (
        # -0 passes `ge=0` but no gate can use it (a signed figure is unusable).
        [("tracks.relay.thresholds.crash_multiplier", "-0")],
        "tracks.relay.thresholds.crash_multiplier: -0 is negative: write 0",
    ),
    (
        [("tracks.desktop.metrics.baseline_crash_rate", -0.0)],
        "tracks.desktop.metrics.baseline_crash_rate: -0.0 is negative: write 0",
    ),
    (
        [
            (
                "tracks.desktop.metrics",
                {
                    "source": "static",
                    "baseline_crash_rate": "0.001",
                    "stages": {"internal": {"crash_rate": "1.5"}, "beta": {"crash_rate": "0"}},
                },
            )
        ],
        "tracks.desktop.metrics.stages.internal.crash_rate: 1.5 is above 1 (100%)",
    ),
    (
        [("tracks.relay.thresholds.min_sample", -1)],
        "tracks.relay.thresholds.min_sample: input should be greater than or equal to 0",
    ),
    (
        [("tracks.relay.gate", "mobile")],
        "tracks.relay.gate: input should be 'relay' or 'desktop', not 'mobile'",
    ),
    (
        [("tracks.relay.metrics.source", "graphite")],
        "tracks.relay.metrics.source: 'graphite' is not one of 'static', 'manual', "
        "'prometheus', 'sentry'",
    ),
    (
        [("tracks.relay.metrics.source", ...)],
        "tracks.relay.metrics: needs a 'source' key",
    ),
    (
        [("tracks.relay.metrics.baseline_crash_rate", ...)],
        "tracks.relay.metrics.baseline_crash_rate: is required",
    ),
    (
        [("tracks.relay.metrics", {"source": "static", "baseline_crash_rate": "0"})],
        "tracks.relay.metrics.stages: has no figures for the observed stage 'canary'",
    ),
    (
        [
            (
                "tracks.relay.metrics",
                {
                    "source": "static",
                    "baseline_crash_rate": "0",
                    "stages": {
                        "canary": {"crash_rate": "0"},
                        "half": {"crash_rate": "0", "error_rate": "0"},
                        "quarter": {"crash_rate": "0", "error_rate": "0"},
                    },
                },
            )
        ],
        "tracks.relay.metrics.stages.canary.error_rate: is required by the relay gate",
    ),
    (
        [
            (
                "tracks.relay.metrics",
                {
                    "source": "static",
                    "baseline_crash_rate": "0",
                    "stages": {
                        "canary": {"crash_rate": "0", "error_rate": "0"},
                        "half": {"crash_rate": "0", "error_rate": "0"},
                        "quarter": {"crash_rate": "0", "error_rate": "0"},
                    },
                },
            )
        ],
        "tracks.relay.metrics.stages.quarter: 'quarter' is not a stage of this track",
    ),
    (
        [
            (
                "tracks.desktop.metrics",
                {
                    "source": "static",
                    "baseline_crash_rate": "0",
                    "stages": {
                        "internal": {"crash_rate": "0", "error_rate": "0"},
                        "beta": {"crash_rate": "0"},
                    },
                },
            )
        ],
        "tracks.desktop.metrics.stages.internal.error_rate: the desktop gate reads no error rate",
    ),
    (
        [("tracks.desktop.stages.0.environment", "Relay-Canary-5")],
        "tracks.desktop.stages[0].environment: already used by tracks.relay.stages[0]",
    ),
    (
        [("tracks.desktop.on_failure.environment", "relay-rollback")],
        "tracks.desktop.on_failure.environment: already used by tracks.relay.on_failure",
    ),
    (
        [("tracks.relay.stages.1.job", "Relay preflight checks")],
        "tracks.relay.stages[1].job: already used by preflight.job",
    ),
    (
        [("inputs.relay_baseline_crash_rate.track", "relai")],
        "inputs.relay_baseline_crash_rate.track: 'relai' is not a track of this plan (relay, desk",
    ),
    (
        [("inputs.relay_image_tag.from", "image")],
        "inputs.relay_image_tag.from: 'image' is not one of 'tag', 'feature_flags', 'baseline'",
    ),
    (
        [("inputs.relay_canary_error_rate.value", 0)],
        "inputs.relay_canary_error_rate.value: input should be a valid string, not 0",
    ),
    (
        [("inputs.relay-image tag", {"from": "tag"})],
        "inputs.relay-image tag: 'relay-image tag' is not a valid workflow input name",
    ),
    (
        [("tracks.Relay", {})],
        "tracks.Relay: 'Relay' is not a valid key",
    ),
    (
        [("workflow.file", ...)],
        "workflow.file: is required",
    ),
    (
        [("workflow.name", "")],
        "workflow.name: string should have at least 1 character",
    ),
    (
        [("preflight.migrations.destructive", [])],
        "preflight.migrations.destructive: must not be empty",
    ),
    (
        [("preflight.check_image_published", "perhaps")],
        "preflight.check_image_published: input should be a valid boolean",
    ),
    (
        [("tracks.relay.stages.0.colour", "blue")],
        "tracks.relay.stages[0].colour: unknown key",
    ),
    (
        [("version", 2)],
        "version: input should be 1, not 2",
    ),
]


@pytest.mark.parametrize(("mutations", "expected"), RULES)
def test_a_bad_plan_names_the_key_and_the_problem(mutations: list[Mutation], expected: str) -> None:
    data = default_data()
    for where, value in mutations:
        mutate(data, where, value)
    problems = problems_of(data)
    assert any(line.startswith(expected) for line in problems), problems


@settings(max_examples=200)
@given(
    baseline=st.decimals(min_value=0, max_value=2, places=4),
    multiplier=st.decimals(min_value=0, max_value=1000, places=2),
)
def test_every_crash_rule_a_plan_file_keeps_can_fail(
    baseline: Decimal, multiplier: Decimal
) -> None:
    """A rate of 1 is 100%: a plan whose fixed baseline, times its multiplier, is a limit no
    crash rate exceeds (`1` or `0.5` meant as percentages) is refused; any other's crash rule
    fails on a release whose every session crashes."""
    data = default_data()
    for track in ("relay", "desktop"):
        mutate(data, f"tracks.{track}.metrics.baseline_crash_rate", str(baseline))
        mutate(data, f"tracks.{track}.thresholds.crash_multiplier", str(multiplier))
    try:
        plan = parse_plan(dump(data), "plan.yml")
    except PlanError as refused:
        assert baseline >= 1 or baseline * multiplier >= 1, refused.message
        assert "rates are fractions" in refused.message or "lower crash_multiplier" in (
            refused.message
        )
        return
    for track in ("relay", "desktop"):
        verdict = plan.track(track).evaluate_gate(
            baseline_crash=baseline, current_crash=Decimal(1), current_error=Decimal(0)
        )
        assert verdict.verdict in (Verdict.ROLLBACK, Verdict.KILL_SWITCH), verdict


def test_every_problem_is_reported_at_once() -> None:
    data = default_data()
    mutate(data, "workflow.ref", 7)
    mutate(data, "tracks.relay.stages.0.observe.window", "6o")
    mutate(data, "tracks.desktop.stages.1.percent", 50)  # a ring and a percent
    problems = problems_of(data)
    assert len(problems) == 3, problems
    assert [line.split(":")[0] for line in problems] == [
        "workflow.ref",
        "tracks.relay.stages[0].observe.window",
        "tracks.desktop.stages[1]",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the rollout plan plan.yml is empty"),
        ("# nothing\n", "the rollout plan plan.yml is empty"),
        ("workflow: [unclosed\n", "the rollout plan plan.yml is not valid YAML: line 2"),
        (
            "version: 1\nversion: 1\n",
            "is not valid YAML: line 2, column 1: duplicate key 'version'",
        ),
        ("- a list\n", "plan.yml is invalid:\n  (the plan): input should be a valid dictionary"),
        ("!!python/object:os.system {}\n", "is not valid YAML"),
    ],
)
def test_unreadable_yaml(text: str, expected: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(text, "plan.yml")
    assert expected in caught.value.message
    assert caught.value.code == "invalid_plan"


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yml"
    with pytest.raises(PlanError, match=f"cannot read the rollout plan {missing}: No such file"):
        load_plan(missing)
    with pytest.raises(PlanError, match="Is a directory"):
        load_plan(tmp_path)
    binary = tmp_path / "plan.yml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PlanError, match=f"{binary}: it is not UTF-8 text"):
        load_plan(binary)
    bad = tmp_path / "bad.yml"
    bad.write_text("version: 1\n", encoding="utf-8")
    with pytest.raises(PlanError, match=f"the rollout plan {bad} is invalid"):
        load_plan(bad)


# Property: any random damage to a valid plan gives a PlanError naming the damaged key.


def leaf_paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    paths: list[tuple[str | int, ...]] = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths += leaf_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths += leaf_paths(value, (*prefix, index))
    return paths


def dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def related(a: str, b: str) -> bool:
    """One path is the other or leads to it."""
    short, long = sorted((a, b), key=len)
    return long.startswith(short) and (len(long) == len(short) or long[len(short)] in ".[")


DEFAULT_PATHS = leaf_paths(default_data())
JUNK = st.sampled_from([None, "", "6o", -1, 0, 1.5, [], {}, ["x"], {"x": 1}, True, "x" * 300])


@settings(max_examples=200)
@given(
    path=st.sampled_from(DEFAULT_PATHS),
    action=st.sampled_from(["replace", "delete", "add"]),
    junk=JUNK,
)
def test_damage_is_reported_at_the_damaged_key(
    path: tuple[str | int, ...], action: str, junk: object
) -> None:
    data = copy.deepcopy(default_data())
    parent: Any = data
    for part in path[:-1]:
        parent = parent[part]
    if action == "replace":
        parent[path[-1]] = junk
        damaged = path
    elif action == "delete":
        if isinstance(parent, list):
            return  # removing a list item moves every later item: not one key's damage
        del parent[path[-1]]
        damaged = path
    else:
        if not isinstance(parent, dict):
            return
        parent["colour"] = junk
        damaged = (*path[:-1], "colour")
    try:
        plan = parse_plan(dump(data), "plan.yml")
    except PlanError as error:
        lines = error.message.splitlines()[1:]
        assert lines, error.message
        named = [line.strip().split(": ", 1)[0] for line in lines]
        # A key others refer to (a deleted track) is named in the problems of the references.
        quoted = f"'{damaged[-1]}'"
        assert any(related(name, dotted(damaged)) for name in named) or any(
            quoted in line for line in lines
        ), (dotted(damaged), lines)
    else:
        assert isinstance(plan, RolloutPlan)


# Durations.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1h 30m 5s", timedelta(hours=1, minutes=30, seconds=5)),
        (" 2H ", timedelta(hours=2)),
        ("720h", timedelta(days=30)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("6o", "'6o' is not a duration (use 90s, 30m or 1h)"),
        ("", "'' is not a duration"),
        ("30", "'30' is not a duration"),
        ("1.5h", "is not a duration"),
        ("30m1h", "is not a duration"),
        ("-5m", "is not a duration"),
        ("2d", "is not a duration"),
        ("0m", "'0m' is not longer than zero"),
        ("0h0m0s", "is not longer than zero"),
        ("721h", "'721h' is longer than 720h"),
        ("9" * 12 + "s", "is longer than 720h"),
        ("9" * 5000 + "s", "is not a duration"),
    ],
)
def test_bad_durations(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert problem in str(caught.value)
    assert len(str(caught.value)) < 120


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(minutes=30), "30m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(days=2), "48h"),
        (timedelta(0), "0s"),
        (timedelta(hours=1, seconds=1), "1h1s"),
    ],
)
def test_format_duration(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text


def test_format_duration_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError):
        format_duration(timedelta(seconds=-1))
    with pytest.raises(ValueError):
        format_duration(timedelta(seconds=1.5))


@given(st.integers(min_value=1, max_value=30 * 24 * 3600))
def test_durations_round_trip(seconds: int) -> None:
    duration = timedelta(seconds=seconds)
    assert parse_duration(format_duration(duration)) == duration


@given(
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=0, max_value=200),
)
def test_written_durations_add_up(hours: int, minutes: int, seconds: int) -> None:
    text = f"{hours}h{minutes}m{seconds}s"
    total = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if total == timedelta(0):
        with pytest.raises(ValueError, match="not longer than zero"):
            parse_duration(text)
    else:
        assert parse_duration(text) == total


@given(st.text(max_size=30))
def test_any_text_is_a_duration_or_a_value_error(text: str) -> None:
    try:
        duration = parse_duration(text)
    except ValueError as error:
        assert "\n" not in str(error)
    else:
        assert timedelta(0) < duration <= timedelta(days=30)
