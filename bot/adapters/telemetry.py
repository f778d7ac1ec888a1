"""The bot's own metrics in the Prometheus text format, with prometheus-client.

One `CollectorRegistry` per app (not the library's global one), so several apps in one process
(the tests) keep their figures apart. docs/observability.md lists every series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from bot.services.telemetry import ACTIVE_PHASES, Handled, Telemetry
from bot.version import Build

NAN = float("nan")

LATENESS_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
"""Seconds: a window is evaluated within a second of its end when all is well; minutes mean
the scheduler was away (a restart, a dead replica's lease running out)."""


class PrometheusTelemetry(Telemetry):
    """`Telemetry` as Prometheus series in this app's own registry."""

    def __init__(self, build: Build, *, webhooks_expected: bool = False) -> None:
        """`webhooks_expected`: a webhook secret is configured, so GitHub's deliveries should
        arrive (without one every delivery is refused and the bot follows runs by polling)."""
        # No `*_created` series beside each counter and histogram: nothing reads them (rate()
        # and increase() handle restarts) and they would double the series. A switch of the
        # library's, for the whole process.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry = CollectorRegistry(auto_describe=True)
        Info("rollout_bot_build", "The running version.", registry=registry).info(
            {"version": build.version, "commit": build.commit}
        )
        ProcessCollector(namespace="rollout_bot", registry=registry)

        def counter(name: str, documentation: str, *labels: str) -> Counter:
            return Counter(f"rollout_bot_{name}", documentation, labels, registry=registry)

        def gauge(name: str, documentation: str, *labels: str) -> Gauge:
            return Gauge(f"rollout_bot_{name}", documentation, labels, registry=registry)

        self._commands = counter(
            "commands_total", "/rollout commands answered.", "subcommand", "outcome"
        )
        self._clicks = counter("clicks_total", "Button clicks answered.", "action", "outcome")
        self._refusals = counter("refusals_total", "People refused, by the error's code.", "reason")
        # `service`: one per configured service (bounded), to tell which repository spends
        # the rate limit or fails.
        self._github = counter(
            "github_requests_total", "Calls to GitHub's API.", "service", "endpoint", "status"
        )
        self._token_renewals = counter(
            "github_token_renewals_total",
            "Installation tokens GitHub refused (401) in App mode: renewed (a new token, the "
            "call sent once more with it) or not (GitHub gave none).",
            "service",
            "result",
        )
        self._not_modified = counter(
            "github_not_modified_total",
            "Conditional GETs GitHub answered 304 Not Modified (no rate limit spent).",
        )
        self._polls_deferred = counter(
            "github_polls_deferred_total",
            "Looks at runs the poller put off to its next pass to keep the request budget.",
        )
        # One series per App installation (`account`; none for a token): each has its limit.
        self._rate_limit = gauge(
            "github_rate_limit_remaining",
            "X-RateLimit-Remaining of GitHub's latest answer.",
            "account",
        )
        self._rate_limit_reset = gauge(
            "github_rate_limit_reset_timestamp_seconds",
            "X-RateLimit-Reset of GitHub's latest answer: when the limit is whole again.",
            "account",
        )
        # One series per GitHub host (the bot's one GITHUB_API_URL): its clock as of its last
        # answer read clearly enough to tell, and when that was (an idle bot reads none).
        self._github_clock = gauge(
            "github_clock_offset_seconds",
            "GitHub's clock minus this replica's, read off the Date of its latest answer.",
            "host",
        )
        self._github_clock_read = gauge(
            "github_clock_read_timestamp_seconds",
            "Unix time (this replica's clock) of that answer.",
            "host",
        )
        self._slack = counter(
            "slack_api_calls_total", "Slack Web API attempts.", "method", "status", "error"
        )
        self._verdicts = counter(
            "gate_verdicts_total", "Gate verdicts saved.", "service", "track", "verdict"
        )
        self._lateness = Histogram(
            "rollout_bot_window_end_lateness_seconds",
            "Seconds between an observation window's end (and its track's settle) and its "
            "evaluation.",
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self._dead_timers = counter(
            "timers_dead_lettered_total", "Window timers given up after their last attempt."
        )
        self._dead_messages = counter(
            "outbox_dead_lettered_total",
            "Messages to Slack given up (refused for good, or after their last attempt).",
        )
        self._timers_due = gauge("timers_due", "Pending timers due (database-wide).")
        self._timers_overdue = gauge(
            "timers_overdue", "Pending timers due for longer than a lease (database-wide)."
        )
        self._timers_dead = gauge(
            "timers_dead",
            "Dead-lettered timers of rollouts not ended, by service (database-wide).",
            "service",
        )
        self._rollouts = gauge(
            "rollouts_active", "Rollouts not ended (database-wide).", "service", "state"
        )
        self._rollout_services: set[str] = set()
        """The services whose active rollouts and dead timers have series (made unknown with the
        rest)."""
        self._ready = gauge("ready", "1 while /readyz answers 200, else 0 (as of the scrape).")
        self._database_up = gauge(
            "database_up", "1 when the database answered the scrape's reads, else 0."
        )
        self._database_up.set(NAN)  # until the first scrape
        # The replica's offset is its own (not the same on every replica); NaN until read,
        # and for good on SQLite (one host, one clock).
        self._database_clock = gauge(
            "database_clock_offset_seconds",
            "The database server's clock minus this replica's, as of the latest reading.",
        )
        self._database_clock.set(NAN)
        self._wrong_signatures = counter(
            "signature_refusals_total",
            "Requests signed, but not with the bot's secret (the secret changed on one side).",
            "door",
        )
        self._webhooks = counter(
            "webhook_deliveries_total", "Signed GitHub webhook deliveries.", "event", "result"
        )
        self._last_webhook = gauge(
            "webhook_last_delivery_timestamp_seconds",
            "Unix time of the last signed webhook delivery this process took in (0: none yet).",
        )
        gauge(
            "webhook_secret_configured",
            "1 when GITHUB_WEBHOOK_SECRET is set: GitHub's webhook deliveries are expected.",
        ).set(1 if webhooks_expected else 0)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper accepts (the text format unless it asks
        for OpenMetrics): the body and its content type."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    # -- Telemetry -----------------------------------------------------------------------------

    def handled(self, *, kind: Handled, name: str, outcome: str) -> None:
        counter = self._commands if kind == "command" else self._clicks
        counter.labels(name, outcome).inc()

    def refused(self, *, reason: str) -> None:
        self._refusals.labels(reason).inc()

    def github_request(self, *, service: str, endpoint: str, status: str) -> None:
        self._github.labels(service, endpoint, status).inc()

    def github_token_renewal(self, *, service: str, renewed: bool) -> None:
        self._token_renewals.labels(service, "renewed" if renewed else "not_renewed").inc()

    def github_rate_limit(self, *, account: str, remaining: int, reset: int) -> None:
        self._rate_limit.labels(account).set(remaining)
        self._rate_limit_reset.labels(account).set(reset)

    def github_clock(self, *, host: str, offset: timedelta, at: datetime) -> None:
        self._github_clock.labels(host).set(offset.total_seconds())
        self._github_clock_read.labels(host).set(at.timestamp())

    def github_not_modified(self) -> None:
        self._not_modified.inc()

    def polls_deferred(self, *, count: int) -> None:
        self._polls_deferred.inc(count)

    def slack_call(self, *, method: str, status: str, error: str) -> None:
        self._slack.labels(method, status, error).inc()

    def gate_decided(self, *, service: str, track: str, verdict: str) -> None:
        self._verdicts.labels(service, track, verdict).inc()

    def window_closed(self, *, lateness: timedelta) -> None:
        self._lateness.observe(max(lateness.total_seconds(), 0.0))

    def signature_refused(self, *, door: Literal["slack", "github"]) -> None:
        self._wrong_signatures.labels(door).inc()

    def outbox_dead(self) -> None:
        self._dead_messages.inc()

    def timer_dead(self) -> None:
        self._dead_timers.inc()

    def webhook_delivery(self, *, event: str, result: str, at: datetime) -> None:
        self._webhooks.labels(event, result).inc()
        self._last_webhook.set(at.timestamp())

    def readiness(self, *, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def backlog(
        self,
        *,
        rollouts: Mapping[str, Mapping[str, int]],
        timers_due: int,
        timers_overdue: int,
        timers_dead: Mapping[str, int],
    ) -> None:
        # A service taken out of the configuration drops out of the figures once its rollouts
        # have ended: its series read 0 then, not their last figure (a page until restart).
        self._rollout_services |= set(rollouts) | set(timers_dead)
        for service in self._rollout_services:
            phases = rollouts.get(service, {})
            for state in ACTIVE_PHASES:
                self._rollouts.labels(service, state).set(phases.get(state, 0))
            self._timers_dead.labels(service).set(timers_dead.get(service, 0))
        self._timers_due.set(timers_due)
        self._timers_overdue.set(timers_overdue)
        self._database_up.set(1)

    def database_clock(self, *, offset: timedelta) -> None:
        self._database_clock.set(offset.total_seconds())

    def database_unread(self, *, services: Sequence[str]) -> None:
        # Unknown, not the last values: a rule must not read an outage as "nothing overdue".
        self._rollout_services |= set(services)
        for service in self._rollout_services:
            for state in ACTIVE_PHASES:
                self._rollouts.labels(service, state).set(NAN)
            self._timers_dead.labels(service).set(NAN)
        for gauge in (self._timers_due, self._timers_overdue, self._database_clock):
            gauge.set(NAN)
        self._database_up.set(0)
