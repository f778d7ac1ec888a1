"""`rollout-bot doctor [--manifest PATH] [--tag TAG] [--service NAME]`: check a live install
from the operator's shell: the database `serve` would start on, the timers given up in it
(`bot.cli.doctor_timers`), whether `/metrics` is open and how far the database server's and
Prometheus's clocks are from the bot's (`bot.cli.doctor_clocks`), then the real Slack and
GitHub, each service's (or one's), one line per check with ✓, ✗ or ⚠ (a warning) and the
fix; exit 0 when no check fails, 1 otherwise (2: bad configuration or usage)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import yaml
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError

from bot.adapters.github.install import GitHubInstallReads
from bot.adapters.github.transport import GitHubTransport, github_auth
from bot.adapters.metrics.sources import MetricsEndpoints, unanswered
from bot.adapters.slack.calls import web_api_retries
from bot.adapters.slack.install import SlackInstallReads
from bot.cli.database import serve_refusal, sqlite_file_missing
from bot.cli.doctor_clocks import clock_finding, database_clock_finding, github_clock_finding
from bot.cli.doctor_timers import dead_timer_findings
from bot.cli.options import OperatorParser
from bot.cli.settings import (
    OPEN_METRICS,
    load_for_command,
    release_tag,
    services_named,
    unguarded,
)
from bot.config import Settings
from bot.domain.plan import RolloutPlan, Stage
from bot.domain.service import Service
from bot.services.doctor import Doctor
from bot.services.failures import error_summary
from bot.services.findings import Finding, failed, passed, warned
from storage.db import mask_database_url
from storage.migrate import head_revision

NO_RELEASE = "v0.0.0-doctor"
"""The default `--tag`: no release has it, so its queries answering no data says nothing."""


def argument_parser() -> argparse.ArgumentParser:
    """The command's arguments (tests/test_docs.py reads the docs' examples with them)."""
    parser = OperatorParser(
        prog="rollout-bot doctor",
        description="Check that Slack, GitHub and the metrics source are set up for the bot.",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        default=Path("manifest.yml"),
        help="the Slack app manifest whose bot scopes the token must have (default: %(default)s)",
    )
    parser.add_argument(
        "--tag",
        default=NO_RELEASE,
        type=release_tag,
        help="the release tag the metrics queries are asked for: a release that runs now, "
        "whose queries answering no data is a warning (default: a tag no release has)",
    )
    parser.add_argument("--service", help="check this service only (default: every service)")
    return parser


def main(args: list[str]) -> int:
    options = argument_parser().parse_args(args)  # exits 2 with a usage line on bad arguments
    # The checks' findings say what failed; the adapters' own warnings would say it twice.
    settings = load_for_command(log_level="CRITICAL")
    if settings is None:
        return 2
    services = services_named(settings, options.service, command="doctor")
    if services is None:
        return 2
    scopes, problem = manifest_scopes(options.manifest)
    database = database_finding(settings.database_url)
    findings = [database, *database_clock_finding(settings.database_url, reachable=database.ok)]
    findings += dead_timer_findings(settings, reachable=database.ok)
    findings.append(metrics_endpoint_finding(settings))
    findings += [found for found in (clock_finding(settings), problem) if found]
    for finding in findings:
        sys.stdout.write(finding.line() + "\n")
    for service in services:
        if len(services) > 1:
            sys.stdout.write(f"\nservice {service.name} ({service.repository}):\n")
        found = asyncio.run(examine(settings, service, scopes=scopes, tag=options.tag))
        for finding in found:
            sys.stdout.write(finding.line() + "\n")
        findings += found
    failed = sum(not finding.ok for finding in findings)
    warned = sum(finding.warning for finding in findings)
    warnings = f", {warned} warning{'s' * (warned > 1)}" if warned else ""
    sys.stdout.write(f"\n{len(findings)} checks, {failed} failed{warnings}\n")
    return 1 if failed else 0


def database_finding(database_url: str) -> Finding:
    """Whether `serve` would start on the database: it answers and its migrations are at this
    version's head. A SQLite file that does not exist is said missing, never created (opening
    it would create an empty one)."""
    shown = f"database {mask_database_url(database_url)}"
    if sqlite_file_missing(database_url):
        return failed(
            f"{shown} does not exist",
            "run `rollout-bot migrate` (it creates it), "
            "or point DATABASE_URL at the bot's database",
        )
    try:
        problem = asyncio.run(serve_refusal(database_url))
    except (OSError, SQLAlchemyError) as error:
        return failed(
            f"{shown} does not answer ({error_summary(error)})",
            "check DATABASE_URL and that the database server is up and reachable from here",
        )
    if problem is not None:
        return failed(f"{shown}: `rollout-bot serve` would refuse it", problem)
    return passed(f"{shown} answers, its migrations at {head_revision()}")


def metrics_endpoint_finding(settings: Settings) -> Finding:
    """Whether `GET /metrics` wants a token: without METRICS_TOKEN it is open, a warning (a
    proxy may keep it private, as ops/haproxy.cfg does), not a failure."""
    why = unguarded(settings)
    if why is None:
        return passed("GET /metrics wants a bearer token (METRICS_TOKEN)")
    return warned(OPEN_METRICS, why)


def manifest_scopes(path: Path) -> tuple[frozenset[str], Finding | None]:
    """The manifest's bot scopes, or a failed finding that says why they are unknown."""
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
        scopes = manifest["oauth_config"]["scopes"]["bot"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        return frozenset(), failed(
            f"Slack app manifest {path} unreadable ({type(error).__name__})",
            "pass the bot's manifest.yml with --manifest",
        )
    return frozenset(str(scope) for scope in scopes), None


async def examine(
    settings: Settings, service: Service, *, scopes: frozenset[str], tag: str
) -> list[Finding]:
    """The checks of one service's install: its repository, channels, approvers and plan."""
    plan = service.plan
    github = GitHubTransport(
        api_url=str(settings.github_api_url),
        **github_auth(settings.github_credentials()),
        repository=service.repository,
        service=service.name,
        timeout=settings.github_timeout,
        retries=1,
        backoff=settings.github_retry_backoff,
    )
    endpoints = MetricsEndpoints.from_settings(settings)

    async def metrics(track: str) -> tuple[list[str], list[str]] | None:
        stage = first_window(plan, track)
        config = plan.track(track).metrics
        answers = await unanswered(
            config, endpoints, track=track, stage=stage, tag=tag, service=service.name
        )
        if answers is None or tag != NO_RELEASE:
            return answers
        return answers[0], []  # no release has the default tag: no data is all it can answer

    try:
        found = await Doctor(
            plan=plan,
            repository=service.repository,
            release_channels=service.release_channels,
            approvers=service.approvers,
            manifest_scopes=scopes,
            slack=SlackInstallReads(
                AsyncWebClient(
                    token=settings.slack_bot_token.get_secret_value(),
                    base_url=str(settings.slack_api_url),
                    # A rate limit says how long to wait (Retry-After): waited out, as the
                    # bot's own client does, not read as a refused token or channel.
                    retry_handlers=web_api_retries(),
                )
            ),
            github=GitHubInstallReads(github),
            metrics=metrics,
        ).examine()
        clock = await github_clock_finding(github)
        return found if clock is None else [*found, clock]
    finally:
        await github.close()


def first_window(plan: RolloutPlan, track: str) -> Stage:
    """The track's first observed stage (its gate is the first the metrics answer for)."""
    stages = plan.track(track).stages
    return next((stage for stage in stages if stage.window is not None), stages[0])
