"""Runs the bot did not start: a run of the plan's workflow that no rollout follows (dispatched
on github.com, re-run, a push) asks the App's protection rule to deploy. It is never approved
silently: its card offers Adopt (the run becomes a rollout the bot follows, with the plan's
gates) and Reject, and a default answers it once its time is up (docs/protection-rules.md).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Literal

from bot.domain.durations import format_duration
from bot.domain.errors import InvalidTag, NotAuthorized
from bot.domain.plan import RolloutPlan, TwoPersonAction
from bot.domain.protection_rules import RuleRequest, environment_jobs
from bot.domain.release_tag import parse_tag
from bot.domain.rollout import InvalidTransition, Phase, Rollout, github_person
from bot.domain.run import RunRef
from bot.domain.run_link import LinkableRun, branch_of
from bot.domain.text import shown

DefaultAnswer = Literal["reject", "approve"]
"""What the bot answers when nobody adopted or rejected the run in time."""

TIMER = "unfollowed_run"
"""The kind of the durable timer that answers a run nobody adopted or rejected in time."""


class RunFate(StrEnum):
    WAITING = "waiting"
    ADOPTED = "adopted"
    REJECTED = "rejected"
    APPROVED = "approved"
    """Approved by the default (`UNFOLLOWED_RUN_DEFAULT=approve`), not followed."""
    UNANSWERED = "unanswered"
    """The default answer could not be given (every attempt failed): a person answers it."""
    NOTHING_WAITED = "nothing_waited"
    """Nothing waited for the bot's answer when the default came (the run had moved on), or
    when a person's Reject reached GitHub (`by`: the run was cancelled, or answered on GitHub
    first): nothing was answered, and the run's later stages wait on GitHub for a person."""


@dataclass(frozen=True)
class UnfollowedRun:
    """What the card of a run nobody follows shows, and what became of it."""

    run_id: int
    workflow: str
    run_url: str
    ref: str
    """The branch or tag the run is on."""
    tag: str
    """The release tag adopting it rolls out: its ref, when that is a release tag; empty
    otherwise (`release_tag`), and Adopt is refused."""
    event: str
    sender: str
    environment: str
    """The environment its first request waits at."""
    asked_at: datetime
    due_at: datetime
    fate: RunFate = RunFate.WAITING
    by: str = ""
    """The Slack user who adopted or rejected it; empty when the default answered."""
    rollout_id: str = ""
    """The rollout it became (adopted)."""
    attempt: int = 1
    """The run's attempt that asked: 2 and up for a re-run (`sender` re-ran it)."""
    ended_rollout: str = ""
    """The rollout that followed the run before it was re-run, and has ended."""
    dispatch_by_two: bool = False
    """The plan's two-person rule covered dispatch when the card was posted: Adopt is refused
    (`may_adopt`) and an `approve` default rejects, so the card offers Reject only."""
    refused: str = ""
    """Why an `approve` default rejected the run instead (`approve_refusal`); empty otherwise."""
    off_its_tag: bool = False
    """Its ref names a release tag of the repository, but the run is not at the tag's commit
    (a branch of the same name, or a fork's; or a pull request's merge): it is no release, and
    `tag` is empty."""
    tag_unread: str = ""
    """Its ref names a release tag of the repository the bot cannot follow to its commit (a
    tag of a tag too deep, `TagUnread`): why, and how to point the tag at its commit; `tag` is
    empty, so the run is no release for the bot."""
    service: str = ""
    """The service whose repository the run is of, named on the card when the bot releases
    several; empty on a card a previous version wrote."""

    @property
    def on_a_tag(self) -> bool:
        """Whether the run is on a release tag (`release_tag`): when it is not, Adopt is
        refused (`not_a_tag`) and an `approve` default rejects (`approve_refusal`)."""
        return bool(self.tag)

    @property
    def answered(self) -> bool:
        """Whether the run got its one answer (adopted, rejected, approved by the default, or
        found waiting for nothing): nothing answers it again."""
        return self.fate not in (RunFate.WAITING, RunFate.UNANSWERED)

    @property
    def run(self) -> RunRef:
        """The run as a rollout adopting it follows it: from the attempt that asked."""
        return RunRef(self.run_id, self.run_url, self.attempt)

    @property
    def adoptable(self) -> bool:
        """Whether an Adopt could be given (not refused whatever happens): the card offers
        Adopt only then, never a button that can only be refused."""
        return self.on_a_tag and not self.dispatch_by_two

    def decided(
        self, fate: RunFate, *, by: str = "", rollout_id: str = "", refused: str = ""
    ) -> UnfollowedRun:
        return replace(self, fate=fate, by=by, rollout_id=rollout_id, refused=refused)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "run_url": self.run_url,
            "ref": self.ref,
            "tag": self.tag,
            "event": self.event,
            "sender": self.sender,
            "environment": self.environment,
            "asked_at": self.asked_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "fate": self.fate.value,
            "by": self.by,
            "rollout_id": self.rollout_id,
            "attempt": self.attempt,
            "ended_rollout": self.ended_rollout,
            "dispatch_by_two": self.dispatch_by_two,
            "refused": self.refused,
            "off_its_tag": self.off_its_tag,
            **({"tag_unread": self.tag_unread} if self.tag_unread else {}),
            **({"service": self.service} if self.service else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UnfollowedRun:
        return cls(
            run_id=int(data["run_id"]),
            workflow=str(data["workflow"]),
            run_url=str(data["run_url"]),
            ref=str(data["ref"]),
            tag=str(data.get("tag", "")),
            event=str(data["event"]),
            sender=str(data["sender"]),
            environment=str(data["environment"]),
            asked_at=datetime.fromisoformat(str(data["asked_at"])),
            due_at=datetime.fromisoformat(str(data["due_at"])),
            fate=RunFate(str(data.get("fate", RunFate.WAITING))),
            by=str(data.get("by", "")),
            rollout_id=str(data.get("rollout_id", "")),
            attempt=int(data.get("attempt", 1)),
            ended_rollout=str(data.get("ended_rollout", "")),
            dispatch_by_two=bool(data.get("dispatch_by_two", False)),
            refused=str(data.get("refused", "")),
            off_its_tag=bool(data.get("off_its_tag", False)),
            tag_unread=str(data.get("tag_unread", "")),
            service=str(data.get("service", "")),
        )


def timer_key(run_id: int) -> str:
    """The timer that answers run `run_id` when nobody adopted or rejected it in time."""
    return f"{TIMER}:{run_id}"


def timer_payload(request: RuleRequest, card: UnfollowedRun) -> dict[str, Any]:
    """What that timer carries: the request it answers (its key) and the card as posted."""
    return {"request": request.key, "card": card.to_json()}


@dataclass(frozen=True)
class TagUnread:
    """GitHub answered for the release tag, but the bot cannot follow it to its commit (a tag
    of a tag too deep): `why`, in GitHub's adapter's words, with how to fix the tag."""

    why: str


def unfollowed_card(
    request: RuleRequest,
    run: LinkableRun,
    plan: RolloutPlan,
    ended: Rollout | None,
    *,
    tagged: str | TagUnread | None,
    now: datetime,
    timeout: timedelta,
) -> UnfollowedRun:
    """The card of a run no rollout follows, asked by its first request. `ended`: the rollout
    that followed it before it was re-run; the re-run deploys the release it was dispatched for
    (GitHub re-runs a run with its inputs). `tagged`: the commit GitHub says the tag its ref
    names (`tag_named`) is at, None when there is no such tag. A branch may bear a tag's name,
    and a fork's pull request runs on its own branch's name, with a workflow it may have
    changed: the run is on the release only at the tag's very commit, started by an event
    whose run is of that commit (`LinkableRun.runs_commit`: not a pull request's merge); a
    tag the bot cannot follow to its commit (`TagUnread`) is no release, and the card says
    why."""
    named = tag_named(run, plan) if ended is None else ""
    unread = tagged.why if isinstance(tagged, TagUnread) and named else ""
    tagged = None if isinstance(tagged, TagUnread) else tagged
    at_tag = bool(named) and run.runs_commit(tagged)
    return UnfollowedRun(
        run_id=request.run_id,
        workflow=plan.workflow.name,
        run_url=run.html_url,
        ref=run.head_branch,
        tag=ended.tag if ended is not None else (named if at_tag else ""),
        event=request.event,
        sender=request.sender,
        environment=request.environment,
        asked_at=now,
        due_at=now + timeout,
        attempt=run.attempt,
        ended_rollout=ended.id if ended is not None else "",
        dispatch_by_two=TwoPersonAction.DISPATCH in plan.two_person,
        off_its_tag=bool(named) and tagged is not None and not at_tag,
        tag_unread=unread,
        service=request.service,
    )


def tag_named(run: LinkableRun, plan: RolloutPlan) -> str:
    """The release tag the run's ref names (`release_tag`); "" when it names none. Whether the
    run is on that tag is GitHub's to say (`unfollowed_card`'s `tagged`)."""
    return release_tag(run.head_branch, branch_of(plan.workflow.ref))


def of_the_plan(workflow_path: str, plan_workflow_file: str) -> bool:
    """Whether a run's workflow (`.github/workflows/x.yml`, maybe with `@ref`) is the plan's."""
    name = PurePosixPath(workflow_path.split("@", 1)[0]).name
    return name == PurePosixPath(plan_workflow_file).name


def approve_refusal(plan: RolloutPlan, card: UnfollowedRun) -> str | None:
    """Why an `approve` default rejects the run instead (None: it may approve): a ref that is
    not a release tag, as for Adopt (a branch may carry a modified workflow); a two-person
    rule on dispatch (no approver at all would have let the run deploy), or an environment
    the plan does not name (a stage's, or a track's failure job's): no gate of the plan
    watches a deployment there."""
    if not card.on_a_tag:
        return f"`{shown(card.ref)}` {no_release(card)}"
    if TwoPersonAction.DISPATCH in plan.two_person:
        return "the plan's two-person rule covers dispatch"
    if card.environment.casefold() not in environment_jobs(plan):
        return f"the plan does not name the environment {card.environment}"
    return None


def release_tag(ref: str, branch: str) -> str:
    """The release tag a run on `ref` rolls out once adopted: `ref` itself when it is a valid
    tag other than `branch`, the branch the plan's workflow runs on (a run dispatched on it
    takes its release from its inputs, which GitHub does not show); "" otherwise."""
    if ref == branch:
        return ""
    try:
        return parse_tag(ref)
    except InvalidTag:
        return ""


def adopted_flags(card: UnfollowedRun) -> str:
    """How the adopted rollout's feature flags were confirmed (with the adopter): the Adopt
    dialog asks the adopter to confirm them."""
    return f"by adopting run {card.run_id}"


def may_adopt(two_person: Collection[TwoPersonAction]) -> None:
    """Refuse an Adopt under a plan whose two-person rule covers dispatch: an adopted run is
    approved at once, and whoever started it on GitHub may be the adopter (a GitHub login is
    not a Slack user), so the Adopt would be a dispatch by one person."""
    if TwoPersonAction.DISPATCH in two_person:
        raise NotAuthorized(
            "The plan's two-person rule needs a second approver to dispatch a release, and an "
            "adopted run is approved at once by whoever adopts it (who started it on GitHub is "
            "not known here): nothing was changed. Reject the run, and start the release with "
            "`/rollout start <tag>` so that another approver dispatches it."
        )


def may_override(reason: str, two_person: Collection[TwoPersonAction]) -> None:
    """Refuse an Adopt overriding a freeze without a reason, or under a plan whose two-person
    rule covers overriding a freeze (an adopted run is approved at once)."""
    if not reason.strip():
        raise InvalidTransition("An override needs a reason.")
    if TwoPersonAction.OVERRIDE_FREEZE in two_person:
        raise InvalidTransition(
            "The plan's two-person rule needs a second approver to deploy through a freeze, "
            "and an adopted run is approved at once: nothing was changed. Reject the run, or "
            "adopt it once the freeze ends or is lifted."
        )


def not_a_tag(card: UnfollowedRun) -> str:
    """Why Adopt is refused for a run whose ref is not a release tag, and what to do."""
    return (
        f"Run {card.run_id} runs on `{shown(card.ref)}`, which {no_release(card)}, so "
        "adopting it would roll out no known release: nothing was changed. Reject it, or start "
        "the release's tag with `/rollout start <tag>`."
    )


def no_release(card: UnfollowedRun) -> str:
    """Why the run's ref is no release, said after the ref's name (plain text)."""
    if card.tag_unread:
        why = card.tag_unread.rstrip(".")
        return f"is a release tag whose commit the bot could not read ({why})"
    if card.off_its_tag:
        return (
            "is a release tag, but the run is not at the tag's commit (a branch or a fork's "
            "branch of that name)"
        )
    return "is not a release tag"


def tag_moved(card: UnfollowedRun) -> str:
    """Why a card's run is no longer its tag's release (the tag moved to another commit since
    the card was posted), said after "since" (plain text)."""
    return f"`{shown(card.tag)}` was moved to another commit after the card was posted"


def moved_refusal(card: UnfollowedRun, why: str) -> str:
    """Why Adopt is refused for a run whose tag moved since its card (`tag_moved`)."""
    return (
        f"Run {card.run_id} was not adopted: {why}, so the run is not at the release's commit: "
        "nothing was changed. Reject it, or start the release's tag with `/rollout start <tag>`."
    )


def follows_run(rollout: Rollout | None) -> bool:
    """Whether the run's newest rollout follows it: one that ended follows none of its re-runs."""
    return rollout is not None and rollout.phase is not Phase.ENDED


def answered_meanwhile(card: UnfollowedRun, by: str) -> str:
    """The answer to an Adopt or Reject of a run another answer answered first (its claim
    done, or given back once it had answered): `by` names who answered (in words)."""
    how = {
        RunFate.ADOPTED: "adopted",
        RunFate.REJECTED: "rejected",
        RunFate.APPROVED: "approved",
        RunFate.NOTHING_WAITED: "answered (nothing waited for an answer any more)",
    }[card.fate]
    who = by if card.by else "the default answer"
    return f"Run {card.run_id} was {how} by {who} before this answer: nothing more was done."


def nothing_rejected(card: UnfollowedRun) -> str:
    """The answer to a Reject GitHub took nothing of: nothing of the run waited any more."""
    return (
        f"Run {card.run_id} was not rejected: GitHub answered that nothing of it waited for an "
        "answer any more (the run was cancelled, or someone answered it on GitHub first). Its "
        "card says so; look at the run's page on GitHub for what it does."
    )


REST_OWED = (
    "What else of the run waited then could not be rejected right after: if GitHub still "
    "shows it waiting on the run's page, reject it there."
)
"""Told to whoever rejected a run whose rest was not rejected (a later request of it is)."""

ANSWERED_UNSAVED = (
    "GitHub took the answer, then the bot could not record it on the run's card right after, "
    "so the card may still show its buttons: the run is answered, and nobody can answer it "
    "again through the bot. Look at the run's page on GitHub for what it does."
)
"""Told to whoever answered a run on GitHub when its card could not be settled after."""


def rejected_comment(actor: str) -> str:
    """The callback's comment (GitHub shows the App, not the person, as the one who answered)."""
    return f"rollout-bot: rejected by {github_person(actor)}; no rollout follows this run"


def default_comment(answer: DefaultAnswer, waited: timedelta, *, refused: str = "") -> str:
    """The callback's comment; `refused`: why an `approve` default rejects instead."""
    verb = "rejected" if answer == "reject" else "approved"
    setting = f"approve, which rejects it since {refused}" if refused else answer
    return (
        f"rollout-bot: {verb} by default (UNFOLLOWED_RUN_DEFAULT={setting}): nobody adopted "
        f"or rejected this run within {format_duration(waited)}"
    )
