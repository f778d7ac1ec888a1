"""The rollout domain's errors: each has a stable code that logs, audits and tests can rely on.

A known error is something the user can act on; its message is safe to show in Slack
(it never carries a secret) and says what would allow the action.
"""

from __future__ import annotations


class RolloutError(Exception):
    """Base of every error the bot expects and explains to the user."""

    code = "rollout_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidCommand(RolloutError):
    """The slash command's text does not parse (unknown subcommand, missing argument)."""

    code = "invalid_command"
    with_help = True
    """Whether the answer shows the help after the message."""


class InvalidTag(InvalidCommand):
    """A release tag that is not a valid image tag."""

    code = "invalid_tag"


class TagNotFound(RolloutError):
    """`/rollout start` of a tag the repository does not have (a typo): nothing is started."""

    code = "tag_not_found"


class NotAReleaseChannel(RolloutError):
    """A state-changing command from a channel outside RELEASE_CHANNELS."""

    code = "not_a_release_channel"


class ServiceNotConfigured(RolloutError):
    """A card or form of a service the bot no longer releases (removed from, or renamed in,
    the services file since it was posted): nothing is done."""

    code = "service_not_configured"


class NotAuthorized(RolloutError):
    """The actor may not take this action."""

    code = "not_authorized"


class PlanError(RolloutError):
    """The rollout plan is invalid; the message names the key and the problem."""

    code = "invalid_plan"


class ServicesError(RolloutError):
    """The services file (ROLLOUT_SERVICES) is invalid; the message names each problem."""

    code = "invalid_services"


class NotAvailable(RolloutError):
    """A subcommand this version of the bot does not offer yet."""

    code = "not_available"


class GitHubError(RolloutError):
    """GitHub refused or failed a call; the message names the operation, GitHub's status and
    answer, and what would fix it (never a credential)."""

    code = "github_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """GitHub's HTTP status when it refused the call (None: no answer, nothing sent, a
        rate limit, or not told)."""

    @property
    def refused(self) -> bool:
        """GitHub answered with a refusal (a 4xx other than its rate limit): asking the same
        again gets the same answer until someone changes something (rights, a rule)."""
        return self.status is not None and 400 <= self.status < 500

    @property
    def cause(self) -> str:
        """What went wrong, in a few words, without the operation ("GitHub answered 502 ...")."""
        return self.message.split(" when asked to ", 1)[0]


class GitHubRateLimited(GitHubError):
    """GitHub's rate limit (403 with no requests left, or 429): wait `retry_after` seconds
    (when GitHub said how long) before asking again."""

    code = "github_rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RefNotFound(GitHubError):
    """GitHub knows no tag or commit of that name (404): a tag deleted, or never pushed."""

    code = "github_ref_not_found"


class TagTooDeep(GitHubError):
    """GitHub answered for the tag, but it is a tag of a tag deeper than the bot follows to
    its commit: asking again reads the same; the message says how to point it at its commit."""

    code = "github_tag_too_deep"


class RunNotIdentified(GitHubError):
    """The dispatch went through but its run cannot be told apart yet: never dispatch again,
    keep looking (or link the run by hand)."""

    code = "run_not_identified"

    def __init__(self, message: str, *, accepted: bool = False) -> None:
        super().__init__(message)
        self.accepted = accepted
        """GitHub answered the dispatch clearly, accepting it: only its run is not told."""


class RerunUnclear(GitHubError):
    """A re-run of a failure job whose answer was unclear, and whether GitHub did it could not
    be read back: it may have happened, so it is never asked for again by the bot."""

    code = "rerun_unclear"


class RerunLaneTaken(RolloutError):
    """GitHub re-ran a failure job, but another rollout took the track's lane before the
    re-run rollout was saved as following it: done on GitHub, followed by nobody, so it is
    never asked for again, and the person and the thread are told what waits on GitHub."""

    code = "rerun_not_followed"


class RerunUnsaved(RolloutError):
    """GitHub re-ran a failure job, but the rollout could not be saved as following it (the
    database failed): its click's claim is kept unrecorded, so the click after its lease
    follows that attempt instead of asking GitHub again."""

    code = "rerun_unsaved"


class RerunNotSeen(GitHubError):
    """A re-run of a failure job whose answer was unclear, and the run read back still at the
    attempt it was asked to re-run: GitHub may apply it later (a request it took after the
    client gave up), so its click's claim is kept unrecorded, as `RerunUnsaved`'s is."""

    code = "rerun_not_seen"


class PromotedWhileStopping(RolloutError):
    """A Promote's approval reached GitHub, which deploys the stage, while its track was being
    stopped (a Roll back, a Kill-switch or a failed gate saved on another replica): done, but
    not the promotion the person asked for; the track rolls back or halts all the same."""

    code = "promoted_while_stopping"

    def __init__(self, message: str, *, approved: str = "", track: str = "") -> None:
        super().__init__(message)
        self.approved = approved
        """The label of the stage the Promote approved on GitHub."""
        self.track = track
        """The label of its track."""

    @classmethod
    def told(cls, approved: str, track: str, where: str) -> PromotedWhileStopping:
        """The answer, `where` saying where each track stands (`where_it_stands`)."""
        return cls(
            f"Your Promote approved {approved} ({track}) on GitHub, which deploys it, but the "
            f"track was being stopped meanwhile: {where} The thread says where the release is.",
            approved=approved,
            track=track,
        )


class PartlyPromoted(RolloutError):
    """`/rollout promote` promoted some of the held tracks and not the others (a hold only
    its button overrides, a two-person rule, GitHub failing): the message names both, so a
    promotion made is never answered as a refusal alone."""

    code = "partly_promoted"


class RolloutInProgress(RolloutError):
    """A track already has an active rollout: one rollout per track at a time. Carries the
    active rollout's id so the answer can link to it."""

    code = "rollout_in_progress"

    def __init__(self, message: str, *, track: str, active_rollout_id: str | None) -> None:
        super().__init__(message)
        self.track = track
        self.active_rollout_id = active_rollout_id


class ConcurrentChange(RolloutError):
    """Someone (a click, another replica) changed the rollout since it was read: read it again
    and decide again."""

    code = "concurrent_change"

    def __init__(self, message: str, *, rollout_id: str) -> None:
        super().__init__(message)
        self.rollout_id = rollout_id
