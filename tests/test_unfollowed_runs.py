"""Runs the bot did not start, end to end: a run of the Deployment Strategy workflow started on
github.com (the simulator's own run, not the bot's dispatch) reaches environments on the App's
rule; the bot posts one card for it in the release channel, and an approver adopts it (a
rollout gated to the end) or rejects it, or the default answers it after
UNFOLLOWED_RUN_TIMEOUT. A story on SQLite (the restart on both;
tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from github import Auth, Github
from sandbox_views import both_held, dispatched, finish, github_until
from sqlalchemy.exc import OperationalError
from test_claim_given_back import the_second_waits
from test_cli import full_env
from test_freeze_sandbox import typed_reason
from test_protection_rules import answers, app_box, app_replicas, box
from test_stop_second_person import SECOND

from bot.adapters.slack.actions import RunValue
from bot.adapters.slack.control_views import REASON_BLOCK
from bot.adapters.slack.notifier import CARD_EVENT, RUN_EVENT
from bot.config import ConfigError, Settings, load_settings
from bot.domain.controls import CardRef, Control, effect_key
from bot.domain.errors import GitHubError
from bot.domain.rollout import Phase, TrackState
from bot.domain.unfollowed_runs import RunFate, UnfollowedRun
from bot.services.records import BOT, ClaimState
from sandbox.config import BYSTANDER, RELEASE_CHANNEL, RELEASE_MANAGER, REPOSITORY
from sandbox.github_runs import commit_sha
from sandbox.harness import Sandbox, fast_plan
from sandbox.harness_slack import button
from sandbox.idle import bots_database
from sandbox.slack_records import ChannelMessage
from storage.claims import ClaimStore
from storage.protection_rules import ProtectionRuleStore

__all__ = ["app_replicas", "box"]  # the fixtures this module's tests use

pytestmark = pytest.mark.story


def test_the_settings_default_to_reject_after_30_minutes_and_refuse_other_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in full_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    loaded = load_settings(Settings, env_file=None)
    assert (loaded.unfollowed_run_timeout, loaded.unfollowed_run_default) == (1800, "reject")

    monkeypatch.setenv("UNFOLLOWED_RUN_DEFAULT", "maybe")
    monkeypatch.setenv("UNFOLLOWED_RUN_TIMEOUT", "5")
    with pytest.raises(ConfigError) as refused:
        load_settings(Settings, env_file=None)
    said = " ".join(refused.value.problems)
    assert "UNFOLLOWED_RUN_DEFAULT" in said and "UNFOLLOWED_RUN_TIMEOUT" in said


def run_cards(box: Sandbox) -> list[ChannelMessage]:
    return [
        m
        for m in box.slack.messages(RELEASE_CHANNEL)
        if (m.metadata or {}).get("event_type") == RUN_EVENT
    ]


def first_stages(box: Sandbox) -> list[tuple[str, str]]:
    """The answers to the run's first requests (each track's first stage), sorted."""
    return sorted(a for a in answers(box) if a[0] in {"relay-canary-5", "desktop-internal"})


TAG = "v2.0.0"
"""The release tag the runs started on github.com run on (a tag is their ref)."""


async def started_on_github(box: Sandbox, ref: str = TAG) -> tuple[int, ChannelMessage]:
    """A run dispatched on github.com by @octocat on `ref` (the tag `TAG`, or a branch), and
    its card once posted."""
    if ref == TAG:
        box.github.push_tag(ref)
    box.github.refs.add(ref)
    run_id = box.github.create_foreign_run(actor="octocat", branch=ref)
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    (card,) = run_cards(box)
    return run_id, card


def rollout_cards(box: Sandbox) -> list[ChannelMessage]:
    """The preflight and rollout cards in the release channel."""
    return [
        m
        for m in box.slack.messages(RELEASE_CHANNEL)
        if (m.metadata or {}).get("event_type") == CARD_EVENT
    ]


def adopt_dialog(card: ChannelMessage) -> str:
    """The text of the confirm dialog Slack shows before Adopt acts."""
    (adopt,) = [
        element
        for block in card.blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == "adopt_run"
    ]
    return str(adopt["confirm"]["text"]["text"])


async def test_a_run_started_on_github_is_adopted_and_gated_to_the_end(box: Sandbox) -> None:
    run_id, card = await started_on_github(box)
    assert f"Run {run_id} of Deployment Strategy, dispatched by @octocat on GitHub" in card.text
    assert answers(box) == []  # not approved silently
    # The release (GitHub does not show the run's inputs) and the feature flags: the adopter
    # confirms them in the dialog (no --flags-ready); the card says the release is not known.
    assert f"you confirm that run {run_id} deploys {TAG} (check its inputs" in adopt_dialog(card)
    assert "and that the release's feature flags are ready" in adopt_dialog(card)
    assert "The release it deploys (its inputs' `relay_image_tag`) is not known" in card.rendered

    assert await box.click("adopt_run", message=card) is None

    rollout = await box.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert (rollout.run_id, rollout.tag) == (run_id, TAG)
    flags = rollout.preflight.flags
    assert (flags.confirmed_by, flags.detail) == (RELEASE_MANAGER, f"by adopting run {run_id}")
    for _ in range(2):
        await both_held(box)
        assert "Promoted" in await box.command("promote")
    ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)
    assert {t.state for t in ended.tracks} == {TrackState.COMPLETED}
    assert answers(box, "relay") == [
        ("relay-canary-5", "approved"),
        ("relay-rollout-50", "approved"),
        ("relay-rollout-100", "approved"),
    ]
    (card,) = run_cards(box)
    assert "Adopted by" in card.rendered and rollout.id in card.rendered
    trail = await box.audit.list_for_rollout(rollout.id)
    assert ("click:adopt", "ok") in {(e.action, e.result) for e in trail}


async def test_a_run_started_on_github_is_rejected_and_its_failure_jobs_run(
    box: Sandbox,
) -> None:
    run_id, card = await started_on_github(box)

    assert await box.click("reject_run", message=card) is None

    await box.slack.wait_for(lambda: "Rejected by" in run_cards(box)[0].rendered, timeout=30)
    first = box.github.engine.rule_reviews[0]
    assert first.environments[0] in {"relay-canary-5", "desktop-internal"}
    assert (
        first.comment
        == f"rollout-bot: rejected by Slack user {RELEASE_MANAGER}; no rollout follows this run"
    )
    # The `if: failure()` jobs start, as GitHub runs them, and are rejected as the run was.
    kill_switch = ("desktop-kill-switch", "rejected")
    run = box.github.run(run_id)
    await github_until(box, lambda: run.status == "completed")
    assert run.conclusion == "failure"
    assert sorted(answers(box)) == [
        ("desktop-internal", "rejected"),
        kill_switch,
        ("relay-canary-5", "rejected"),
        ("relay-rollback", "rejected"),
    ]
    kill = next(r for r in box.github.engine.rule_reviews if r.environments == (kill_switch[0],))
    assert kill.comment == f"rollout-bot: run {run_id} was rejected; so is the rest of it"
    assert (await box.services.rollouts.active()) == []
    assert len(run_cards(box)) == 1


@pytest.mark.database_matters
async def test_a_request_sent_again_under_a_new_delivery_id_posts_no_card_and_reopens_nothing(
    box: Sandbox,
) -> None:
    """`X-GitHub-Delivery` is outside the signature, and the repository's admins see past
    deliveries: a request's signed body sent again under a new id after the run was rejected
    is the same deployment's request, taken in before. It reopens no request, asks GitHub
    nothing, and the run keeps its one card."""
    run_id, card = await started_on_github(box)
    assert await box.click("reject_run", message=card) is None
    run = box.github.run(run_id)
    await github_until(box, lambda: run.status == "completed")
    await box.services.webhooks.settled()
    rules = ProtectionRuleStore(bots_database(box).sessions)
    reviews, audited = len(box.github.engine.rule_reviews), len(await box.audit.list_for_actor(BOT))
    hook = box.github.app_hook

    again = [await hook.replay(d.guid) for d in list(hook.deliveries) if d.status_code == 202]
    await box.services.webhooks.settled()

    assert again and {d.result for d in again} == {"duplicate"}
    assert await rules.open_for_run(run_id) == []
    assert len(box.github.engine.rule_reviews) == reviews
    assert len(await box.audit.list_for_actor(BOT)) == audited
    (card,) = run_cards(box)
    assert "Rejected by" in card.rendered


@pytest.mark.database_matters
async def test_nobody_answers_and_the_default_rejects_after_the_time_limit(
    box: Sandbox,
) -> None:
    await started_on_github(box)
    await box.stop_bot()  # a restart while the card waits loses nothing
    await box.start_bot()

    await box.pass_time(timedelta(seconds=1790))
    assert answers(box) == []  # not before its time
    await box.pass_time(timedelta(seconds=15))

    await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
    assert first_stages(box) == [
        ("desktop-internal", "rejected"),
        ("relay-canary-5", "rejected"),
    ]
    assert "UNFOLLOWED_RUN_DEFAULT=reject" in box.github.engine.rule_reviews[0].comment
    assert len(run_cards(box)) == 1


async def test_adopt_is_refused_while_the_preflight_blocks(box: Sandbox) -> None:
    box.github.files["main"]["crates/relay/src/db/migrations/0002_drop.sql"] = (
        "ALTER TABLE documents\n  DROP COLUMN title;\n"
    )
    _, card = await started_on_github(box)

    refused = await box.click("adopt_run", message=card)

    assert refused is not None and "was not adopted: its preflight blocks" in refused
    assert "0002_drop.sql" in refused and "Nothing was changed" in refused
    assert answers(box) == []
    # Nothing is left behind: no rollout holds the tracks, no preflight card was posted.
    assert await box.services.rollouts.history() == []
    assert rollout_cards(box) == []
    assert "Preflight" in await box.command(f"start {TAG} --flags-ready")  # the tracks are free
    await box.slack.wait_for(lambda: len(rollout_cards(box)) == 1, timeout=30)


async def test_a_run_on_a_branch_is_not_adopted_as_a_release(box: Sandbox) -> None:
    """`main` is where the workflow runs, not a release tag: the card offers Reject only and
    says what to do instead, and an Adopt sent all the same is refused."""
    run_id, card = await started_on_github(box, ref="main")
    assert "`main` is not a release tag, so this run cannot be adopted: Reject it" in card.rendered
    assert button(card.blocks, "adopt_run") is None

    refused = await box.click("adopt_run", message=card, value=RunValue(run_id=run_id).encode())

    assert refused is not None
    assert f"Run {run_id} runs on `main`, which is not a release tag" in refused
    # What an error quotes reads as written in Slack: `<tag>` escaped.
    assert "Reject it, or start the release's tag with `/rollout start &lt;tag&gt;`" in refused
    assert answers(box) == [] and await box.services.rollouts.history() == []


async def test_an_approve_default_rejects_while_deploys_are_frozen(
    tmp_path: Path, database_url: str
) -> None:
    """UNFOLLOWED_RUN_DEFAULT=approve never approves through a freeze: nobody saw the run,
    and deploys are frozen, so the default rejects it."""
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    async with app_box(tmp_path, database_url, extra_env=env) as box:
        await started_on_github(box)
        assert "froze deploys" in await box.command("freeze 2h INC-123 investigation")

        await box.pass_time(timedelta(seconds=1805))

        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert ("relay-canary-5", "rejected") in first_stages(box)
        assert all(state == "rejected" for _, state in first_stages(box))


async def test_an_approve_default_never_approves_an_environment_the_plan_does_not_name(
    tmp_path: Path, database_url: str
) -> None:
    """A plan without the desktop track, and a workflow whose desktop job still deploys to
    `desktop-internal` behind the App's rule: the run's card waits there. The approve default
    approved it, a deployment no gate of the plan watches; it rejects it now."""
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml"))
    del plan["tracks"]["desktop"]
    for name, given in plan["inputs"].items():
        if given.get("track") == "desktop":
            plan["inputs"][name] = {"from": "literal", "value": "0.001"}
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    async with app_box(
        tmp_path,
        database_url,
        ruled={"desktop-internal"},
        extra_env=env,
        plan_yaml=yaml.safe_dump(plan),
    ) as box:
        _, card = await started_on_github(box)
        assert "waits at `desktop-internal`" in card.rendered

        await box.pass_time(timedelta(seconds=1805))

        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert answers(box) == [("desktop-internal", "rejected")]
        assert "Rejected by default" in run_cards(box)[0].rendered
        why = "which rejects it since the plan does not name the environment desktop-internal"
        assert why in box.github.engine.rule_reviews[0].comment


async def test_an_approve_default_rejects_a_run_that_is_not_on_a_release_tag(
    tmp_path: Path, database_url: str
) -> None:
    """Someone with write access dispatches the workflow on github.com from a branch carrying
    a modified workflow: Adopt refuses the run (no release tag), and the approve default
    approved its first stage. It rejects it now, as Adopt would, and says why."""
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    async with app_box(tmp_path, database_url, extra_env=env) as box:
        _, card = await started_on_github(box, ref="patch/deploy-workflow")
        assert ", the default rejects it." in card.rendered  # what the card says comes true

        await box.pass_time(timedelta(seconds=1805))

        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert ("relay-canary-5", "rejected") in first_stages(box)
        assert all(state == "rejected" for _, state in first_stages(box))
        why = "since `patch/deploy-workflow` is not a release tag"
        assert why in box.github.engine.rule_reviews[0].comment
        assert "UNFOLLOWED_RUN_DEFAULT=approve" in box.github.engine.rule_reviews[0].comment
        assert why in run_cards(box)[0].rendered


async def test_an_approve_default_rejects_a_branch_named_as_a_release_tag(
    tmp_path: Path, database_url: str
) -> None:
    """A branch may bear a release tag's name (`v9.9.9`), and GitHub reports a run on it by
    that name alone. The approve default approved such a run, with whatever workflow the branch
    carries; GitHub knows no tag `v9.9.9`, so the bot rejects it, and Adopt is not offered."""
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    async with app_box(tmp_path, database_url, extra_env=env) as box:
        box.github.history.every_tag = False  # GitHub knows no tag at all
        run_id, card = await started_on_github(box, ref="v9.9.9")
        assert "`v9.9.9` is not a release tag, so this run cannot be adopted" in card.rendered
        assert button(card.blocks, "adopt_run") is None
        refused = await box.click("adopt_run", message=card, value=RunValue(run_id=run_id).encode())
        assert refused is not None and "which is not a release tag" in refused

        await box.pass_time(timedelta(seconds=1805))

        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert first_stages(box) and all(state == "rejected" for _, state in first_stages(box))
        assert "since `v9.9.9` is not a release tag" in box.github.engine.rule_reviews[0].comment
        assert await box.services.rollouts.history() == []


async def test_a_run_on_a_release_tags_name_but_not_its_commit_is_no_release(
    tmp_path: Path, database_url: str
) -> None:
    """The release tag exists, at the release's commit; a run reports the same name from
    another commit (a branch of that name, or a fork's pull request from one: its workflow
    may be changed). GitHub's word on the tag's commit tells it: no Adopt, and the approve
    default rejects it, saying why."""
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    async with app_box(tmp_path, database_url, extra_env=env) as box:
        box.github.push_tag(TAG, at=commit_sha("the release's commit"))
        run_id = box.github.create_foreign_run(actor="mallory", branch=TAG, event="pull_request")
        await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
        (card,) = run_cards(box)
        off = f"`{TAG}` is a release tag, but the run is not at the tag's commit"
        assert off in card.rendered and ", the default rejects it." in card.rendered
        assert button(card.blocks, "adopt_run") is None
        refused = await box.click("adopt_run", message=card, value=RunValue(run_id=run_id).encode())
        assert (
            refused is not None
            and f"Run {run_id} runs on `{TAG}`, which is a release tag" in refused
        )

        await box.pass_time(timedelta(seconds=1805))

        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert first_stages(box) and all(state == "rejected" for _, state in first_stages(box))
        assert off in box.github.engine.rule_reviews[0].comment
        assert await box.services.rollouts.history() == []


async def test_a_pull_requests_run_at_the_tags_commit_is_no_release(
    tmp_path: Path, database_url: str
) -> None:
    """A fork may name its branch `v2.0.0` and point it at the tag's very commit: GitHub
    reports its pull request's run with that name and that `head_sha`, but the run is of the
    pull request's merge commit (base and head merged, with that merge's workflow), which is
    no release. The run's event tells it: no Adopt, and the approve default rejects it."""
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    async with app_box(tmp_path, database_url, extra_env=env) as box:
        box.github.push_tag(TAG)  # at the commit a run named `TAG` reports
        run_id = box.github.create_foreign_run(actor="mallory", branch=TAG, event="pull_request")
        await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
        (card,) = run_cards(box)
        off = f"`{TAG}` is a release tag, but the run is not at the tag's commit"
        assert off in card.rendered and button(card.blocks, "adopt_run") is None
        refused = await box.click("adopt_run", message=card, value=RunValue(run_id=run_id).encode())
        assert refused is not None and "which is a release tag" in refused

        await box.pass_time(timedelta(seconds=1805))

        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert first_stages(box) and all(state == "rejected" for _, state in first_stages(box))
        assert await box.services.rollouts.history() == []


async def test_a_tag_moved_since_the_card_is_looked_at_before_adopting(box: Sandbox) -> None:
    """The card read the tag at the run's commit; the tag was then moved (force-pushed: that
    commit was not the release after all). Adopt looks again: the run deploys the old commit,
    so it is refused, saying why, and nothing is created."""
    run_id, card = await started_on_github(box)
    assert button(card.blocks, "adopt_run") is not None
    box.github.push_tag(TAG, at=commit_sha("the fixed release"))

    refused = await box.click("adopt_run", message=card, value=RunValue(run_id=run_id).encode())

    assert refused is not None and f"`{TAG}` was moved to another commit" in refused
    assert await box.services.rollouts.history() == []
    assert (await box.services.rollouts.active()) == []


async def test_an_approve_default_rejects_a_run_whose_tag_moved_since_the_card(
    tmp_path: Path, database_url: str
) -> None:
    """The tag moved after the card was posted: the approve default looks again, and rejects
    the run at the old commit instead of approving it as the release."""
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    async with app_box(tmp_path, database_url, extra_env=env) as box:
        await started_on_github(box)
        box.github.push_tag(TAG, at=commit_sha("the fixed release"))

        await box.pass_time(timedelta(seconds=1805))

        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert first_stages(box) and all(state == "rejected" for _, state in first_stages(box))
        comment = box.github.engine.rule_reviews[0].comment
        assert f"since `{TAG}` was moved to another commit" in comment


async def test_an_approve_default_waits_while_github_does_not_say_where_the_tag_is(
    tmp_path: Path, database_url: str
) -> None:
    """The approve default reads the tag again before approving: while GitHub fails that read,
    nothing is answered (the default is tried again), and it approves once GitHub says the
    run is still at the tag's commit."""
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    async with app_box(tmp_path, database_url, extra_env=env) as box:
        run_id, _ = await started_on_github(box)
        box.github.fail_next("GET", "/repos/*/git/ref/tags/*", 502, times=10_000)

        await box.pass_time(timedelta(seconds=1805))
        key = f"unfollowed_run:{run_id}"
        await box.wait_for_timer(key, lambda t: t.attempts >= 1)  # the default failed
        await box.pass_time(timedelta(seconds=60))
        await box.wait_for_timer(key, lambda t: t.attempts >= 2)  # and was tried again
        await box.pass_time(timedelta(seconds=60))
        assert box.github.engine.rule_reviews == []
        assert "by default" not in run_cards(box)[0].rendered
        box.github.clear_failures()
        await box.pass_time(timedelta(seconds=120))
        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert ("desktop-internal", "approved") in first_stages(box)


async def test_a_run_on_an_annotated_release_tag_is_the_release(box: Sandbox) -> None:
    """A release tag made with `git tag -a` names a tag object, which names the commit: the
    bot follows it there, and a run at that commit is the release, adopted as any other."""
    box.github.push_tag(TAG, annotated=True)
    run_id = box.github.create_foreign_run(actor="octocat", branch=TAG)
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    (card,) = run_cards(box)
    assert button(card.blocks, "adopt_run") is not None

    assert await box.click("adopt_run", message=card) is None

    rollout = await box.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert (rollout.run_id, rollout.tag) == (run_id, TAG)


async def test_a_card_waits_for_githubs_word_on_the_tag(box: Sandbox) -> None:
    """While GitHub fails to say where the tag is, the card is neither posted as the release
    nor as no release: each poll asks again, and the card comes once GitHub answers."""
    box.github.push_tag(TAG)
    box.github.fail_next("GET", "/repos/*/git/ref/tags/*", 502, times=10_000)
    box.github.create_foreign_run(actor="octocat", branch=TAG)
    await box.github.settle()
    await box.services.webhooks.settled()
    for _ in range(2):
        await box.pass_time(timedelta(seconds=60))
    reads = [r.status for r in box.github.requests if "/git/ref/tags/" in r.path]
    assert len(reads) >= 3 and set(reads) == {502}  # the two requests' and a poll's at least
    assert run_cards(box) == []

    box.github.clear_failures()
    await box.pass_time(timedelta(seconds=60))

    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    (card,) = run_cards(box)
    assert button(card.blocks, "adopt_run") is not None


def dispatch_by_two(tmp_path: Path) -> str:
    """The accelerated plan, with the two-person rule on dispatch."""
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml"))
    plan["two_person"] = ["dispatch"]
    return yaml.safe_dump(plan, sort_keys=False)


async def test_adopt_is_refused_when_the_two_person_rule_covers_dispatch(
    tmp_path: Path, database_url: str
) -> None:
    """An adopted run is approved at once by its adopter, who may have started it on GitHub:
    under `two_person: [dispatch]` that would be a dispatch by one person. The card offers
    Reject only, says why and what to do instead, and that the default rejects the run."""
    async with app_box(tmp_path, database_url, plan_yaml=dispatch_by_two(tmp_path)) as box:
        run_id, card = await started_on_github(box)
        assert button(card.blocks, "adopt_run") is None
        assert button(card.blocks, "reject_run") is not None
        assert (
            "The plan's two-person rule covers dispatch, so this run cannot be adopted (whoever "
            "adopts it may be who started it on GitHub): Reject it, and start the release with "
            f"`/rollout start {TAG}` so that another approver dispatches it."
        ) in card.rendered
        assert ", the default rejects it." in card.rendered

        # A click sent all the same (a card drawn before the plan took the rule) is refused.
        refused = await box.click("adopt_run", message=card, value=RunValue(run_id=run_id).encode())

        assert refused is not None and "two-person rule needs a second approver" in refused
        assert "nothing was changed" in refused and "/rollout start &lt;tag&gt;" in refused
        assert answers(box) == [] and await box.services.rollouts.history() == []
        trail = await box.audit.list_for_actor(RELEASE_MANAGER)
        assert ("click:adopt", "refused") in {(e.action, e.result) for e in trail}
        assert await box.click("reject_run", message=card) is None
        await box.slack.wait_for(lambda: "Rejected by" in run_cards(box)[0].rendered, timeout=30)


async def test_an_approve_default_rejects_when_the_two_person_rule_covers_dispatch(
    tmp_path: Path, database_url: str
) -> None:
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    plan_yaml = dispatch_by_two(tmp_path)
    async with app_box(tmp_path, database_url, extra_env=env, plan_yaml=plan_yaml) as box:
        _, card = await started_on_github(box)
        assert ", the default rejects it." in card.rendered  # what the card says comes true

        await box.pass_time(timedelta(seconds=1805))

        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert ("relay-canary-5", "rejected") in first_stages(box)
        assert all(state == "rejected" for _, state in first_stages(box))


async def test_adopt_is_refused_to_a_non_approver_and_while_frozen(box: Sandbox) -> None:
    _, card = await started_on_github(box)

    refused = await box.click("adopt_run", message=card, user=BYSTANDER)
    assert refused is not None and "Only release approvers may adopt a run" in refused

    assert "froze deploys" in await box.command("freeze 2h INC-123 investigation")
    refused = await box.click("adopt_run", message=card)
    assert refused is not None and "INC-123 investigation" in refused

    assert answers(box) == []
    assert (await box.services.rollouts.active()) == []


async def test_an_approver_overrides_the_freeze_and_adopts_the_run(box: Sandbox) -> None:
    """As under a refused Dispatch: Override freeze…, a reason, and the run is adopted; the
    override is said in the rollout's thread and kept in the audit trail."""
    run_id, card = await started_on_github(box)
    assert "froze deploys" in await box.command("freeze 2h INC-123 investigation")
    refused = await box.click("adopt_run", message=card)
    assert refused is not None and "click *Override freeze…* below with a reason" in refused
    (answer,) = [e for e in box.slack.ephemerals(user=RELEASE_MANAGER) if "[Override" in e.rendered]
    (override,) = [
        element
        for block in answer.blocks
        if block.get("type") == "actions"
        for element in block["elements"]
        if element["action_id"] == "override_adopt"
    ]
    before = len(box.slack.calls_to("views.open"))
    await box.click("override_adopt", value=str(override["value"]), message=card)
    opened = await box.slack.wait_for_call("views.open", count=before + 1)
    view_id = str(opened[-1].response["view"]["id"])

    empty = await box.submit_view(view_id, typed_reason("   "))
    assert empty == {
        "response_action": "errors",
        "errors": {REASON_BLOCK: "An override needs a reason."},
    }
    assert await box.submit_view(view_id, typed_reason("hotfix for INC-9")) == {}

    await box.slack.wait_for(lambda: "Adopted by" in run_cards(box)[0].rendered, timeout=30)
    rollout = await box.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert rollout.run_id == run_id
    overridden = f"overrode the freeze for `{TAG}`: hotfix for INC-9"
    await box.slack.wait_for(
        lambda: any(
            overridden in reply.rendered
            for m in box.slack.messages(RELEASE_CHANNEL)
            for reply in m.replies
        ),
        timeout=30,
    )

    async def said() -> list[tuple[str, str, object]]:
        events = await box.audit.list_for_actor(RELEASE_MANAGER)
        return [(e.action, e.result, (e.detail or {}).get("override_freeze")) for e in events]

    # The form's event is written as its request ends, a moment after the rollout ran.
    async with asyncio.timeout(10):
        while ("form:adopt", "ok", "hotfix for INC-9") not in await said():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_two_replicas_post_one_card_and_give_one_answer(
    app_replicas: tuple[Sandbox, str],
) -> None:
    box, second = app_replicas
    _, card = await started_on_github(box)
    box.github.app_hook.url = f"{second}/github/webhook"  # every request, to the other one
    first = list(box.github.app_hook.deliveries)
    again = [await box.github.app_hook.redeliver(d.guid) for d in first]
    assert {d.result for d in again} == {"duplicate"}

    said = await asyncio.gather(
        box.click("reject_run", message=card),
        box.click("reject_run", message=card, replica=second),
    )

    await box.slack.wait_for(lambda: "Rejected by" in run_cards(box)[0].rendered, timeout=30)
    assert len(run_cards(box)) == 1
    assert first_stages(box) == [
        ("desktop-internal", "rejected"),
        ("relay-canary-5", "rejected"),
    ]
    assert len([s for s in said if s is not None and "already" in s.lower()]) <= 1


async def test_the_bots_own_runs_get_no_card(box: Sandbox) -> None:
    """Its requests may come before the bot has saved the run its dispatch started: kept, then
    answered by the rollout, never offered for adoption."""
    await dispatched(box)
    await both_held(box)

    assert run_cards(box) == []


def run_reads(box: Sandbox, run_id: int) -> list[int]:
    """GitHub's answers to the bot's reads of the run itself, in order."""
    path = f"/actions/runs/{run_id}"
    return [r.status for r in box.github.requests if r.method == "GET" and r.path.endswith(path)]


async def kept_without_a_card(box: Sandbox, *, failed_reads: int = 2) -> int:
    """A run started on github.com whose requests were kept, its card never drawn: GitHub
    answered 404 to the webhook's two reads of it, and to `failed_reads` reads in all (the
    scheduler's sweep reads it too, in real time: a read it answers lets the card come)."""
    box.github.push_tag(TAG)
    run_id = box.github.create_foreign_run(actor="octocat", branch=TAG)
    box.github.fail_next("GET", f"/repos/*/actions/runs/{run_id}", 404, times=failed_reads)
    await box.github.settle()
    await box.services.webhooks.settled()
    assert run_cards(box) == []
    return run_id


async def test_a_card_lost_before_it_was_posted_is_posted_by_the_next_poll(box: Sandbox) -> None:
    """The request was kept, but its card never drawn (GitHub failed to tell the run, as a
    crash between the two would): the scheduler's next poll hands it over again."""
    run_id = await kept_without_a_card(box)

    await box.pass_time(timedelta(seconds=1))

    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    (card,) = run_cards(box)
    assert f"Run {run_id} of Deployment Strategy" in card.text
    await box.pass_time(timedelta(seconds=1))
    assert len(run_cards(box)) == 1


async def test_a_kept_request_of_a_run_that_has_completed_since_gets_no_card(
    box: Sandbox,
) -> None:
    """The requests were kept but their card never drawn (GitHub failed to tell the run), and
    someone cancelled the run meanwhile: the next poll's sweep reads it completed, so nothing of
    it waits for the bot. No card is posted, its requests are closed, and later polls do not
    read the run again."""
    run_id = await kept_without_a_card(box, failed_reads=1000)
    box.github.engine.cancel(run_id)
    await box.github.settle()
    rules = ProtectionRuleStore(bots_database(box).sessions)
    assert await rules.open_for_run(run_id) != []
    box.github.clear_failures()  # GitHub tells the run again: completed

    for _ in range(10):  # the next poll's sweep closes them (real time moves under load)
        await box.pass_time(timedelta(seconds=60))
        if not await rules.open_for_run(run_id):
            break
    await box.pass_time(timedelta(seconds=60))  # the poll that closed them has ended
    read = len([r for r in box.github.requests if f"/actions/runs/{run_id}" in r.path])
    for _ in range(3):
        await box.pass_time(timedelta(seconds=60))

    assert run_cards(box) == []
    assert await rules.open_for_run(run_id) == []
    assert len([r for r in box.github.requests if f"/actions/runs/{run_id}" in r.path]) == read


async def test_a_kept_request_of_a_deleted_run_is_closed_and_the_run_never_read_again(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The run was deleted after its requests were kept: GitHub answers 404 for it, while the
    repository reads. The sweep read it at every poll until retention pruned the requests (a
    request of the rate limit each); once it has answered 404 for GITHUB_UNREADABLE_SECONDS
    (300) since its request, its requests are closed as gone, the log says so once, and later
    polls do not read it."""
    run_id = await kept_without_a_card(box, failed_reads=1000)  # deleted
    rules = ProtectionRuleStore(bots_database(box).sessions)
    for _ in range(3):  # a run GitHub has just told of may not be served yet: read again
        await box.pass_time(timedelta(seconds=60))
    assert await rules.open_for_run(run_id) != []

    for _ in range(10):  # the poll of minute 5 or the next one closes them (real time moves)
        if not await rules.open_for_run(run_id):
            break
        await box.pass_time(timedelta(seconds=60))
    read = len(run_reads(box, run_id))
    for _ in range(4):
        await box.pass_time(timedelta(seconds=60))

    assert len(run_reads(box, run_id)) == read
    assert set(run_reads(box, run_id)) == {404}
    assert await rules.open_for_run(run_id) == []
    assert {r.answer for r in await rules.for_run(run_id)} == {"gone"}
    assert run_cards(box) == []
    said = [r.getMessage() for r in caplog.records if f"run {run_id} is gone" in r.getMessage()]
    assert len(said) == 1, said
    assert "while its repository reads" in said[0]


async def test_a_run_out_of_the_apps_reach_keeps_its_requests_and_gets_its_card_back(
    box: Sandbox,
) -> None:
    """GitHub answers 404 alike for a deleted run and for a repository the App's installation
    is no longer given (a person chose other repositories): the run is not taken as deleted
    then, however long it lasts, and once the repository is given back its card is posted."""
    run_id = await kept_without_a_card(box, failed_reads=1000)
    app = box.github.app
    assert app is not None
    app.repositories = {"scriptum/another"}  # the installation no longer covers the repository
    box.github.clear_failures()  # GitHub's 404 is the installation's from here on
    for _ in range(8):
        await box.pass_time(timedelta(seconds=60))
    rules = ProtectionRuleStore(bots_database(box).sessions)
    assert await rules.open_for_run(run_id) != []
    assert run_reads(box, run_id)[-1] == 404
    assert run_cards(box) == []

    app.repositories = None
    await box.pass_time(timedelta(seconds=60))
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    (card,) = run_cards(box)
    assert f"Run {run_id} of Deployment Strategy" in card.text


async def test_a_repository_out_of_reach_is_read_once_a_poll_however_many_runs_wait(
    box: Sandbox,
) -> None:
    """Each kept request older than GITHUB_UNREADABLE_SECONDS whose run answered 404 had the
    repository read too, to tell a deleted run from one out of reach: two requests of the rate
    limit a request, each poll. Once the repository does not read, a poll reads it no more."""
    runs = [await kept_without_a_card(box, failed_reads=1000) for _ in range(3)]
    app = box.github.app
    assert app is not None
    app.repositories = {"scriptum/another"}  # the installation no longer covers the repository
    box.github.clear_failures()
    # Counted from here: the first sweep past GITHUB_UNREADABLE_SECONDS (300) may come in the
    # sixth minute below, and after its read of the repository a poll reads it no more.
    since = len(box.github.requests)
    for _ in range(6):
        await box.pass_time(timedelta(seconds=60))
    run_paths = {f"/repos/{REPOSITORY}/actions/runs/{run_id}" for run_id in runs}

    def reads() -> tuple[list[int], list[int]]:
        later = box.github.requests[since:]
        run_reads = [r.status for r in later if r.method == "GET" and r.path in run_paths]
        return run_reads, [r.status for r in later if r.path == f"/repos/{REPOSITORY}"]

    for _ in range(20):  # two sweeps at least (the poller's pace is its own)
        if len(reads()[0]) >= 2 * len(runs):
            break
        await box.pass_time(timedelta(seconds=60))
    run_reads, repository_reads = reads()
    assert len(run_reads) >= 2 * len(runs) and set(run_reads) == {404}
    assert set(repository_reads) == {404}
    # Once a sweep (the window may cut one in two), not once a run.
    assert len(repository_reads) <= len(run_reads) // len(runs) + 1, (run_reads, repository_reads)


def has_buttons(card: ChannelMessage) -> bool:
    return any(block["type"] == "actions" for block in card.blocks)


async def test_a_default_that_found_nothing_waiting_leaves_the_runs_later_stages_to_a_person(
    box: Sandbox,
) -> None:
    """Nothing waited when the default came (the requests were gone): it rejected nothing, and
    took the run's one answer, so the card is redrawn without Adopt and Reject (each would be
    refused as done) and says the run's later stages wait on GitHub for a person; those later
    requests are not rejected as if the default had rejected the run."""
    run_id, _ = await started_on_github(box)
    # The card came with the first of the run's two requests (one per track); the other may
    # still be on its way: it is kept before the requests are closed, else the default would
    # find it waiting and rightly reject it (a request after the card: the test below).
    await box.github.settle()
    await box.services.webhooks.settled()
    rules = ProtectionRuleStore(bots_database(box).sessions)
    opened = await rules.open_for_run(run_id)
    assert sorted(r.environment for r in opened) == ["desktop-internal", "relay-canary-5"]
    for request in opened:
        await rules.close(
            run_id=run_id, environment=request.environment, answer="gone", at=box.clock()
        )
    await box.pass_time(timedelta(seconds=1805))
    assert answers(box) == []
    said = "Nothing waited for the bot's answer when the default came"
    await box.slack.wait_for(lambda: said in run_cards(box)[0].rendered, timeout=30)
    (card,) = run_cards(box)
    assert not has_buttons(card)
    assert f"Run {run_id}'s later stages wait on GitHub for a person" in card.rendered
    texts = [str(block.get("text", {}).get("text", "")) for block in card.blocks]
    assert any(f"/actions/runs/{run_id}|its page>" in text for text in texts)

    # Someone answers the canary on GitHub; the run moves on to the next stage.
    box.github.engine.review_rule(
        run_id, environment="relay-canary-5", state="approved", comment="", actor="octocat"
    )
    await box.github.settle()
    await box.services.webhooks.settled()
    await box.pass_time(timedelta(seconds=1))

    assert "relay-rollout-50" in [r.environment for r in await rules.open_for_run(run_id)]
    assert ("relay-rollout-50", "rejected") not in answers(box)


async def test_a_request_that_comes_after_the_card_is_answered_by_the_default(
    box: Sandbox,
) -> None:
    """The run's first request is delivered after the card (GitHub delivers each request on
    its own): it waits with the card, and the default answers it with the other."""
    box.github.app_hook.lose_next()
    run_id, _ = await started_on_github(box)
    (lost,) = box.github.app_hook.failed()
    assert (await box.github.app_hook.redeliver(lost.guid)).result == "kept"
    await box.services.webhooks.settled()
    rules = ProtectionRuleStore(bots_database(box).sessions)
    assert len(await rules.open_for_run(run_id)) == 2
    assert len(run_cards(box)) == 1

    await box.pass_time(timedelta(seconds=1805))
    await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
    assert first_stages(box) == [
        ("desktop-internal", "rejected"),
        ("relay-canary-5", "rejected"),
    ]


async def test_a_card_github_failed_to_tell_is_tried_again_at_each_poll_until_posted(
    box: Sandbox,
) -> None:
    """GitHub failed to tell the run to the webhook's two requests and to the first poll's
    sweep: a run is handed over again at each poll until it has its card."""
    box.github.push_tag(TAG)
    run_id = box.github.create_foreign_run(actor="octocat", branch=TAG)
    box.github.fail_next("GET", f"/repos/*/actions/runs/{run_id}", 404, times=3)
    await box.github.settle()
    await box.services.webhooks.settled()
    for _ in range(5):
        await box.pass_time(timedelta(seconds=60))

    reads = [
        r.status
        for r in box.github.requests
        if r.method == "GET" and r.path.endswith(f"/actions/runs/{run_id}")
    ]
    assert reads[:3] == [404, 404, 404]  # the webhooks' two reads and the first sweep's
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    assert len(run_cards(box)) == 1


async def test_the_default_waits_for_an_answer_being_given_and_comes_if_it_fails(
    box: Sandbox,
) -> None:
    """The default fires while someone holds the run's answer (a slow Adopt): it answers
    nothing and is not spent, but fires again a little later; once that answer failed (its
    claim released), the default answers the run."""
    run_id, _ = await started_on_github(box)
    await box.pass_time(timedelta(seconds=1790))
    claims = ClaimStore(bots_database(box).sessions)  # a claim's lease: 5 minutes
    held = await claims.claim(
        key=f"answer_run:run-{run_id}", action="answer_run", actor=RELEASE_MANAGER, now=box.clock()
    )
    assert held is not None

    await box.pass_time(timedelta(seconds=15))
    timers = box.services.rollouts.effects.timers

    async def last_error() -> str:
        timer = await timers.get(key=f"unfollowed_run:{run_id}")
        assert timer is not None and timer.is_pending
        return timer.last_error or ""

    for _ in range(100):  # it fired, found the answer held, and was released (within 5 s)
        if "BeingDone: Already being done by" in await last_error():
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the default was spent, or still waits, while the run's answer was held")
    assert answers(box) == []

    await claims.release(held)  # the Adopt failed
    await box.pass_time(timedelta(minutes=5))

    await box.slack.wait_for(lambda: "Rejected by default" in run_cards(box)[0].rendered, 30)
    assert ("relay-canary-5", "rejected") in first_stages(box)


async def test_a_default_answer_that_failed_every_attempt_is_left_to_a_person(
    tmp_path: Path, database_url: str
) -> None:
    env = {"TIMER_MAX_ATTEMPTS": "2"}
    async with app_box(tmp_path, database_url, extra_env=env) as box:
        run_id, card = await started_on_github(box)
        rule = f"/repos/*/actions/runs/{run_id}/deployment_protection_rule"
        box.github.fail_next("POST", rule, 404, times=2)  # each attempt fails

        await box.pass_time(timedelta(seconds=1805))
        # The first attempt ends before more time passes: a jump past its lease while it is
        # under way would have it taken over, as if its replica had died.
        await box.wait_for_timer(
            f"unfollowed_run:{run_id}", lambda t: (t.attempts, t.claimed_by) == (1, None)
        )
        await box.pass_time(timedelta(seconds=400))

        said = "The default answer could not be given"
        await box.slack.wait_for(lambda: said in run_cards(box)[0].rendered, timeout=30)
        texts = [str(block.get("text", {}).get("text", "")) for block in card.blocks]
        waits = [text for text in texts if said in text]
        assert f"run {run_id} still waits on GitHub" in waits[0]
        assert f"/actions/runs/{run_id}|its page>" in waits[0]
        assert answers(box) == []

        assert await box.click("reject_run", message=card) is None
        await box.slack.wait_for(lambda: "Rejected by" in run_cards(box)[0].rendered, timeout=30)
        assert ("relay-canary-5", "rejected") in first_stages(box)


def rerun_on_github(box: Sandbox, run_id: int, *, login: str) -> None:
    """`login` re-runs the run on github.com (`POST .../rerun`), through PyGithub."""
    box.github.add_token(f"ghp_{login}", login)
    github = Github(base_url=box.github.api_url, auth=Auth.Token(f"ghp_{login}"), retry=None)
    assert github.get_repo(REPOSITORY).get_workflow_run(run_id).rerun()


@pytest.mark.database_matters
async def test_a_rerun_of_a_run_whose_rollout_ended_gets_one_card_and_is_rejected(
    box: Sandbox,
) -> None:
    """Someone re-runs on github.com the run of a rollout that has ended: its stages ask the
    App's rule again. The release channel is told once (not for each request, nor for a
    redelivery) who re-ran it, where it waits and what to do, and nothing is approved."""
    ended = await finish(box, "v1.4.2")
    assert ended.run_id is not None
    run_id, reviews = ended.run_id, len(box.github.engine.rule_reviews)

    await asyncio.to_thread(rerun_on_github, box, run_id, login="octo-release")
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    await box.services.webhooks.settled()
    hook = box.github.app_hook
    for delivery in [d for d in hook.deliveries if d.status_code == 202][-2:]:
        await hook.redeliver(delivery.guid)
    await box.services.webhooks.settled()

    (card,) = run_cards(box)
    assert (
        f"Run {run_id} of Deployment Strategy, re-run (attempt 2) by @octo-release on GitHub, "
        "waits at `"
    ) in card.text
    assert f"Rollout `{ended.id}` followed it and has ended." in card.text
    assert "/rollout start v1.4.2" in card.rendered
    assert len(box.github.engine.rule_reviews) == reviews  # nothing answered silently

    assert await box.click("reject_run", message=card) is None

    run = box.github.run(run_id)
    await github_until(box, lambda: run.status == "completed")
    assert run.conclusion == "failure"
    # The card is redrawn after the answers (through the outbox): a loaded machine may be later.
    await box.slack.wait_for(lambda: "Rejected by" in run_cards(box)[0].rendered)
    assert {s for _, s in answers(box)[reviews:]} == {"rejected"}


async def test_an_approve_default_rejects_a_rerun_of_a_run_whose_rollout_ended(
    tmp_path: Path, database_url: str
) -> None:
    """UNFOLLOWED_RUN_DEFAULT=approve is for runs started on GitHub that nobody saw; a re-run
    of a rollout's run redeploys a release whose rollout ended (rolled back, maybe): nobody
    answering never approves it, the default rejects it."""
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    async with app_box(tmp_path, database_url, extra_env=env) as box:
        ended = await finish(box, "v1.4.2")
        assert ended.run_id is not None
        reviews = len(box.github.engine.rule_reviews)
        await asyncio.to_thread(rerun_on_github, box, ended.run_id, login="octo-release")
        await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
        assert ", the default rejects it." in run_cards(box)[0].rendered

        await box.pass_time(timedelta(seconds=1805))

        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert {s for _, s in answers(box)[reviews:]} == {"rejected"}


async def test_a_rerun_of_a_run_whose_rollout_ended_is_adopted_by_a_new_rollout(
    box: Sandbox,
) -> None:
    """Adopt on a re-run's card: a new rollout follows the run's new attempt to the end (the
    run's newest rollout is the one that follows it)."""
    ended = await finish(box, "v1.4.2")
    assert ended.run_id is not None
    await asyncio.to_thread(rerun_on_github, box, ended.run_id, login="octo-release")
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    (card,) = run_cards(box)

    assert await box.click("adopt_run", message=card) is None

    adopted = await box.wait_until(lambda r: r.id != ended.id and r.phase is Phase.RUNNING)
    assert (adopted.run_id, adopted.tag) == (ended.run_id, "v1.4.2")
    for _ in range(2):
        await both_held(box)
        assert "Promoted" in await box.command("promote")
    done = await box.wait_until(lambda r: r.id == adopted.id and r.phase is Phase.ENDED)
    assert {t.state for t in done.tracks} == {TrackState.COMPLETED}


async def test_a_run_cancelled_and_re_run_while_its_card_waits_is_adopted_at_its_new_attempt(
    box: Sandbox,
) -> None:
    """A run started on github.com waited for its card's answer; someone cancelled it on
    GitHub and re-ran it (attempt 2), which asked again under the same card. Adopt made a
    rollout of the attempt that first asked: its first look found attempt 2 and ended it at
    once (*re-run on GitHub before the bot saw attempt 1 end*), the card said Adopted, and
    attempt 2 waited at its first stages with nobody to answer it."""
    run_id, card = await started_on_github(box)
    box.github.engine.cancel(run_id)
    box.github.engine.process()
    await asyncio.to_thread(rerun_on_github, box, run_id, login="octo-release")
    await github_until(box, lambda: box.github.run(run_id).status != "completed")
    await box.services.webhooks.settled()

    assert await box.click("adopt_run", message=card) is None

    rollout = await box.wait_until(lambda r: r.run_id == run_id and r.phase is not Phase.PREFLIGHT)
    assert (rollout.phase, rollout.attempt) == (Phase.RUNNING, 2), rollout
    await box.slack.wait_for(
        lambda: (
            {("relay-canary-5", "approved"), ("desktop-internal", "approved")} <= set(answers(box))
        ),
        timeout=30,
    )


async def test_an_adopt_that_waited_for_a_reject_that_answered_then_failed_adopts_nothing(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second approver's Adopt waited for the first's Reject, which rejected the run (its
    card says so) and then failed (GitHub, on the rest of the run): the run's answer is given
    back, but the run was answered. The Adopt is told who answered it, and adopts nothing (it
    went on to answer the run again: told it no longer waits, or, while the requests of the
    run's failure jobs were open, adopting a run rejected on GitHub)."""
    approvers = {"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{SECOND}"}
    async with app_box(tmp_path, database_url, extra_env=approvers) as box:
        run_id, card = await started_on_github(box)
        runs = box.services.controls.unfollowed
        after_rejecting = runs._after_rejecting  # type: ignore[union-attr]
        waiting, rejected = the_second_waits(box, monkeypatch), asyncio.Event()

        async def failed_once_the_second_waits(failed_run: int) -> None:
            monkeypatch.setattr(runs, "_after_rejecting", after_rejecting)
            rejected.set()
            await waiting.wait()
            raise GitHubError("GitHub did not answer the rejection of the rest of the run")

        monkeypatch.setattr(runs, "_after_rejecting", failed_once_the_second_waits)
        first = asyncio.create_task(box.click("reject_run", message=card))
        await rejected.wait()  # the run is rejected, its card settled; the claim still held
        second = await box.click("adopt_run", message=card, user=SECOND)
        await first

        assert second is not None and f"Run {run_id} was rejected by" in second, second
        assert "nothing more was done" in second
        assert await box.services.rollouts.active() == []
        assert ("relay-canary-5", "approved") not in answers(box)


async def test_an_adopt_clicked_after_a_reject_that_answered_then_failed_adopts_nothing(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first approver's Reject rejected the run (its card says so), then failed (GitHub, on
    the rest of the run); a second approver clicks Adopt on the card as it was drawn before:
    the run was answered, so nothing is adopted, whoever clicks after."""
    approvers = {"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{SECOND}"}
    async with app_box(tmp_path, database_url, extra_env=approvers) as box:
        run_id, card = await started_on_github(box)
        runs = box.services.controls.unfollowed
        after_rejecting = runs._after_rejecting  # type: ignore[union-attr]

        async def failed_once(failed_run: int) -> None:
            monkeypatch.setattr(runs, "_after_rejecting", after_rejecting)
            raise GitHubError("GitHub did not answer the rejection of the rest of the run")

        monkeypatch.setattr(runs, "_after_rejecting", failed_once)
        adopt = (button(card.blocks, "adopt_run") or {})["value"]
        first = await box.click("reject_run", message=card)
        second = await box.click("adopt_run", message=card, value=adopt, user=SECOND)

        assert first is not None and f"Done: reject run {run_id}" in first, first
        assert "reject it there" in first, first
        assert await box.services.rollouts.active() == []
        assert ("relay-canary-5", "approved") not in answers(box)
        assert second is not None and f"Run {run_id} was rejected by" in second, second


async def test_an_adopt_clicked_after_a_default_reject_that_then_failed_adopts_nothing(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody answered: the default rejected the run (its card says so), then GitHub failed
    the rejection of the rest of it (the `if: failure()` jobs' requests stay open). An Adopt
    clicked on the card as it was drawn before, before the default is tried again, adopts
    nothing: the run was rejected on GitHub. Before, the default's claim was given back and
    the Adopt adopted the rejected run, its later requests still open."""
    run_id, card = await started_on_github(box)
    failing: list[int] = []
    both_failed = asyncio.Event()

    async def github_fails(_github: object, failed_run: int, environments: list[str]) -> None:
        failing.append(failed_run)
        if len(failing) >= 2:
            both_failed.set()
        raise GitHubError("GitHub did not answer the rejection of the rest of the run")

    monkeypatch.setattr("bot.services.unfollowed_runs.reject_rest", github_fails)
    adopt = (button(card.blocks, "adopt_run") or {})["value"]
    await box.pass_time(timedelta(seconds=1805))
    await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
    # The default's own rejection of the rest, and the bot's of a failure job's request, failed.
    await asyncio.wait_for(both_failed.wait(), timeout=30)

    told = await box.click("adopt_run", message=card, value=adopt)

    assert await box.services.rollouts.active() == [], told
    assert not any(state == "approved" for _, state in answers(box)), answers(box)
    assert told is not None and f"Run {run_id} was rejected by the default answer" in told, told


async def test_a_default_whose_rejection_then_failed_is_never_redrawn_as_nothing_waited(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UNFOLLOWED_RUN_DEFAULT=approve, deploys frozen: the default rejected the run (its card
    says so), then GitHub failed its rejection of the rest of the run, once, and the freeze
    ended. Its timer fires again for the rest only. Before, that try answered the run again:
    not frozen any more, it found nothing of the card's stage waiting and saved the card as
    "Nothing waited", over its own rejection (the card then said the run's later stages wait
    for a person)."""
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    async with app_box(tmp_path, database_url, extra_env=env) as box:
        run_id, _ = await started_on_github(box)
        assert "froze deploys" in await box.command("freeze 2h INC-123 investigation")
        runs = box.services.controls.unfollowed
        after_rejecting = runs._after_rejecting  # type: ignore[union-attr]
        failed = asyncio.Event()

        async def failed_once(failed_run: int) -> None:
            monkeypatch.setattr(runs, "_after_rejecting", after_rejecting)
            failed.set()
            raise GitHubError("GitHub did not answer the rejection of the rest of the run")

        monkeypatch.setattr(runs, "_after_rejecting", failed_once)
        key = f"unfollowed_run:{run_id}"
        await box.pass_time(timedelta(seconds=1805))
        await asyncio.wait_for(failed.wait(), timeout=30)
        await box.wait_for_timer(key, lambda t: t.claimed_by is None)  # that attempt ended
        await box.command("unfreeze")
        await box.pass_time(timedelta(minutes=10))  # past a retry's backoff

        timer = await box.wait_for_timer(key, lambda t: not t.is_pending)
        card = UnfollowedRun.from_json(dict((timer.payload or {})["card"]))
        assert card.fate is RunFate.REJECTED, card
        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert "Nothing waited" not in run_cards(box)[0].rendered
        assert ("relay-canary-5", "rejected") in first_stages(box)
        assert not any(state == "approved" for _, state in answers(box)), answers(box)


async def test_a_reject_github_took_nothing_of_is_not_told_done_when_its_card_then_failed(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run was cancelled on GitHub right before the Reject went out, so GitHub took none of
    it (nothing waited), and then the card could not be settled: the person is not told that
    GitHub took the answer, and the run's claim is given back (before, it was recorded done:
    "Done: reject run …", nobody able to answer the run again through the bot)."""
    run_id, card = await started_on_github(box)
    runs = box.services.controls.unfollowed
    github = box.services.rollouts.effects.github
    review, settle = github.review, runs._settle  # type: ignore[union-attr]
    answered: list[bool] = []

    async def cancelled_first(*args: object, **kwargs: object) -> bool:
        box.github.engine.cancel(run_id)
        answered.append(await review(*args, **kwargs))  # type: ignore[arg-type]
        return answered[-1]

    async def lost_once(*args: object, **kwargs: object) -> None:
        monkeypatch.setattr(runs, "_settle", settle)
        raise OperationalError("UPDATE timers", {}, ConnectionResetError("lost"))

    monkeypatch.setattr(github, "review", cancelled_first)
    monkeypatch.setattr(runs, "_settle", lost_once)
    told = await box.click("reject_run", message=card)

    assert answered == [False], answered  # GitHub took none of it
    assert told is not None and "GitHub took the answer" not in told, told
    assert f"Done: reject run {run_id}" not in told, told
    key = effect_key(Control.ANSWER_RUN, CardRef(f"run-{run_id}"))
    claim = await ClaimStore(bots_database(box).sessions).get(key)
    assert claim is None or claim.state is not ClaimState.DONE, claim


async def test_a_reject_github_took_nothing_of_says_so_on_the_card_and_to_the_person(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run was cancelled on GitHub right before the Reject went out, so GitHub took none of
    it (nothing waited): the card says nothing waited and nothing was rejected, and so does the
    person's answer. Before, the card said "Rejected by" the person, and they were told
    nothing."""
    run_id, card = await started_on_github(box)
    github = box.services.rollouts.effects.github
    review = github.review

    async def cancelled_first(*args: object, **kwargs: object) -> bool:
        box.github.engine.cancel(run_id)
        return await review(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(github, "review", cancelled_first)
    told = await box.click("reject_run", message=card)

    assert told is not None and f"Run {run_id} was not rejected" in told, told
    said = f"Nothing of run {run_id} waited for an answer any more when"
    await box.slack.wait_for(lambda: said in run_cards(box)[0].rendered, timeout=30)
    (card,) = run_cards(box)
    assert "Rejected by" not in card.rendered and not has_buttons(card)
    timer = await box.wait_for_timer(f"unfollowed_run:{run_id}", lambda t: not t.is_pending)
    drawn = UnfollowedRun.from_json(dict((timer.payload or {})["card"]))
    assert (drawn.fate, drawn.by) == (RunFate.NOTHING_WAITED, RELEASE_MANAGER)
