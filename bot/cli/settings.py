"""The settings of an operator command: loaded from the environment, or every problem printed;
what a setting left unset leaves open (`doctor` warns of it, `serve` logs it at start); and a
release tag given as an argument."""

from __future__ import annotations

import argparse
import sys

from bot.config import ConfigError, S, Settings, load_settings
from bot.domain.errors import InvalidTag
from bot.domain.release_tag import typed_tag
from bot.domain.service import Service
from bot.logs import configure_logging


def load(kind: type[S]) -> S | None:
    """The settings of `kind`; None after printing every problem (the command exits 2)."""
    try:
        return load_settings(kind)
    except ConfigError as error:
        report(error)
        return None


def load_for_command(*, log_level: str) -> Settings | None:
    """A one-shot command's settings (None after printing every problem), its log kept to
    `log_level` and above, secrets masked: the command's own output says what happened."""
    settings = load(Settings)
    if settings is not None:
        configure_logging(
            level=log_level, fmt=settings.log_format, secrets=settings.secret_values()
        )
    return settings


def report(error: ConfigError) -> int:
    """Print every configuration problem; the exit status to return (2)."""
    sys.stderr.write("configuration problems:\n")
    for problem in error.problems:
        sys.stderr.write(f"  - {problem}\n")
    return 2


def services_named(settings: Settings, name: str | None, *, command: str) -> list[Service] | None:
    """The service called `name` (every service when None); None after saying that there is
    no such service, and which there are (the command exits 2)."""
    services = list(settings.services())
    chosen = [service for service in services if name is None or service.name == name]
    if not chosen:
        names = ", ".join(service.name for service in services)
        sys.stderr.write(f"rollout-bot {command}: no service {name!r} (the services: {names})\n")
        return None
    return chosen


def one_service(settings: Settings, name: str | None, *, command: str) -> Service | None:
    """The service called `name`, or the only one when None; None after saying why not."""
    chosen = services_named(settings, name, command=command)
    if chosen is not None and len(chosen) > 1:
        names = ", ".join(service.name for service in chosen)
        sys.stderr.write(f"rollout-bot {command}: name the service with --service ({names})\n")
        return None
    return chosen[0] if chosen else None


OPEN_METRICS = "GET /metrics is served without authentication (METRICS_TOKEN is unset)"


def unguarded(settings: Settings) -> str | None:
    """What an open `/metrics` gives away and what to do; None with METRICS_TOKEN set."""
    if settings.metrics_token is not None:
        return None
    return (
        f"whoever reaches port {settings.port} reads the bot's series (its version and commit, "
        "each service's name and active rollouts, GitHub's rate limit left, the requests it "
        "refused), and each scrape reads the database. Set METRICS_TOKEN, and the same token "
        "in Prometheus's scrape job (docs/observability.md), or keep /metrics off the public "
        "port, as ops/haproxy.cfg does (it forwards /slack/events, /github/webhook and /healthz "
        "only)"
    )


def release_tag(text: str) -> str:
    """A `--tag` or `<tag>` argument as `/rollout start` reads it (argparse's `type`): the tag
    goes into the plan's metrics queries as `$tag`, so one the bot never releases is refused."""
    try:
        return typed_tag(text)
    except InvalidTag as error:
        raise argparse.ArgumentTypeError(error.message.replace("`", "")) from None
