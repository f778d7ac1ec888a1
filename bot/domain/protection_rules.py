"""A custom deployment protection rule's request: GitHub asks the rule's App whether a job of a
run may deploy to an environment, and holds the job until the App answers through the run's
callback (`docs/protection-rules.md`).

A request comes from the `deployment_protection_rule` webhook or, when that delivery was lost,
is recovered from the deployment still `waiting`. A run waits at an environment at most once
at a time, so at most one request is *open* per (run, environment); a re-run of the job asks
again once the first was answered. A redelivery is known by its delivery id, and the same
body sent again under a new id (the id is outside the signature) by its deployment, which asks
once; not by the body's bytes (GitHub's payload may name no deployment at all, and a re-run's
request may then repeat the first's body).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from bot.domain.plan import RolloutPlan
from bot.domain.service import DEFAULT_SERVICE
from bot.domain.text import clean_text

EVENT = "deployment_protection_rule"
"""The webhook event (action `requested`) an App with a custom rule receives."""

UNCONFIRMED_TIMER = "unconfirmed_rule"
"""The durable timer that asks GitHub again for the installation a request names, when GitHub
could not tell it as the request came (`bot.services.unconfirmed_rules`)."""

RuleAnswer = Literal["approved", "rejected", "gone"]
"""How a request was closed: answered, or found no longer waiting (its deployment moved on)."""

GITHUB_WAIT_LIMIT = timedelta(days=30)
"""How long GitHub lets a workflow wait on environment approvals (Actions limits: "Gate approval
time", 30 days; a run is cancelled after 35 days in all): a request older than that is no
longer held by anyone."""

ANSWER_REACH = timedelta(minutes=2)
"""How long a post of the bot's answer may take once marked (`RuleRequest.sent`): the
transport's 15 s timeout on each request, a redirection followed, a wait for a worker, with
room to spare; it has ended by then, or its replica died. Also how soon after GitHub applies
an answer its job is taken to start: a job started later than both may have been started past
its protection rules by an admin, the answer never having reached GitHub (`started_late`)."""

MAX_RUN_ID = 2**63 - 1
"""Run ids are stored as 64-bit integers."""


@dataclass(frozen=True)
class RuleRequest:
    """One job of a run waiting at an environment for the App's answer."""

    run_id: int
    environment: str
    """As GitHub spells it (the request is closed by this spelling)."""
    deployment_id: int
    """0 when the request named no deployment (GitHub's `deployment` may be null)."""
    requested_at: datetime
    event: str = ""
    """What started the run (`workflow_dispatch`, `push`, ...)."""
    sender: str = ""
    """The GitHub login that caused the request (the run's actor)."""
    answer: RuleAnswer | None = None
    answered_at: datetime | None = None
    service: str = DEFAULT_SERVICE
    """The service whose repository's run asks (`bot.domain.service`)."""
    sent: RuleAnswer | None = None
    """The answer the bot posted while the request is open, as long as GitHub may have applied
    it (its reply not seen yet, or lost): a job found started is then the bot's answer
    applied, not an admin's bypass. None when GitHub clearly did not take it."""
    sent_at: datetime | None = None
    """When the post of `sent` had ended at the latest: marked `ANSWER_REACH` after the post
    began, then dated when it ended without GitHub telling whether it applied it (its reply
    and read-back lost). A read of the run begun after then that sees the job still waiting
    knows it was not applied, even when the replica posting it died in the middle. None while
    the post of a replica of an earlier version is on its way (it dated none before)."""

    def started_late(self, started_at: datetime | None) -> timedelta | None:
        """How long after the post of `sent` had ended (`sent_at`) its job started at
        `started_at`, GitHub's, when later than `ANSWER_REACH` after it: the bot's answer may
        never have reached GitHub (its replica died in the middle of the post), and the job
        may have been started past its protection rules. None when the job started in time,
        either time is not known, or the request was closed before its post had ended at the
        latest (`answered_at`): by the post itself, GitHub's reply (or read-back) seen applying
        it, so a runner that took the job late is no sign of a bypass."""
        if self.sent is None or self.sent_at is None or started_at is None:
            return None
        if self.answered_at is not None and self.answered_at < self.sent_at:
            return None
        late = started_at - self.sent_at
        return late if late > ANSWER_REACH else None

    @property
    def key(self) -> str:
        """Names the request in logs and timers (not unique across re-runs without a
        deployment: the database keeps one open per run and environment)."""
        return f"{self.run_id}:{self.environment.casefold()}:{self.deployment_id}"

    @property
    def open(self) -> bool:
        return self.answer is None

    def named(self, environment: str) -> bool:
        """Whether this is the request of `environment` (GitHub's names ignore case)."""
        return self.environment.casefold() == environment.casefold()


@dataclass(frozen=True)
class WaitingDeployment:
    """A deployment of a run whose latest status is `waiting` (what a lost request leaves)."""

    id: int
    environment: str
    created_at: datetime


def environment_jobs(plan: RolloutPlan) -> dict[str, str]:
    """Each gated environment's job, by the environment's name casefolded (every stage's and
    every track's failure job): a request whose job runs or ran waits no more."""
    return {
        environment.casefold(): job
        for track in plan.tracks.values()
        for environment, job in (
            *((stage.environment, stage.job) for stage in track.stages),
            (track.on_failure.environment, track.on_failure.job),
        )
    }


def unexplained(deployment: WaitingDeployment, known: Iterable[RuleRequest]) -> bool:
    """Whether no request the bot holds (open or answered) is this waiting deployment's: one
    that names it, or one without a deployment for its environment that was open when the
    deployment already existed. A deployment still waiting after the App answered waits for
    something else (another rule, a wait timer): it is not asked again."""
    for request in known:
        if request.deployment_id == deployment.id:
            return False
        if (
            request.deployment_id == 0
            and request.named(deployment.environment)
            and (request.answered_at is None or request.answered_at >= deployment.created_at)
        ):
            return False
    return True


def _plain_path(url: object) -> str:
    """The path of `url`; "" when it is not a URL, or carries a query or a fragment."""
    if not isinstance(url, str):
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced IPv6 bracket, say
        return ""
    return "" if parts.query or parts.fragment else parts.path


def rule_request(
    payload: Mapping[str, Any],
    *,
    repository: str,
    api_url: str,
    at: datetime,
    service: str = DEFAULT_SERVICE,
) -> RuleRequest | str:
    """The request a `requested` delivery makes (for `service`, whose repository it is), or
    why it is not one for this App on `repository`. The App receives the requests of every
    repository it is installed on; its callback must be the path of a run of `repository`
    under `api_url`'s path (`/api/v3` on GitHub Enterprise Server). Its host is not read: the
    bot answers on its own GitHub, never on a payload's host, which a proxy or a GitHub double
    may name otherwise than `api_url` does. The installation it names
    (`installation_named`) is the caller's to check: that takes GitHub's word."""
    if payload.get("action") != "requested":
        return f"action {clean_text(str(payload.get('action')))!r} is not a request"
    full_name = _field(payload, "repository", "full_name")
    if not isinstance(full_name, str) or full_name.casefold() != repository.casefold():
        return "not the bot's repository"
    if installation_named(payload) is None:
        return "no installation named"
    callback = payload.get("deployment_callback_url")
    under = re.escape(urlsplit(api_url).path.rstrip("/"))
    run = rf"/repos/{re.escape(repository)}/actions/runs/(\d{{1,19}})/deployment_protection_rule"
    found = re.fullmatch(under + run, _plain_path(callback), re.IGNORECASE)
    if found is None:
        return "no deployment_callback_url of a run of the bot's repository"
    run_id = int(found.group(1))
    if not 0 < run_id <= MAX_RUN_ID:
        return f"run id {run_id} is not one GitHub gives"
    environment = payload.get("environment")
    if not isinstance(environment, str) or not environment.strip():
        return "no environment"
    deployment_id = _field(payload, "deployment", "id")
    if isinstance(deployment_id, bool) or not isinstance(deployment_id, int):
        deployment_id = 0  # `deployment` is null when GitHub created none
    login = _field(payload, "sender", "login")
    event = payload.get("event")
    return RuleRequest(
        run_id=run_id,
        environment=clean_text(environment),
        deployment_id=deployment_id,
        requested_at=at,
        event=clean_text(event) if isinstance(event, str) else "",
        sender=clean_text(login) if isinstance(login, str) else "",
        service=service,
    )


def installation_named(payload: Mapping[str, Any]) -> int | None:
    """The App installation a delivery comes from (`installation.id`), None when it names
    none."""
    installation = _field(payload, "installation", "id")
    if isinstance(installation, bool) or not isinstance(installation, int):
        return None
    return installation


def _field(payload: Mapping[str, Any], name: str, key: str) -> object:
    """`payload[name][key]`, or None when either is missing or not an object."""
    value = payload.get(name)
    return value.get(key) if isinstance(value, Mapping) else None
