"""The npm Release workflow's publish credentials, judged from what GitHub reports.

Pure: GitHub's answers come in as values (`SecretMetadata`, `ReleaseRun`, `ReleaseJob`, the job's
log text), verdicts go out as small frozen models (`SecretCheck`, `RunCheck`, `ReleaseFollow`,
`Walkthrough`) that the Slack walkthrough renders and carries in its button values. Nothing here
ever sees a token value: GitHub only reports a secret's name and dates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bot.domain.npm_environment import CARRIED_FLAGS, MAX_REVIEWERS, MAX_WAIT_MINUTES, RuleFlag
from bot.domain.npm_log import NpmError
from bot.domain.service import DEFAULT_SERVICE

SECRET_NAME = "NPM_TOKEN"  # noqa: S105 - the secret's name, never its value
"""The repository secret the Release workflow reads (SPEC section 1)."""

RELEASE_TIMER = "npm_release"
"""The kind of the durable timers that follow a dispatched Release run, one look each."""

SKIP_WARNING = "NPM_TOKEN secret not configured — skipping npm publish."
"""What the validate step prints when the secret is empty; it passes all the same."""

MAX_ERROR = 300
"""GitHub error texts kept in a check: the state rides in Slack button values (2000 chars)."""

ErrorText = Annotated[str, StringConstraints(max_length=MAX_ERROR)]


def clip_error(text: str, *, most: int = MAX_ERROR) -> str:
    """`text` within `most` characters as JSON writes it into a button value (a quote, a
    backslash or a newline takes two there), cut with "..." when longer."""
    if json_length(text) <= most:
        return text
    room, kept = most - 3, []
    for character in text:
        room -= json_length(character)
        if room < 0:
            break
        kept.append(character)
    return "".join(kept) + "..."


def json_length(text: str) -> int:
    """How many characters `text` takes in a button value (as JSON writes it)."""
    return len(json.dumps(text, ensure_ascii=False)) - 2  # without its quotes


# -- what GitHub reports ------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretMetadata:
    """An Actions secret as GitHub describes it: name and dates, never the value."""

    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ReleaseRun:
    """One run of the Release workflow."""

    run_id: int
    number: int
    html_url: str
    event: str
    branch: str
    status: str
    conclusion: str | None
    created_at: datetime

    @property
    def completed(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True)
class JobStep:
    name: str
    status: str
    conclusion: str | None


@dataclass(frozen=True)
class ReleaseJob:
    """The job that validates and publishes (`changesets`), with its steps."""

    job_id: int
    name: str
    status: str
    conclusion: str | None
    steps: tuple[JobStep, ...]

    def step(self, name: str) -> JobStep | None:
        return next((step for step in self.steps if step.name == name), None)


# -- verdicts -----------------------------------------------------------------------------------


class Tone(StrEnum):
    """How a step of the walkthrough stands."""

    TODO = "todo"
    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"
    PENDING = "pending"
    BLOCKED = "blocked"
    """GitHub refused or failed: the bot cannot tell (a permission or setup is missing)."""


class StepVerdict(StrEnum):
    PASSED = "passed"
    WARNED = "warned"
    """Passed, but printed the NPM_TOKEN warning: publishing was skipped."""
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_RUN = "not_run"
    """Cancelled, or the job never got there."""
    MISSING = "missing"
    """The job has no step of that name (the plan's step names do not match the workflow)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretLevel(StrEnum):
    """Where an Actions secret is kept; for a job, the lowest level that has it wins."""

    ENVIRONMENT = "environment"
    REPOSITORY = "repository"
    ORGANIZATION = "organization"


MAX_ENVIRONMENT = 64
"""Environment names carried in a check, counted as JSON writes them into a button value
(GitHub allows 255 characters: a longer one is not carried)."""


class SecretCheck(_Model):
    """Step 3: the secret the publishing job reads (its environment's, else the repository's,
    else the organization's), and how old it is. Fields new since a version are left out when
    empty (None), so an older replica still reads the checks that do not use them."""

    found: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    age_days: Annotated[int, Field(ge=0)] | None = None
    max_age_days: int
    organization: bool | None = None
    """The one read is the organization's, shared with the repository (True or left out)."""
    error: ErrorText | None = None
    environment: Annotated[str, StringConstraints(max_length=MAX_ENVIRONMENT)] | None = None
    """The environment the publishing job runs in (left out: none, or not known)."""
    environment_secret: bool | None = None
    """The one read is that environment's (True or left out)."""
    shadowed: tuple[SecretLevel, ...] | None = None
    """Higher levels that have the secret too, which the job does not read."""
    unchecked: ErrorText | None = None
    """Why the environment's secret could not be checked: GitHub refused (with `environment`),
    or the job's environment could not be told from the workflow file (without)."""
    oidc: bool | None = None
    """The job may request an OIDC token (`id-token: write`): npm trusted publishing."""
    oidc_only: bool | None = None
    """The job publishes with npm trusted publishing only and never reads NPM_TOKEN (True or
    left out): the secret is not needed, and one that is set is unused."""
    rules: (
        tuple[
            Annotated[int, Field(ge=0, le=MAX_REVIEWERS)],
            Annotated[int, Field(ge=0, le=MAX_WAIT_MINUTES)],
            Annotated[int, Field(ge=0, le=int(CARRIED_FLAGS))],
        ]
        | None
    ) = None
    """What the job's environment's protection rules hold it to: (required reviewers, wait
    timer in minutes, `RuleFlag`s of `CARRIED_FLAGS`), left out when nothing
    (`bot.domain.npm_environment`)."""
    app_rule: bool | None = None
    """A GitHub App's custom deployment protection rule must approve the job (True or left
    out; with `rules`)."""
    ref_unprotected: bool | None = None
    """Only protected branches may run the job, and the branch Run Release dispatches on is not
    one (True or left out; with `rules`)."""

    @property
    def rule_flags(self) -> RuleFlag:
        flags = RuleFlag(self.rules[2]) if self.rules else RuleFlag(0)
        if self.app_rule:
            flags |= RuleFlag.APP_RULE
        if self.ref_unprotected:
            flags |= RuleFlag.REF_UNPROTECTED
        return flags

    @property
    def tone(self) -> Tone:
        refused = self.rule_flags.refusing
        if self.oidc_only:
            # Whatever the secret's levels say, the job reads none of them.
            return Tone.WARNING if refused else Tone.OK
        tone = self._secret_tone
        return Tone.WARNING if tone is Tone.OK and refused else tone

    @property
    def _secret_tone(self) -> Tone:
        if self.error is not None:
            return Tone.BLOCKED
        if self.unchecked is not None:
            # Which secret the job reads, or whether it has one, is unknown: the environment's
            # (refused, or not told by the workflow file) would take the place of any other.
            return Tone.BLOCKED
        if not self.found:
            return Tone.WARNING if self.oidc else Tone.FAILED
        if self.age_days is not None and self.age_days > self.max_age_days:
            return Tone.WARNING
        return Tone.OK


class RunSummary(_Model):
    """A run as the walkthrough remembers it (its web page is derived from its id)."""

    id: int
    number: int
    event: str
    branch: str
    created_at: datetime
    status: str
    conclusion: str | None = None

    @classmethod
    def of(cls, run: ReleaseRun) -> RunSummary:
        return cls(
            id=run.run_id,
            number=run.number,
            event=run.event,
            branch=run.branch[:100],
            created_at=run.created_at,
            status=run.status,
            conclusion=run.conclusion,
        )

    @property
    def completed(self) -> bool:
        return self.status == "completed"


class RunCheck(_Model):
    """Step 4 (and the end of step 5): what a Release run says about the credentials."""

    run: RunSummary | None = None
    job_found: bool = False
    job_id: int | None = None
    validate_step: StepVerdict | None = None
    publish_step: StepVerdict | None = None
    npm_error: NpmError | None = None
    published_nothing: bool | None = None
    """The publish step passed without publishing (every version on npm already): npm never
    used the token. False when its log shows packages published; None when neither is seen
    (and in checks made before this was looked for, or before False was written)."""
    log_unavailable: ErrorText | None = None
    """Why the job's log could not be read (the verdict then rests on step conclusions)."""
    error: ErrorText | None = None

    @property
    def tone(self) -> Tone:
        return self.judged(oidc_only=False)

    def judged(self, *, oidc_only: bool) -> Tone:
        """With `oidc_only` (trusted publishing, no NPM_TOKEN) only a failed validate step
        counts: one that is missing or printed the NPM_TOKEN warning is to be expected, but a
        warning ("skipping npm publish") passes only with a publish the log shows."""
        if self.error is not None:
            return Tone.BLOCKED
        if self.run is None:
            return Tone.TODO
        if not self.run.completed:
            return Tone.PENDING
        verdicts = {self.validate_step, self.publish_step}
        if oidc_only and self.validate_step is not StepVerdict.FAILED:
            verdicts = {self.publish_step}
        if not self.job_found or verdicts & {StepVerdict.FAILED, StepVerdict.MISSING}:
            return Tone.FAILED
        # Without the log, green steps show nothing of the token: the validate step passes
        # after printing the NPM_TOKEN warning, the publish step when it published nothing.
        if verdicts == {StepVerdict.PASSED} and not (
            self.published_nothing or self.log_unavailable or self.skip_unproven(oidc_only)
        ):
            return Tone.OK
        return Tone.WARNING

    def skip_unproven(self, oidc_only: bool) -> bool:
        """A trusted-publishing job's validate step said it skips the publish, and the passed
        publish step's log does not show packages published: it may have skipped them."""
        return (
            oidc_only
            and self.validate_step is StepVerdict.WARNED
            and self.published_nothing is not False
        )


class ReleasePhase(StrEnum):
    DISPATCHING = "dispatching"
    RUNNING = "running"
    DONE = "done"
    NOT_STARTED = "not_started"
    """The dispatch failed (the error says why)."""
    UNFOLLOWED = "unfollowed"
    """The bot stopped following the run (after `follow_for`, or its looks failed every
    attempt); step 4 still checks it."""


class ReleaseFollow(_Model):
    """Step 5: a Release run the bot dispatched and follows to its end."""

    requested_by: Annotated[str, StringConstraints(max_length=32)]
    phase: ReleasePhase
    run_id: int | None = None
    status: str | None = None
    check: RunCheck | None = None
    error: ErrorText | None = None

    @property
    def active(self) -> bool:
        return self.phase in (ReleasePhase.DISPATCHING, ReleasePhase.RUNNING)

    @property
    def tone(self) -> Tone:
        return self.judged(oidc_only=False)

    def judged(self, *, oidc_only: bool) -> Tone:
        if self.phase is ReleasePhase.DONE and self.check is not None:
            return self.check.judged(oidc_only=oidc_only)
        if self.phase is ReleasePhase.NOT_STARTED:
            return Tone.BLOCKED
        if self.phase is ReleasePhase.UNFOLLOWED:
            return Tone.WARNING
        return Tone.PENDING


class Walkthrough(_Model):
    """Everything the walkthrough message shows beyond its fixed text: the last result of each
    check. Small on purpose: it travels in the message's button values."""

    service: str = DEFAULT_SERVICE
    """The service whose repository the walkthrough checks (a button is routed by it)."""
    secret: SecretCheck | None = None
    last_run: RunCheck | None = None
    release: ReleaseFollow | None = None
    trusted_publishing: bool | None = None
    """The publishing job publishes with npm trusted publishing only, as the release workflow
    said when the walkthrough was drawn or step 4 or 3 last read it: steps 4 and 5 are worded
    for it from the start, before step 3 has run. False only when step 3's check says it
    does and the workflow read since says it no longer does; left out otherwise (so an older
    replica still reads the other walkthroughs)."""

    @property
    def oidc_only(self) -> bool:
        if self.trusted_publishing is not None:
            return self.trusted_publishing  # read after step 3's check
        return bool(self.secret and self.secret.oidc_only)

    @property
    def last_run_tone(self) -> Tone:
        return self.last_run.judged(oidc_only=self.oidc_only) if self.last_run else Tone.TODO

    @property
    def release_tone(self) -> Tone:
        return self.release.judged(oidc_only=self.oidc_only) if self.release else Tone.TODO

    def latest_run_check(self) -> RunCheck | None:
        """The newest finished run check of steps 4 and 5 (what steps 1 and 2 are judged by)."""
        checks = [self.last_run, self.release.check if self.release else None]
        done = [(c.run.created_at, c) for c in checks if c and c.run and c.run.completed]
        return max(done, key=lambda pair: pair[0])[1] if done else None


# -- addresses ---------------------------------------------------------------------------------


def github_web_url(api_url: str) -> str:
    """GitHub's web address for a REST API base: api.github.com is github.com, GitHub
    Enterprise Server serves the API under /api/v3 of its web host, GHE.com under `api.`.
    A user or password in the API's URL is left out: the address is posted in Slack."""
    parts = urlsplit(api_url.rstrip("/"))
    host = parts.netloc.rpartition("@")[2].removeprefix("api.")
    path = parts.path.removesuffix("/api/v3")
    return urlunsplit((parts.scheme, host, path, "", "")).rstrip("/")
