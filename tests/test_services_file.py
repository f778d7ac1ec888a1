"""ROLLOUT_SERVICES: the services file read into services, every problem at once under its
dotted path; a bot without it keeps its one service of GITHUB_REPOSITORY and friends."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from command_line import run_here
from test_cli import base_env
from test_rollout_machine import running

from bot.config import ConfigError, Settings, load_settings
from bot.domain.errors import PlanError, ServicesError
from bot.domain.metrics import stage_window
from bot.domain.plan.metrics import fill
from bot.domain.rollout_command import Subcommand, named_service
from bot.domain.service import DEFAULT_SERVICE
from bot.plan_file import load_plan, parse_plan
from bot.service_file import load_services
from sandbox.config import bot_environment
from sandbox.plans import fast_plan

TWO = {
    "services": {
        "relay": {
            "repository": "scriptum/scriptum",
            "release_channels": ["C0RELEASES"],
            "approvers": ["U0RELMGR01", "S0RELEASE1"],
        },
        "billing-api": {
            "repository": "scriptum/billing-api",
            "plan": "plans/billing.yml",
            "release_channels": ["C0RELEASES", "C0BILLING1"],
            "approvers": ["U0BILLING1"],
            "failure_channel": "C0ANNOUNCE",
        },
    }
}


def write(tmp_path: Path, data: object, *, plan: bool = True) -> Path:
    if plan:
        (tmp_path / "plans").mkdir(exist_ok=True)
        (tmp_path / "plans" / "billing.yml").write_text(fast_plan(tmp_path / "figures.json"))
    path = tmp_path / "services.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_services_are_read_in_order_with_their_plans(tmp_path: Path) -> None:
    relay, billing = load_services(write(tmp_path, TWO))
    assert (relay.name, relay.repository) == ("relay", "scriptum/scriptum")
    assert relay.plan == load_plan(None)  # no plan: the built-in one
    assert relay.approvers == ("U0RELMGR01", "S0RELEASE1")
    assert billing.name == "billing-api"
    assert billing.plan.tracks == load_plan(tmp_path / "plans" / "billing.yml").tracks
    assert billing.release_channels == ("C0RELEASES", "C0BILLING1")
    assert billing.plan.notifications.failure_channel == "C0ANNOUNCE"
    assert relay.plan.notifications.failure_channel is None


def test_every_problem_is_said_at_once_under_its_path(tmp_path: Path) -> None:
    """docs/services.md shows a bad channel and an unreadable plan said together: what pydantic
    finds in one service and another service's missing plan file are in one message, so one
    round of fixes is enough."""
    bad = {
        "services": {
            "Relay": {
                "repository": "scriptum",
                "release_channels": ["general"],
                "approvers": [],
                "colour": "red",
            },
            "billing": {
                "repository": "scriptum/billing",
                "plan": "missing.yml",
                "release_channels": ["C0BILLING1"],
                "approvers": ["U0BILLING1"],
            },
        }
    }
    with pytest.raises(ServicesError) as raised:
        load_services(write(tmp_path, bad, plan=False))
    message = raised.value.message
    assert "services.yml is invalid" in message
    assert "services.Relay: 'Relay': not a service name" in message
    assert "services.Relay.repository: 'scriptum': not owner/name" in message
    assert "services.Relay.release_channels[0]: 'general': not a Slack channel id" in message
    assert "services.Relay.approvers: must not be empty" in message
    assert "services.Relay.colour: unknown key (docs/services.md lists every key)" in message
    assert "services.billing.plan: cannot read the rollout plan" in message


def test_a_bad_plan_and_a_repository_of_two_services_are_said_together(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text("tracks: 3\n")
    data = {
        "services": {
            "relay": TWO["services"]["relay"],
            "relay-two": {**TWO["services"]["relay"], "repository": "Scriptum/Scriptum"},
            "billing": {**TWO["services"]["billing-api"], "plan": "bad.yml"},
        }
    }
    with pytest.raises(ServicesError) as raised:
        load_services(write(tmp_path, data))
    message = raised.value.message
    assert "services.relay-two.repository: Scriptum/Scriptum is already services.relay's" in message
    assert "services.billing.plan: the rollout plan" in message and "bad.yml is invalid" in message


@pytest.mark.parametrize("repository", ["scriptum/scriptum.git", "scriptum/scriptum.wiki", "a/.."])
def test_a_repository_name_github_cannot_have_is_refused(tmp_path: Path, repository: str) -> None:
    """GitHub drops a `.git` ending (`scriptum/scriptum.git` is the clone URL's tail), so no
    delivery would ever name it: a service with it would ignore every webhook, and could
    share its repository with the service of `scriptum/scriptum`."""
    data = {"services": {"relay": {**TWO["services"]["relay"], "repository": repository}}}
    with pytest.raises(ServicesError) as raised:
        load_services(write(tmp_path, data))
    assert f"services.relay.repository: '{repository}': not owner/name" in raised.value.message
    assert "does not end in .git or .wiki" in raised.value.message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("services: {}\n", "services: must not be empty"),
        ("services:\n  a: 1\n  a: 2\n", "duplicate key 'a'"),
        ("[", "is not valid YAML"),
    ],
)
def test_an_empty_or_broken_file_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "services.yml"
    path.write_text(text)
    with pytest.raises(ServicesError, match=problem):
        load_services(path)


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ServicesError, match="cannot read the services file"):
        load_services(tmp_path / "nowhere.yml")


def env(tmp_path: Path, **changes: str | None) -> dict[str, str]:
    base = bot_environment(
        slack_api_url="http://127.0.0.1:9/api/",
        github_api_url="http://127.0.0.1:9/",
        database_url=f"sqlite:///{tmp_path}/bot.db",
    )
    for name, value in changes.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def services_env(tmp_path: Path, data: object) -> dict[str, str]:
    """The environment of a bot whose services come from a services file of `data` alone,
    without the one service's GITHUB_REPOSITORY, RELEASE_CHANNELS and ROLLOUT_APPROVERS."""
    return env(
        tmp_path,
        ROLLOUT_SERVICES=str(write(tmp_path, data)),
        GITHUB_REPOSITORY=None,
        RELEASE_CHANNELS=None,
        ROLLOUT_APPROVERS=None,
    )


def settings(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> Settings:
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "SLACK_", "ROLLOUT_", "RELEASE_")):
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return load_settings(Settings, env_file=None)


def test_without_a_services_file_the_bot_has_one_default_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (service,) = settings(monkeypatch, env(tmp_path)).services()
    assert service.name == DEFAULT_SERVICE
    assert service.repository == "scriptum/scriptum"
    assert service.release_channels == ("C0RELEASES",)
    assert service.approvers == ("U0RELMGR01",)


def test_without_a_services_file_its_one_service_must_be_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = env(tmp_path, GITHUB_REPOSITORY=None, RELEASE_CHANNELS=None, ROLLOUT_APPROVERS=None)
    with pytest.raises(ConfigError) as raised:
        settings(monkeypatch, values)
    assert "GITHUB_REPOSITORY: missing" in raised.value.problems
    assert "RELEASE_CHANNELS: missing" in raised.value.problems
    assert "ROLLOUT_APPROVERS: missing" in raised.value.problems


def test_a_one_service_repository_with_a_git_ending_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GITHUB_REPOSITORY is read by the same rule as a service's `repository`."""
    with pytest.raises(ConfigError) as raised:
        settings(monkeypatch, env(tmp_path, GITHUB_REPOSITORY="scriptum/scriptum.git"))
    assert "GITHUB_REPOSITORY: 'scriptum/scriptum.git' is not owner/name" in raised.value.problems


def test_the_services_file_replaces_the_one_service_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = services_env(tmp_path, TWO)
    names = [service.name for service in settings(monkeypatch, values).services()]
    assert names == ["relay", "billing-api"]


def test_both_a_services_file_and_the_one_service_settings_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = env(tmp_path, ROLLOUT_SERVICES=str(write(tmp_path, TWO)))
    with pytest.raises(ConfigError) as raised:
        settings(monkeypatch, values)
    for name in ("GITHUB_REPOSITORY", "RELEASE_CHANNELS", "ROLLOUT_APPROVERS"):
        assert any(
            p.startswith(f"{name}: each service of ROLLOUT_SERVICES names its own")
            and p.endswith(f"remove {name}")
            for p in raised.value.problems
        ), name


def test_a_bad_services_file_is_one_setting_problem_with_every_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = {"services": {"relay": {"repository": "x", "release_channels": [], "approvers": []}}}
    values = services_env(tmp_path, bad)
    with pytest.raises(ConfigError) as raised:
        settings(monkeypatch, values)
    (problem,) = raised.value.problems
    assert problem.startswith("ROLLOUT_SERVICES: the services file")
    assert "services.relay.repository" in problem and "services.relay.approvers" in problem


def test_check_config_lists_each_service(tmp_path: Path) -> None:
    values = services_env(tmp_path, TWO)
    code, out, err = run_here(["check-config"], env=base_env() | values, cwd=tmp_path)
    assert code == 0, err
    assert "service relay: scriptum/scriptum, channels C0RELEASES" in out
    assert "service billing-api: scriptum/billing-api, channels C0RELEASES, C0BILLING1" in out
    assert "failures also told in C0ANNOUNCE" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("start billing-api v1.4.2", ("billing-api", "start v1.4.2", Subcommand.START)),
        (
            "START Billing-API v1.4.2 --flags-ready",
            ("billing-api", "START v1.4.2 --flags-ready", Subcommand.START),
        ),
        ("status relay", ("relay", "status", Subcommand.STATUS)),
        ("start v1.4.2", (None, "start v1.4.2", Subcommand.START)),
        ("help relay", (None, "help relay", Subcommand.HELP)),
        ("deploy relay", (None, "deploy relay", None)),
        ("", (None, "", None)),
    ],
)
def test_a_service_is_named_right_after_the_subcommand(
    text: str, expected: tuple[str | None, str, Subcommand | None]
) -> None:
    assert named_service(text, {"relay", "billing-api"}) == expected


def test_services_sharing_one_plan_read_their_own_metrics() -> None:
    """`$service` in a query template is the service the rollout releases."""
    rollout = replace(running(), service="billing-api")
    window = stage_window(rollout, track="relay", stage="canary", now=rollout.created_at)
    template = 'sum(rate(errors{service="$service", stage="$stage"}[$window]))'
    filled = fill(template, window.placeholders())
    assert filled.startswith('sum(rate(errors{service="billing-api", stage="canary"}[')
    plan = load_plan(None).model_dump(mode="json", by_alias=True, exclude_none=True)
    plan["tracks"]["relay"]["metrics"] = {
        "source": "prometheus",
        "baseline_crash_rate": "0.001",
        "crash_rate": {"query": template},
        "error_rate": {"query": template},
    }
    parse_plan(yaml.safe_dump(plan), "a plan naming $service")  # accepted
    plan["tracks"]["relay"]["metrics"]["crash_rate"]["query"] = 'x{s="$services"}'
    with pytest.raises(PlanError, match=r"unknown placeholder \$services"):
        parse_plan(yaml.safe_dump(plan), "a plan naming $services")
