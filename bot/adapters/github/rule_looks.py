"""What a look at a run tells of the App's requests whose job runs or ran already: let go as
the bot's answer applied, as an admin's bypass, or as possibly one (`RuleLooks.let_go`), and
which marks of the bot's answers a look shows were never applied (`RuleLooks.not_applied`);
for `protection_rules.ProtectionRules.holding` (docs/protection-rules.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.domain.protection_rules import RuleRequest
from bot.domain.run import JobStatus, RunSnapshot
from bot.services.ports import Clock
from bot.services.store_ports import ProtectionRuleRequests

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleLooks:
    """A service's requests as a look at one of its runs finds them."""

    requests: ProtectionRuleRequests
    clock: Clock
    jobs: Mapping[str, str]
    """Each gated environment's job (`ProtectionRules.jobs`)."""

    async def let_go(self, snapshot: RunSnapshot, known: Sequence[RuleRequest]) -> RunSnapshot:
        """Close the open requests whose job runs or ran: GitHub no longer waits for the App
        there. One the bot had posted an answer to that GitHub may have applied (`sent`: its
        reply lost, or not yet seen) is closed with that answer, its environment among the
        snapshot's `applied_unseen`; any other as `gone`, among `bypassed` (a repository
        admin started the job past its protection rules). Left open, such a request would be
        answered later, by a click, a stop, or on a re-run of the run whose job asks again at
        that environment (the callback names the run and the environment only), or offered on
        a card once the rollout ended. One let go already (by a look that failed or was
        overtaken after it, here or on another replica) is told the same way still, as long
        as it is its environment's latest request and of the snapshot's attempt (`of_attempt`:
        an earlier attempt's tells nothing of this one's job), and the look acted on tells it
        too: one closed with the answer the bot posted (`sent` kept, `let_go_unseen`), among
        `applied_unseen`; one closed as `gone`, among `bypassed`. One closed with the answer
        the bot posted, its outcome never learned, whose job GitHub started later than
        `ANSWER_REACH` after the post had ended (`sent_at`: its replica may have died in the
        middle; `RuleRequest.started_late`) is among `late_starts`
        instead: the answer may not have reached GitHub, the start may be an admin's bypass."""
        moved = [r for r in known if r.open and self.moved_on(r, snapshot)]
        latest = [
            r
            for r in {r.environment.casefold(): r for r in known}.values()
            if of_attempt(snapshot, r)
        ]
        gone = [r for r in latest if r.answer == "gone" and self.moved_on(r, snapshot)]
        unseen = [r for r in latest if let_go_unseen(r) and self.moved_on(r, snapshot)]
        for request in moved:
            closed = await self.requests.close(
                run_id=request.run_id,
                environment=request.environment,
                answer=request.sent or "gone",
                at=self.clock(),
            )
            if closed and request.sent is None:
                _log.warning(
                    "GitHub: run %s: the job at %s started without the App's answer to its "
                    "protection rule (a repository admin started it past its protection "
                    "rules): its request is let go",
                    request.run_id,
                    request.environment,
                )
            elif closed and (late := self._late(request, snapshot)) is not None:
                _log.warning(
                    "GitHub: run %s: the job at %s started %s after the bot's answer (%s) had "
                    "been posted, its outcome never learned: the answer may not have reached "
                    "GitHub, and a repository admin may have started the job past its "
                    "protection rules",
                    request.run_id,
                    request.environment,
                    late,
                    request.sent,
                )
            elif closed:
                _log.info(
                    "GitHub: run %s: the job at %s went on: the bot's answer (%s) was applied",
                    request.run_id,
                    request.environment,
                    request.sent,
                )
        sent = [r for r in moved if r.sent is not None] + unseen
        late_starts = {
            r.environment: late for r in sent if (late := self._late(r, snapshot)) is not None
        }
        return replace(
            snapshot,
            bypassed=frozenset(
                {r.environment for r in moved if r.sent is None} | {r.environment for r in gone}
            ),
            applied_unseen=frozenset(
                r.environment for r in sent if r.environment not in late_starts
            ),
            late_starts=late_starts,
        )

    def _late(self, request: RuleRequest, snapshot: RunSnapshot) -> timedelta | None:
        """How late the request's job started after the bot's answer to it had been posted
        (`RuleRequest.started_late`, by GitHub's start of the job)."""
        job = snapshot.job(self.jobs.get(request.environment.casefold(), ""))
        return request.started_late(None if job is None else job.started_at)

    async def not_applied(
        self, snapshot: RunSnapshot, known: Sequence[RuleRequest], read_at: datetime
    ) -> None:
        """Clear the mark of an answer whose outcome the bot never learned (`sent_at`) once a
        read begun after its post had ended (at the latest: its replica may have died in the
        middle) sees the job still waiting: GitHub did not apply it, and a start of the job
        later is no answer of the bot's (an admin's bypass)."""
        for request in known:
            job = snapshot.job(self.jobs.get(request.environment.casefold(), ""))
            ended = request.sent_at
            if not request.open or ended is None or ended >= read_at or job is None:
                continue
            if job.status is not JobStatus.WAITING:
                continue
            cleared = await self.requests.not_applied(
                run_id=request.run_id, environment=request.environment, sent_at=ended
            )
            if cleared:
                _log.info(
                    "GitHub: run %s: the job at %s still waits: the bot's answer (%s) whose "
                    "outcome it never learned was not applied",
                    request.run_id,
                    request.environment,
                    request.sent,
                )

    def moved_on(self, request: RuleRequest, snapshot: RunSnapshot) -> bool:
        """Whether the request's job runs or ran: it waits no more, whatever the request says."""
        job = snapshot.job(self.jobs.get(request.environment.casefold(), ""))
        return job is not None and job.status in (JobStatus.IN_PROGRESS, JobStatus.COMPLETED)


def of_attempt(snapshot: RunSnapshot, request: RuleRequest) -> bool:
    """Whether `request` may be of the snapshot's attempt. Requests name no attempt (nor does
    the callback): one kept before a re-run began (GitHub's `run_started_at`, which a re-run
    resets) asked for an earlier attempt's job, and how it was closed says nothing of this
    attempt's. GitHub re-runs only a completed run, so its requests all came before."""
    started = snapshot.started_at
    return snapshot.attempt == 1 or started is None or request.requested_at >= started


def let_go_unseen(request: RuleRequest) -> bool:
    """Whether the closed `request` was closed with the answer the bot posted to it (`sent`,
    kept once closed): GitHub applied it, whether the click saw its reply or a look found the
    job started first (the reply on its way, or lost: `sent_at`). A refused or unapplied
    answer clears `sent` while the request is open; an admin's bypass closes it as `gone`."""
    return not request.open and request.sent is not None and request.answer == request.sent
