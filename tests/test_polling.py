"""The polling fallback: conditional requests (If-None-Match, 304) and the poller's pace.

The gateway test runs PyGithub against the GitHub simulator. The pacing tests run the whole
bot with its own poller asleep (an interval of an hour) and drive a second `Scheduler` on the
same services with a manual clock, so each look at GitHub is one explicit `poll_runs()`; two
such schedulers on one clock stand for two replicas.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from replicas import poll_stores
from sandbox_views import deploying_canary, value_of

from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.transport import GitHubTransport
from bot.adapters.slack import messages
from bot.domain.rollout import StageState
from bot.services.scheduler import Scheduler
from sandbox.clock import ManualClock
from sandbox.config import GITHUB_TOKEN
from sandbox.github import GitHubSimulator, RecordedRequest
from sandbox.harness import Sandbox
from storage.deliveries import DeliveryLog
from storage.timers import TimerStore

BASE = timedelta(seconds=10)
RUN_PARTS = ("", "/jobs", "/pending_deployments", "/approvals")


def run_gets(requests: list[RecordedRequest], run_id: int) -> list[RecordedRequest]:
    """The GETs of one look at the run: the run, its jobs, its waiting and its reviews."""
    prefix = f"/repos/scriptum/scriptum/actions/runs/{run_id}"
    return [
        r for r in requests if r.method == "GET" and r.path in {prefix + part for part in RUN_PARTS}
    ]


async def test_an_unchanged_run_is_read_with_if_none_match_and_304s() -> None:
    async with GitHubSimulator(token=GITHUB_TOKEN) as gh:
        gateway = PyGithubGateway(
            GitHubTransport(api_url=gh.api_url, token=GITHUB_TOKEN, repository=gh.repository)
        )
        try:
            run_id = gh.create_foreign_run(actor="release-bot")
            first = await gateway.snapshot(run_id)
            looked = len(gh.requests)
            remaining = gh.rate_limit_remaining

            again = await gateway.snapshot(run_id)

            second = gh.requests[looked:]
            assert [
                r.path.removeprefix(f"/repos/scriptum/scriptum/actions/runs/{run_id}")
                for r in second
            ] == list(RUN_PARTS)
            assert all(r.if_none_match and r.status == 304 for r in second)
            assert again == first
            assert gh.rate_limit_remaining == remaining  # 304s cost no rate limit

            gh.review(run_id, ["relay-canary-5"], "approved", actor="octocat")
            moved = await gateway.snapshot(run_id)

            assert moved.jobs["Relay rollout 5% canary (30m)"].succeeded
            assert [r.reviewer for r in moved.reviews] == ["octocat"]
            assert moved.review_of("Relay-Canary-5") is not None
            third = {r.path.rsplit("/", 1)[-1]: r.status for r in gh.requests[-len(RUN_PARTS) :]}
            assert (third["jobs"], third["approvals"]) == (200, 200)  # what changed is read
        finally:
            await gateway.close()


class Poller:
    """A second scheduler on the bot's services, moved by hand along a manual clock (another
    poller's, for a replica beside it)."""

    def __init__(self, box: Sandbox, *, clock: ManualClock | None = None) -> None:
        self.box = box
        self.clock = clock or ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
        self.scheduler = Scheduler(
            timers=TimerStore(box.services.database.sessions),
            service=box.services.rollouts,
            **poll_stores(box.services.database.sessions),
            words=messages,
            clock=self.clock,
            poll_interval=BASE,
            max_poll_interval=BASE * 4,
        )

    async def look(self, run_id: int, *, after: timedelta = timedelta(0)) -> list[RecordedRequest]:
        """Move the clock, poll once; the requests this made to the run."""
        self.clock.advance(after)
        before = len(self.box.github.requests)
        await self.scheduler.poll_runs()
        return run_gets(self.box.github.requests[before:], run_id)


async def canary_poller(box: Sandbox) -> tuple[Poller, int]:
    """The relay canary deploying on its run, and a `Poller` beside the bot; the run's id."""
    run_id = (await deploying_canary(box)).run_id
    assert run_id is not None
    return Poller(box), run_id


async def test_the_poller_backs_off_while_nothing_changes_and_catches_up_on_a_change(
    quiet: Sandbox,
) -> None:
    poller, run_id = await canary_poller(quiet)

    # The canary and the internal ring finished since the dispatch: the look sees it.
    changed = await poller.look(run_id)
    assert {r.status for r in changed} >= {200}
    seen = await quiet.rollout()
    assert seen.track("relay").stage("canary").state is StageState.OBSERVING
    await quiet.wait_for_thread("*5% canary* deployed (Hosted relay).")

    # Nothing changes: conditional requests, 304s, and looks further and further apart.
    looks = {
        step: await poller.look(run_id, after=BASE)
        for step in range(1, 8)  # T+10s .. T+70s
    }
    looked_at = [step for step, gets in looks.items() if gets]
    assert looked_at == [1, 3, 7]  # due after 10 s, then 20 s, then 40 s (the cap)
    for step in looked_at:
        assert [r.status for r in looks[step]] == [304] * len(RUN_PARTS)
        assert all(r.if_none_match for r in looks[step])
    assert await quiet.rollout() == seen  # a 304 is "unchanged": nothing was redone

    # A person approves the 50% on github.com: the next due look finds it, with their login,
    # and the poller is back at its base pace.
    quiet.github.review(run_id, ["relay-rollout-50"], "approved", actor="octocat")
    assert await poller.look(run_id, after=BASE * 3) == []  # T+100s: not due before T+110s
    found = await poller.look(run_id, after=BASE)
    assert 200 in {r.status for r in found}
    said = await quiet.wait_for_thread("octocat approved *50%* (Hosted relay) on GitHub")
    assert "the window of 5% canary is stopped before its gate" in said
    assert (await quiet.rollout()).track("relay").stage("half").state is StageState.OBSERVING
    assert poller.scheduler.poller.paces[seen.id].interval == BASE


async def test_the_poller_waits_out_a_rate_limit(quiet: Sandbox) -> None:
    poller, run_id = await canary_poller(quiet)
    await poller.look(run_id)

    quiet.github.fail_next("GET", f"/repos/*/actions/runs/{run_id}", 403)
    refused = await poller.look(run_id, after=BASE)

    assert [r.status for r in refused] == [403]
    paused = poller.scheduler.poller.paused.get("")
    assert paused is not None and paused - poller.clock() > timedelta(minutes=50)
    for _ in range(5):  # GitHub said when the limit resets: not one request before that
        assert await poller.look(run_id, after=BASE * 10) == []
    resumed = await poller.look(run_id, after=timedelta(hours=1))
    assert [r.status for r in resumed] == [304] * len(RUN_PARTS)
    assert poller.scheduler.poller.paused == {}


async def test_a_rate_limit_that_says_no_wait_pauses_polling_longer_each_time(
    quiet: Sandbox,
) -> None:
    """A secondary rate limit (429 or 403) without `Retry-After`, with requests left: GitHub's
    REST docs say to wait at least one minute before retrying, not the poll interval, and an
    exponentially increasing time while it goes on."""
    poller, run_id = await canary_poller(quiet)
    await poller.look(run_id)
    secondary = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}

    async def look(after: timedelta) -> list[RecordedRequest]:
        quiet.clock.skipped += after  # the bot's budget holds its calls back on its own clock
        return await poller.look(run_id, after=after)

    quiet.github.fail_next("GET", f"/repos/*/actions/runs/{run_id}", 429, secondary)
    refused = await look(BASE)

    assert [r.status for r in refused] == [429]  # not asked again at once either
    paused = poller.scheduler.poller.paused.get("")
    assert paused is not None and paused - poller.clock() >= timedelta(minutes=1)
    assert await look(BASE * 5) == []  # 50 s: still waiting
    quiet.github.fail_next("GET", f"/repos/*/actions/runs/{run_id}", 403, secondary)
    assert [r.status for r in await look(paused - poller.clock())] == [403]
    paused = poller.scheduler.poller.paused.get("")
    assert paused is not None and paused - poller.clock() >= timedelta(minutes=2)  # doubled
    assert await look(timedelta(seconds=110)) == []
    resumed = await look(paused - poller.clock())
    assert resumed and {r.status for r in resumed} <= {200, 304}


async def test_two_replicas_look_at_a_run_once_per_interval_between_them(quiet: Sandbox) -> None:
    a, run_id = await canary_poller(quiet)
    b = Poller(quiet, clock=a.clock)

    async def step(n: int) -> list[str]:
        """Both replicas pass, in turns first; who looked at the run."""
        a.clock.advance(BASE if n else timedelta(0))
        turns = [("a", a), ("b", b)] if n % 2 == 0 else [("b", b), ("a", a)]
        looked = []
        for name, poller in turns:
            if await poller.look(run_id):
                looked.append(name)
        return looked

    looks = {n: await step(n) for n in range(16)}

    # As one replica alone would: the change, then due after 10 s, 20 s, 40 s, 40 s (the cap).
    assert {n: who for n, who in looks.items() if who} == {
        0: ["a"],
        1: ["b"],
        3: ["b"],
        7: ["b"],
        11: ["b"],
        15: ["b"],
    }
    assert [n for n, who in looks.items() if who] == [0, 1, 3, 7, 11, 15]

    # A click on the card (the window extended) changes the rollout: the next look is due at
    # once on both replicas, and one of them makes it.
    async def click() -> None:
        before = await quiet.rollout()
        await quiet.click("extend_window", value=await value_of(quiet, "extend_window", "relay"))
        await quiet.wait_until(lambda r: r.version != before.version)

    await click()
    assert await step(16) == ["a"]  # not due before step 19 otherwise
    assert [await step(n) for n in range(17, 21)] == [["b"], [], ["b"], []]
    await click()
    assert await step(21) == ["b"]  # not due before step 23 otherwise


async def test_while_webhook_deliveries_arrive_an_unchanged_run_is_looked_at_less_often(
    quiet: Sandbox,
) -> None:
    rollout = await deploying_canary(quiet)
    assert rollout.run_id is not None
    poller = Poller(quiet)
    deliveries = DeliveryLog(quiet.services.database.sessions)
    await poller.look(rollout.run_id)

    looks = []
    for step in range(1, 81):  # T+10s .. T+800s; a delivery about the rollout until T+400s
        if step <= 40:
            await deliveries.remember(
                delivery_id=f"d-{step}",
                event="workflow_job",
                rollout_id=rollout.id,
                received_at=poller.clock() + BASE,
            )
        if await poller.look(rollout.run_id, after=BASE):
            looks.append(step)

    # Due after 10 s, 20 s, 40 s, then on to 80 s, 160 s, 320 s (8 times the cap of 40 s) while
    # deliveries arrive. None came within 320 s at T+730s: the cap is 40 s again, at once.
    assert looks == [1, 3, 7, 15, 31, 63, 73, 77]
