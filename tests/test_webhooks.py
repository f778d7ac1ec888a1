"""GitHub webhooks end to end: the simulator's events POSTed to the bot as signed deliveries.

The webhook runs use a poll interval of an hour, so GitHub's changes reach the bot only
through the webhook (the poller looks once, at start, before any rollout exists). A story on
SQLite; duplicate and concurrent deliveries and the database blip on both (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from figures import CANARY_CRASHING, CANARY_OK, HALF_OK, RINGS_OK
from sandbox_views import both_held, dispatched, stage_state
from sqlalchemy.exc import OperationalError

from bot.domain.rollout import (
    Phase,
    Rollout,
    StageState,
    StopKind,
    StopReason,
    TrackState,
    holding_tracks,
)
from bot.services.webhooks import Intake
from sandbox.config import GITHUB_WEBHOOK_SECRET, OTHER_CHANNEL, RELEASE_CHANNEL, REPOSITORY
from sandbox.harness import Sandbox, fast_plan, write_figures
from sandbox.signing import github_signature_headers

pytestmark = pytest.mark.story

WEBHOOK_ONLY = 3600.0
"""GITHUB_POLL_INTERVAL for webhook runs: the poller never looks during a test."""

END_STATE = {
    "phase": Phase.ENDED,
    "relay": (TrackState.COMPLETED, [StageState.PASSED, StageState.PASSED, StageState.DEPLOYED]),
    "desktop": (
        TrackState.COMPLETED,
        [StageState.PASSED, StageState.PASSED, StageState.DEPLOYED],
    ),
    "relay reviews": [
        ("relay-canary-5", "approved", "release-bot"),
        ("relay-rollout-50", "approved", "release-bot"),
        ("relay-rollout-100", "approved", "release-bot"),
    ],
    "desktop reviews": [
        ("desktop-internal", "approved", "release-bot"),
        ("desktop-beta", "approved", "release-bot"),
        ("desktop-ga", "approved", "release-bot"),
    ],
}
"""Where the whole rollout ends, whichever way the bot hears of GitHub's changes."""


@dataclass(frozen=True)
class Delivery:
    event: str
    delivery_id: str
    body: bytes
    status: int
    answer: Mapping[str, Any]


class GitHubHook:
    """GitHub's side of the webhook: posts each simulator event to the bot, signed with the
    sandbox's GITHUB_WEBHOOK_SECRET under a fresh delivery id, and keeps what it sent."""

    def __init__(self, box: Sandbox, http: aiohttp.ClientSession) -> None:
        self._box = box
        self._http = http
        self.sent: list[Delivery] = []

    async def deliver(self, event: str, payload: Mapping[str, Any]) -> None:
        self.sent.append(await self.post(event, json.dumps(payload).encode()))

    async def post(self, event: str, body: bytes, *, delivery_id: str | None = None) -> Delivery:
        headers = github_signature_headers(
            GITHUB_WEBHOOK_SECRET, body, event=event, delivery=delivery_id
        )
        async with self._http.post(
            f"{self._box.url}/github/webhook", data=body, headers=headers
        ) as response:
            answer = await response.json()
            status = response.status
        return Delivery(event, headers["X-GitHub-Delivery"], body, status, answer)

    async def settled(self) -> None:
        """Every event GitHub has so far is delivered and acted on."""
        await self._box.github.settle()
        await self._box.services.webhooks.settled()

    @staticmethod
    def unseen(delivery: Delivery) -> bytes:
        """The delivery's news in a body the bot has not taken in (the same JSON, spaced out):
        the same bytes under a new id would be the same body sent again."""
        return json.dumps(json.loads(delivery.body), indent=1).encode()

    def followed(self) -> list[Delivery]:
        return [d for d in self.sent if d.answer.get("result") == "followed"]

    def job_completed(self, name: str | None = None) -> Delivery:
        """The first followed delivery saying a workflow job completed (the job `name`, if
        given)."""
        return next(
            d
            for d in self.followed()
            if d.event == "workflow_job"
            and json.loads(d.body)["action"] == "completed"
            and name in (None, json.loads(d.body)["workflow_job"]["name"])
        )


def plan_yaml(figures: Path, *, window: str, **notifications: str) -> str:
    """The accelerated built-in plan, with these windows and notification settings."""
    plan = yaml.safe_load(fast_plan(figures, window=window))
    plan["notifications"] = {"level": "stages", **notifications}
    return yaml.safe_dump(plan, sort_keys=False)


@asynccontextmanager
async def sandbox(
    tmp_path: Path,
    database_url: str,
    *,
    poll_interval: float = WEBHOOK_ONLY,
    level: str = "stages",
    canary: Mapping[str, Any] = CANARY_OK,
    window: str = "2s",
    **notifications: str,
) -> AsyncIterator[Sandbox]:
    async with Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        poll_interval=poll_interval,
        plan_yaml=plan_yaml(tmp_path / "figures.yml", window=window, level=level, **notifications),
    ) as box:
        write_figures(box.figures, "relay", {"canary": canary, "half": HALF_OK})
        write_figures(box.figures, "desktop", RINGS_OK)
        yield box


@pytest.fixture
async def hooked(
    tmp_path: Path, database_url: str, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[Sandbox, GitHubHook]]:
    """The bot with the webhook as its only way of hearing from GitHub."""
    async with sandbox(tmp_path, database_url) as box:
        hook = GitHubHook(box, http)
        box.github.on_event(hook.deliver)
        yield box, hook


@pytest.fixture
async def observing(
    tmp_path: Path, database_url: str, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[Sandbox, GitHubHook]]:
    """A webhook-only bot whose rollout observes its first stages for an hour (nothing moves
    on its own), with every delivery so far acted on."""
    async with sandbox(tmp_path, database_url, window="1h", level="all") as box:
        hook = GitHubHook(box, http)
        box.github.on_event(hook.deliver)
        await dispatched(box)
        await box.wait_until(
            lambda r: (
                stage_state(r, "relay", "canary") is StageState.OBSERVING
                and stage_state(r, "desktop", "internal") is StageState.OBSERVING
            )
        )
        await hook.settled()
        yield box, hook


def reviews(box: Sandbox, prefix: str) -> list[tuple[str, str, str]]:
    return [
        (name, review.state, review.actor)
        for review in box.github.reviews
        for name in review.environments
        if name.startswith(prefix)
    ]


def end_state(box: Sandbox, rollout: Rollout) -> dict[str, object]:
    lanes = {t.name: (t.state, [s.state for s in t.stages]) for t in rollout.tracks}
    return {
        "phase": rollout.phase,
        **lanes,
        "relay reviews": reviews(box, "relay"),
        "desktop reviews": reviews(box, "desktop"),
    }


async def dispatched_and_held(box: Sandbox) -> int:
    """Dispatch and wait until both tracks hold; the id of the rollout's run."""
    rollout = await dispatched(box)
    await both_held(box)
    assert rollout.run_id is not None
    return rollout.run_id


async def run_to_the_end(box: Sandbox) -> Rollout:
    """Dispatch, promote both tracks at each hold, and wait for the rollout to end."""
    await dispatched(box)
    for _ in range(2):
        await both_held(box)
        assert "Promoted" in await box.command("promote")
    return await box.wait_until(lambda r: r.phase is Phase.ENDED, timeout=30)


@pytest.mark.parametrize("path", ["webhook", "polling"])
async def test_a_whole_rollout_ends_the_same_through_webhooks_or_polling(
    tmp_path: Path, database_url: str, http: aiohttp.ClientSession, path: str
) -> None:
    interval = WEBHOOK_ONLY if path == "webhook" else 0.05
    async with sandbox(tmp_path, database_url, poll_interval=interval) as box:
        hook = GitHubHook(box, http)
        if path == "webhook":
            box.github.on_event(hook.deliver)

        ended = await run_to_the_end(box)

        assert end_state(box, ended) == END_STATE
        thread = "\n".join(box.thread())
        assert (
            "Rollout of `v1.4.2` ended. Hosted relay: completed; Desktop app and CLI: completed."
            in thread
        )
        assert thread.count("*100%* deployed: Hosted relay is done.") == 1
        if path == "webhook":
            # The webhook carried every change: each job's completion was a followed delivery,
            # but the last stages': the bot's look at the run after the last Promote may see
            # those jobs done first and end the rollout, and their deliveries find it ended.
            await hook.settled()  # the bot may act on a delivery before its answer is back
            completions = {
                json.loads(d.body)["workflow_job"]["name"]: d.answer.get("result")
                for d in hook.sent
                if d.event == "workflow_job" and b'"action": "completed"' in d.body
            }
            for job in ("Relay rollout 50% (60m)", "Desktop/CLI ring deploy - beta"):
                assert completions[job] == "followed", completions
            for job in ("Relay rollout 100%", "Desktop/CLI ring deploy - GA"):
                assert completions[job] in ("followed", "ignored"), completions
            assert all(d.status == 202 for d in hook.sent)
        else:
            assert hook.sent == []


async def test_a_burst_of_deliveries_about_one_run_costs_one_look(
    observing: tuple[Sandbox, GitHubHook],
) -> None:
    box, hook = observing
    run_id = (await box.rollout()).run_id
    [job] = [d for d in hook.followed() if d.event == "workflow_job"][-1:]
    before = len(box.github.requests)

    # GitHub tells of a job's every step (queued, started, waiting, finished...) in one burst.
    steps = [json.dumps({**json.loads(job.body), "step": n}).encode() for n in range(10)]
    burst = await asyncio.gather(*(hook.post(job.event, step) for step in steps))
    await hook.settled()

    assert {d.answer["result"] for d in burst} == {"followed"}
    looks = [r for r in box.github.requests[before:] if r.path.endswith(f"/actions/runs/{run_id}")]
    # A reconcile that started after a delivery arrived saw its change: not ten looks.
    assert 1 <= len(looks) <= 3


@pytest.mark.database_matters
async def test_a_burst_behind_a_look_whose_act_failed_is_still_acted_on(
    observing: tuple[Sandbox, GitHubHook],
) -> None:
    """A look at the run reads GitHub after a burst's deliveries arrived, then its save finds
    the rollout changed by another replica (`ConcurrentChange`): nothing acted on that read, so
    the burst's next delivery reads the run and acts on it, not the poller (an hour away)."""
    box, hook = observing
    before = await box.rollout()
    assert before.run_id is not None
    store = box.services.rollouts.effects.store
    save = store.save
    raced: list[Rollout] = []

    async def another_replica_first(rollout: Rollout, **written: Any) -> Rollout:
        if not raced:  # another replica saves the rollout while this one acts on its read
            stored = await store.get(rollout.id)
            assert stored is not None
            raced.append(await save(stored))
        return await save(rollout, **written)

    # The look in front reads the run and its jobs, and waits for GitHub's pending deployments.
    answered = box.github.hold("GET", f"/repos/{REPOSITORY}/actions/runs/*/pending_deployments")
    try:
        job = hook.job_completed("Relay rollout 5% canary (30m)")
        in_front = asyncio.create_task(hook.post(job.event, hook.unseen(job)))
        await reading_held(box)
        box.github.engine.cancel(before.run_id)  # someone cancels the run on GitHub: a burst
        await box.github.settle()  # its deliveries arrived, queued behind the look in front
        cancelled = [d for d in hook.sent[-4:] if b'"conclusion": "cancelled"' in d.body]
        assert len(cancelled) >= 2 and {d.answer["result"] for d in cancelled} == {"followed"}
        store.save = another_replica_first  # type: ignore[method-assign]
    finally:
        answered.set()
    assert (await in_front).answer["result"] == "followed"
    await hook.settled()

    assert raced, "no look acted on the cancelled run"
    after = await box.rollout()
    assert after.version > raced[0].version  # acted on after the other replica's save
    assert after.track("relay").state is not before.track("relay").state
    assert "cancelled" in "\n".join(box.thread())


async def reading_held(box: Sandbox) -> None:
    """Until GitHub holds a read unanswered."""
    for _ in range(3000):
        if box.github.holding:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("GitHub holds no read")


@pytest.mark.database_matters
@pytest.mark.parametrize("under", ["its own id", "a new id"])
async def test_duplicate_deliveries_change_nothing(
    observing: tuple[Sandbox, GitHubHook], under: str
) -> None:
    """A redelivery (its own id), or the same signed body under a new id (`X-GitHub-Delivery`
    is outside the signature; the repository's admins see past deliveries): taken in before."""
    box, hook = observing
    before = await box.rollout()
    thread = box.thread()
    requests = len(box.github.requests)
    followed = hook.followed()
    assert len(followed) >= 4, "too few deliveries acted on"
    assert "GitHub: *Relay rollout 5% canary (30m)* finished: `success`." in thread

    replays = [
        await hook.post(
            d.event, d.body, delivery_id=d.delivery_id if under == "its own id" else None
        )
        for d in followed
    ]
    await hook.settled()

    assert {(r.status, r.answer["result"]) for r in replays} == {(200, "duplicate")}
    assert await box.rollout() == before
    assert box.thread() == thread  # level `all`: an acted-on delivery would have said so
    assert len(box.github.requests) == requests  # not even a look at the run


@pytest.mark.database_matters
async def test_one_delivery_sent_to_several_receivers_at_once_is_acted_on_once(
    observing: tuple[Sandbox, GitHubHook],
) -> None:
    box, hook = observing
    finished = hook.job_completed("Relay rollout 5% canary (30m)")
    note = "GitHub: *Relay rollout 5% canary (30m)* finished: `success`."
    assert box.thread().count(note) == 1

    answers = await asyncio.gather(
        *(
            hook.post(finished.event, hook.unseen(finished), delivery_id="redelivery-1")
            for _ in range(5)
        )
    )
    await hook.settled()

    assert sorted((a.status, a.answer["result"]) for a in answers) == [
        (200, "duplicate"),
        (200, "duplicate"),
        (200, "duplicate"),
        (200, "duplicate"),
        (202, "followed"),
    ]
    assert box.thread().count(note) == 2  # the redelivery once, however many copies


async def test_deliveries_the_bot_does_not_follow_answer_2xx_and_change_nothing(
    observing: tuple[Sandbox, GitHubHook],
) -> None:
    box, hook = observing
    before = await box.rollout()
    thread = box.thread()
    sample = json.loads(hook.followed()[-1].body)

    foreign_run = box.github.create_foreign_run()
    await hook.settled()
    elsewhere = await hook.post(
        "workflow_job",
        json.dumps({**sample, "repository": {"full_name": "someone/else"}}).encode(),
    )
    push = await hook.post("push", json.dumps({"ref": "refs/heads/main"}).encode())
    # A GitHub App's own events (octokit/webhooks payload examples, cut down): acked, never
    # 4xx, which GitHub would show as failed deliveries of the App's webhook.
    sender = {"login": "octocat", "id": 1}
    installed = {"id": 61_000_001, "account": sender}
    added = {"id": 7, "full_name": REPOSITORY, "private": True}
    app_events = [
        await hook.post(event, json.dumps(body | {"sender": sender}).encode())
        for event, body in (
            ("installation", {"action": "new_permissions_accepted", "installation": installed}),
            (
                "installation_repositories",
                {"action": "added", "installation": installed, "repositories_added": [added]},
            ),
            ("github_app_authorization", {"action": "revoked"}),
        )
    ]
    garbled = await hook.post(
        "workflow_job", json.dumps({"action": "completed", "workflow_job": "?"}).encode()
    )
    await hook.settled()

    of_foreign_run = [d for d in hook.sent if f'"run_id": {foreign_run}'.encode() in d.body]
    assert of_foreign_run
    for delivery in [*of_foreign_run, elsewhere, push, garbled, *app_events]:
        assert (delivery.status, delivery.answer["result"]) == (202, "ignored"), delivery.answer
    assert await box.rollout() == before
    assert box.thread() == thread


async def test_a_delivery_without_its_id_is_refused(
    hooked: tuple[Sandbox, GitHubHook], http: aiohttp.ClientSession
) -> None:
    box, _ = hooked
    body = json.dumps({"action": "completed"}).encode()
    headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event="workflow_run")
    del headers["X-GitHub-Delivery"]
    async with http.post(f"{box.url}/github/webhook", data=body, headers=headers) as response:
        assert response.status == 400
        assert "X-GitHub-Delivery" in (await response.json())["error"]


@pytest.mark.parametrize("delivery_id", [b"abc\xff\xfe", "d\u00e9j\u00e0".encode(), b"a b"])
async def test_a_delivery_whose_id_is_no_guid_is_refused_and_changes_nothing(
    hooked: tuple[Sandbox, GitHubHook], delivery_id: bytes
) -> None:
    """`X-GitHub-Delivery` is outside the signature: a signed body of a followed run sent again
    under an id that is not UTF-8 was answered 500 with a traceback (the id could not be
    written to the database). An id not shaped as GitHub's GUIDs (printable ASCII) is refused
    400 like a missing one; a new body under a GitHub-shaped id is still taken in."""
    box, hook = hooked
    await dispatched_and_held(box)
    await hook.settled()
    sent = hook.sent[-1]
    headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, sent.body, event=sent.event)
    del headers["X-GitHub-Delivery"]
    server = urlsplit(box.url)
    reader, writer = await asyncio.open_connection(server.hostname, server.port)
    try:
        writer.write(
            b"POST /github/webhook HTTP/1.1\r\nHost: bot\r\nConnection: close\r\n"
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
            + b"X-GitHub-Delivery: %b\r\nContent-Length: %d\r\n\r\n%b"
            % (delivery_id, len(sent.body), sent.body)
        )
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"X-GitHub-Delivery" in answer
    again = await hook.post(sent.event, sent.body + b" ")  # a body not taken in before
    assert (again.status, again.answer["result"]) == (202, "followed"), again.answer


async def test_an_approval_on_github_com_moves_the_stage_and_names_the_person(
    hooked: tuple[Sandbox, GitHubHook],
) -> None:
    box, _ = hooked
    run_id = await dispatched_and_held(box)

    box.github.review(run_id, ["relay-rollout-50"], "approved", actor="octocat")

    said = await box.wait_for_thread("octocat approved *50%* (Hosted relay) on GitHub")
    assert "the hold after 5% canary ends" in said
    moved = await box.wait_until(lambda r: stage_state(r, "relay", "half") is StageState.OBSERVING)
    assert stage_state(moved, "relay", "canary") is StageState.PASSED
    assert holding_tracks(moved) == ["desktop"]  # the other track still waits for its Promote
    await box.slack.wait_for(lambda: "Promote to 50%" not in box.card_message().rendered)
    assert "Promote to beta ring" in box.card_message().rendered
    assert ("relay-rollout-50", "approved", "octocat") in reviews(box, "relay")


async def test_a_renamed_repositorys_deliveries_are_followed_by_its_id(
    hooked: tuple[Sandbox, GitHubHook], caplog: pytest.LogCaptureFixture
) -> None:
    """GitHub names the repository by its new name in every delivery after a rename or
    transfer; the repository's id stays. The dispatch read the repository, so the bot knows
    its id: the deliveries are still followed, and the log says once to update the setting."""
    box, hook = hooked
    run_id = await dispatched_and_held(box)
    box.github.rename("scriptum/scriptum-editor")
    before = len(hook.sent)

    with caplog.at_level(logging.WARNING, logger="bot.services.webhooks"):
        box.github.review(run_id, ["relay-rollout-50"], "approved", actor="octocat")
        await box.wait_for_thread("octocat approved *50%* (Hosted relay) on GitHub")
        await hook.settled()

    renamed = [r.getMessage() for r in caplog.records if "renamed" in r.getMessage()]
    assert renamed == [
        f"GitHub repository {REPOSITORY} was renamed or transferred to scriptum/scriptum-editor: "
        "its webhook deliveries are taken in by its id; set the default service's repository "
        "to scriptum/scriptum-editor (ROLLOUT_SERVICES, or GITHUB_REPOSITORY)"
    ]
    since = [d for d in hook.sent[before:] if d.answer.get("result") == "followed"]
    assert len(since) > 1  # one WARNING for all of them
    sample = json.loads(since[-1].body)
    assert sample["repository"]["full_name"] == "scriptum/scriptum-editor"
    stranger = {**sample["repository"], "full_name": "someone/else", "id": 1}
    elsewhere = await hook.post(
        "workflow_job", json.dumps({**sample, "repository": stranger}).encode()
    )
    assert elsewhere.answer["result"] == "ignored"  # another repository: never routed


async def test_a_rejection_on_github_com_rolls_the_relay_back(
    hooked: tuple[Sandbox, GitHubHook],
) -> None:
    box, _ = hooked
    run_id = await dispatched_and_held(box)

    box.github.review(run_id, ["relay-rollout-50"], "rejected", actor="octocat", comment="too hot")

    said = await box.wait_for_thread("octocat rejected *50%* (Hosted relay) on GitHub (too hot)")
    assert "Relay auto-rollback" in said
    ended = await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
    assert ended.track("relay").ended_reason == StopReason(
        StopKind.REJECTED_ON_GITHUB, actor="octocat", subject="50%"
    )
    assert reviews(box, "relay") == [
        ("relay-canary-5", "approved", "release-bot"),
        ("relay-rollout-50", "rejected", "octocat"),
        ("relay-rollback", "approved", "release-bot"),
    ]
    assert ended.track("desktop").state is TrackState.ACTIVE
    await box.wait_for_thread("*Relay auto-rollback* finished.")


async def test_level_all_tells_each_step_github_reported(
    tmp_path: Path, database_url: str, http: aiohttp.ClientSession
) -> None:
    async with sandbox(tmp_path, database_url, level="all") as box:
        box.github.on_event(GitHubHook(box, http).deliver)
        await dispatched(box)
        await both_held(box)

        await box.wait_for_thread("GitHub: *Relay rollout 5% canary (30m)* started.")
        await box.wait_for_thread(
            "GitHub: *Desktop/CLI ring deploy - internal* finished: `success`"
        )
        await box.wait_for_thread(
            "GitHub: release-bot approved `relay-canary-5` (rollout-bot: v1.4.2 to 5% canary)."
        )
        await box.wait_for_thread("5% canary gate PASS")


async def test_level_failures_keeps_the_thread_to_failures_and_copies_them_elsewhere(
    tmp_path: Path, database_url: str
) -> None:
    async with sandbox(
        tmp_path,
        database_url,
        poll_interval=0.05,
        level="failures",
        canary=CANARY_CRASHING,
        failure_channel=OTHER_CHANNEL,
    ) as box:
        await dispatched(box)
        await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
        await box.wait_for_thread("*Relay auto-rollback* finished.")

        thread = "\n".join(box.thread())
        assert "gate *ROLLBACK*: crash rate" in thread
        assert "deployed (Hosted relay)" not in thread
        assert "Approved *5% canary*" not in thread
        # The copy to the failure channel is a post of its own, a moment after the thread's.
        await box.slack.wait_for(
            lambda: any(
                "*Relay auto-rollback* finished." in m.rendered
                for m in box.slack.messages(OTHER_CHANNEL)
            )
        )
        copies = [m.rendered for m in box.slack.messages(OTHER_CHANNEL)]
        assert any("Rollout `v1.4.2`" in c and "gate *ROLLBACK*: crash rate" in c for c in copies)
        assert any("*Relay auto-rollback* finished." in c for c in copies)
        assert not any("deployed" in c for c in copies)
        # A link to the thread, the channel named beside it (Slack's link takes no mention).
        assert all(f"|the thread> in <#{RELEASE_CHANNEL}>):" in c for c in copies), copies


async def test_deployment_events_of_a_followed_run_are_told_at_level_all(
    observing: tuple[Sandbox, GitHubHook],
) -> None:
    box, hook = observing
    rollout = await box.rollout()
    run_url = f"{box.github.html_url}/scriptum/scriptum/actions/runs/{rollout.run_id}"
    repository = {"id": 1, "full_name": "scriptum/scriptum", "name": "scriptum"}
    deployment = {
        "id": 2100000099,
        "environment": "relay-canary-5",
        "ref": "main",
        "task": "deploy",
    }
    created = await hook.post(
        "deployment",
        json.dumps(
            {
                "action": "created",
                "deployment": deployment,
                "workflow_run": {"id": rollout.run_id, "html_url": run_url},
                "repository": repository,
                "sender": {"login": "release-bot"},
            }
        ).encode(),
    )
    # Older deliveries carry no workflow_run: the status's URLs name the run.
    status = await hook.post(
        "deployment_status",
        json.dumps(
            {
                "action": "created",
                "deployment_status": {
                    "state": "success",
                    "environment": "relay-canary-5",
                    "target_url": f"{run_url}/job/40001000002",
                    "log_url": f"{run_url}/job/40001000002",
                },
                "deployment": deployment,
                "workflow_run": None,
                "repository": repository,
                "sender": {"login": "release-bot"},
            }
        ).encode(),
    )
    await hook.settled()

    assert [
        (created.status, created.answer["result"]),
        (status.status, status.answer["result"]),
    ] == [
        (202, "followed"),
        (202, "followed"),
    ]
    thread = box.thread()
    assert "GitHub: deployment to `relay-canary-5` created." in thread
    assert "GitHub: deployment to `relay-canary-5` is `success`." in thread


@pytest.mark.database_matters
async def test_a_delivery_a_database_blip_interrupts_is_taken_in_once_on_a_fresh_try(
    observing: tuple[Sandbox, GitHubHook],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The intake's database connection is terminated mid-way (as pg_terminate_backend does):
    the delivery is taken in on a second try, answered 2xx, logged as one WARNING line."""
    box, hook = observing
    webhooks = box.services.webhooks
    take = webhooks.take
    blips = [OperationalError("INSERT", {}, ConnectionResetError("connection was closed"))]

    async def interrupted_once(**delivery: Any) -> Intake:
        if blips:
            raise blips.pop()
        return await take(**delivery)

    monkeypatch.setattr(webhooks, "take", interrupted_once)
    replay = hook.followed()[-1]
    answer = await hook.post(replay.event, hook.unseen(replay), delivery_id="after-a-blip")
    await hook.settled()

    assert (answer.status, answer.answer["result"]) == (202, "followed")
    lines = [r for r in caplog.records if "after-a-blip" in r.getMessage()]
    assert [r.levelname for r in lines if r.levelno > logging.INFO] == ["WARNING"]
    assert all(r.exc_info is None for r in lines)
