"""The NPM_TOKEN walkthrough end to end (signed Slack requests, the real app, the GitHub
simulator's Release workflow, whose logs depend on the NPM_TOKEN secret), and its pure parts:
log reading, npm error classification, the web address, the size of a button value."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sandbox_views import github_until
from sqlalchemy import text
from test_rerun_unconfirmed import until

from bot.adapters.slack import messages
from bot.adapters.slack.actions import InvalidPayload
from bot.adapters.slack.limits import BUTTON_VALUE
from bot.adapters.slack.npm_views import NpmAction, decode_state, encode_state
from bot.domain.errors import NotAReleaseChannel, PlanError
from bot.domain.npm import (
    MAX_ENVIRONMENT,
    MAX_ERROR,
    RELEASE_TIMER,
    ReleaseFollow,
    ReleasePhase,
    RunCheck,
    RunSummary,
    SecretCheck,
    SecretLevel,
    StepVerdict,
    Walkthrough,
    clip_error,
    github_web_url,
)
from bot.domain.npm_environment import CARRIED_FLAGS, MAX_REVIEWERS, MAX_WAIT_MINUTES
from bot.domain.npm_log import (
    NpmError,
    npm_error,
    output_lines,
    printed_skip_warning,
    published_nothing,
)
from bot.domain.plan import NpmRelease
from bot.domain.reasons import Reason
from bot.domain.rollout_command import (
    parse_command,
)
from bot.plan_file import parse_plan
from bot.services.catalog import CommandService
from bot.services.records import Timer
from sandbox.config import BYSTANDER, RELEASE_CHANNEL, RELEASE_MANAGER, SECRETS
from sandbox.github_json import error as github_error
from sandbox.harness import Sandbox
from sandbox.render import render_blocks
from sandbox.slack import ChannelMessage
from sandbox.slack_records import blocks_arg
from storage.claims import ClaimStore
from storage.db import create_engine, create_session_factory

DIRECT_MESSAGE = "D0DIRECT01"
PUBLISH = "Version / publish packages"
# A token-like value in a job log: the bot reads the log and must never repeat it.
LEAKED_IN_LOG = "npm_" + "Zq8" * 12


RELEASE_JOB = timedelta(minutes=30)
"""How long the Release run's job takes on the sandbox clock: it runs until the test moves the
clock on, so "in progress" is seen however slow the machine is."""


@pytest.fixture
async def box(tmp_path: Path, sqlite_database_url: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url) as sandbox:
        yield sandbox
        assert_no_token_reached_slack(sandbox)


def assert_no_token_reached_slack(sandbox: Sandbox) -> None:
    """No Slack call carries a credential or a place to type one."""
    token_like = re.compile(r"npm_[A-Za-z0-9]{30,}|gh[pousr]_[A-Za-z0-9]{16,}|xox[abpr]-")
    for call in sandbox.slack.calls:
        sent = json.dumps(call.args)
        assert not token_like.search(sent), call.method
        assert not any(secret in sent for secret in SECRETS), call.method
        assert LEAKED_IN_LOG not in sent
        assert '"plain_text_input"' not in sent and '"type": "input"' not in sent


async def open_walkthrough(box: Sandbox, channel: str = RELEASE_CHANNEL) -> ChannelMessage:
    answer = await box.command("npm-token", channel=channel)
    assert "walkthrough posted" in answer
    (message,) = box.slack.messages(channel)
    return message


def step(message: ChannelMessage, number: int) -> str:
    (block,) = [b for b in message.blocks if b.get("block_id") == f"npm_step_{number}"]
    return render_blocks([block])


async def press(
    box: Sandbox, message: ChannelMessage, action: NpmAction, *, number: int, until: str
) -> str:
    """Click a walkthrough button and wait until step `number` shows `until`."""
    await box.click(str(action), message=message, channel=message.channel, wait=False)
    await box.slack.wait_for(lambda: until in step(message, number), timeout=30)
    return step(message, number)


def set_secret(box: Sandbox, *, age: timedelta) -> None:
    box.github.secrets["NPM_TOKEN"] = datetime.now(UTC) - age


def release_run(box: Sandbox) -> int:
    return box.github.create_foreign_run(workflow="release.yml", event="push", actor="octocat")


# -- the message ----------------------------------------------------------------------------------


async def test_the_walkthrough_posts_five_steps_with_the_secret_link(box: Sandbox) -> None:
    message = await open_walkthrough(box)
    shown = message.rendered
    for number, title in enumerate(
        [
            "Create an npm token",
            "Add it as a repository secret",
            "Check the secret",
            "Check the last Release run",
            "Run Release now",
        ],
        start=1,
    ):
        assert f"*{number}. {title}*   :white_circle: to do" in step(message, number)
    link = f"{box.github.html_url}/scriptum/scriptum/settings/secrets/actions/new"
    assert f"<{link}|" in step(message, 2)
    assert "name it exactly `NPM_TOKEN`" in step(message, 2)
    assert "granular access token" in step(message, 1) and "`@scriptum`" in step(message, 1)
    assert "at most 90 days" in shown and "December 2025" in shown
    assert "trusted publishing" in shown
    assert "[Check secret]" in shown and "[Check last Release run]" in shown
    assert "never paste a token" in shown
    (run_button,) = [b["accessory"] for b in message.blocks if b.get("block_id") == "npm_step_5"]
    confirm = run_button["confirm"]["text"]["text"]
    assert "on main" in confirm and "may publish packages" in confirm


async def test_a_walkthrough_whose_answer_was_lost_is_not_posted_twice(box: Sandbox) -> None:
    """Slack posts the walkthrough, then the connection drops before its answer: the Web API
    client must not post it again on its own (chat.postMessage takes no idempotency key)."""
    box.slack.lose_next_answer("chat.postMessage")
    answer = await box.command("npm-token")
    assert "cannot tell whether it went through" in answer, answer
    assert len(box.slack.messages(RELEASE_CHANNEL)) == 1


async def test_the_command_is_acknowledged_before_github_is_read(box: Sandbox) -> None:
    """Slack wants a slash command acknowledged within 3 seconds, and `/rollout npm-token`
    reads the Release workflow from GitHub before it posts the walkthrough. GitHub holds that
    read: the command is acknowledged all the same, and the walkthrough and the answer come
    once GitHub answers."""
    read = box.github.hold("GET", "/repos/*/contents/*")
    seen: list[str] = []
    try:
        typed = asyncio.create_task(box.send_command("npm-token"))  # asserts HTTP 200
        typed.add_done_callback(lambda _: seen.append("acknowledged"))
        await until(lambda: box.github.holding)
        seen.append("GitHub holds the read")
        # Bolt answers HTTP 200 on its own once 3 seconds pass without an ack: that answer
        # comes after the read began, this one before.
        url = await asyncio.wait_for(typed, timeout=120)  # a hang guard only
        assert seen == ["acknowledged", "GitHub holds the read"]
        assert box.slack.responses(url) == [] and box.slack.messages(RELEASE_CHANNEL) == []
    finally:
        read.set()
    (post,) = await box.slack.wait_for_response(url, timeout=30)
    assert "walkthrough posted" in json.dumps(post.body)
    assert len(box.slack.messages(RELEASE_CHANNEL)) == 1


async def test_the_command_works_in_a_direct_message(box: Sandbox) -> None:
    message = await open_walkthrough(box, DIRECT_MESSAGE)
    shown = await press(box, message, NpmAction.CHECK_SECRET, number=3, until="not set")
    assert "`NPM_TOKEN` is not set" in shown
    assert box.slack.messages(RELEASE_CHANNEL) == []


async def test_other_channels_are_refused_with_where_it_works(box: Sandbox) -> None:
    answer = await box.command("npm-token", channel="C0RANDOM00")
    assert "direct message with the bot" in answer and f"<#{RELEASE_CHANNEL}>" in answer
    assert box.slack.calls_to("chat.postMessage") == []


@pytest.mark.parametrize(
    "typed",
    [
        "npm-token {token}",
        "{token}",
        "start {token}",
        # A reason is said to the whole channel and kept; an end or a period is quoted back.
        "lock {token}",
        "unlock {token}",
        "freeze 2h {token}",
        "freeze {token} code freeze",
        'start v1.4.2 --override-freeze "{token}"',
        "report {token}",
        # Words before it: the answer still says to revoke it (before: "Unexpected `please`").
        "npm-token please {token}",
        "npm-token NPM_TOKEN {token}",
        "set NPM_TOKEN {token}",
        "status now {token}",
        "link 123 {token}",
    ],
)
async def test_a_token_pasted_into_the_command_is_neither_repeated_nor_kept(
    box: Sandbox, typed: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone pastes their new npm token where they think the bot wants it: the answer tells
    them to revoke it, and neither the answer, the log nor the audit trail holds it."""
    token = "npm_" + "Pa5t" * 9
    caplog.set_level(logging.DEBUG)

    answer = await box.command(typed.format(token=token))

    assert "That looks like a token: nothing was done" in answer and "revoke it" in answer
    assert token not in answer and token[4:12] not in answer
    assert box.slack.calls_to("chat.postMessage") == []  # no walkthrough, no preflight card
    trail = await box.audit.list_for_actor(RELEASE_MANAGER)
    assert [e.result for e in trail] in (["invalid_command"], ["invalid_tag"])
    assert token[4:12] not in repr(trail)
    assert not [r for r in caplog.records if token[4:12] in r.getMessage()]


# -- step 3: the secret ---------------------------------------------------------------------------


async def test_a_missing_secret_fails_step_3_and_step_2_in_place(box: Sandbox) -> None:
    message = await open_walkthrough(box)
    shown = await press(box, message, NpmAction.CHECK_SECRET, number=3, until=":x: failed")
    assert (
        "`NPM_TOKEN` is not set in `scriptum/scriptum`, nor shared with it by its organization: "
        "add it (step 2)"
    ) in shown
    assert ":x: failed" in step(message, 2)
    assert len(box.slack.calls_to("chat.postMessage")) == 1
    assert message.updates == 1


@pytest.mark.parametrize(
    ("days", "tone", "warned"),
    [(3, ":white_check_mark: done", False), (85, ":warning: needs attention", True)],
)
async def test_the_secret_age_is_checked_against_the_plan(
    box: Sandbox, days: int, tone: str, warned: bool
) -> None:
    set_secret(box, age=timedelta(days=days, hours=1))
    message = await open_walkthrough(box)
    shown = await press(box, message, NpmAction.CHECK_SECRET, number=3, until=tone)
    assert "`NPM_TOKEN` is set: created" in shown and f"({days} days ago)" in shown
    assert ("older than 80 days" in shown) is warned
    assert ":white_check_mark: done" in step(message, 2)


async def test_an_organization_secret_shared_with_the_repository_is_found(box: Sandbox) -> None:
    # The Release workflow reads an organization's NPM_TOKEN shared with the repository: step 3
    # must not call it missing (and send people to add a repository secret that replaces it).
    box.github.organization_secrets["NPM_TOKEN"] = datetime.now(UTC) - timedelta(days=3, hours=1)
    box.github.organization_secrets["OTHER_TOKEN"] = datetime.now(UTC)
    message = await open_walkthrough(box)
    shown = await press(
        box, message, NpmAction.CHECK_SECRET, number=3, until=":white_check_mark: done"
    )
    assert "`NPM_TOKEN` is an organization secret shared with `scriptum/scriptum`" in shown
    assert "(3 days ago)" in shown
    assert ":white_check_mark: done" in step(message, 2)
    release_run(box)
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until="success")
    assert "*Validate npm publish credentials* passed without the NPM_TOKEN warning" in shown


async def test_the_repositorys_own_secret_comes_before_the_organizations(box: Sandbox) -> None:
    box.github.organization_secrets["NPM_TOKEN"] = datetime.now(UTC) - timedelta(days=300)
    set_secret(box, age=timedelta(days=2, hours=1))
    message = await open_walkthrough(box)
    shown = await press(
        box, message, NpmAction.CHECK_SECRET, number=3, until=":white_check_mark: done"
    )
    assert "`NPM_TOKEN` is set: created" in shown and "(2 days ago)" in shown
    assert "organization secret" not in shown
    # The organization's is shadowed: updating it would change nothing for the job.
    assert "takes the place of the organization's `NPM_TOKEN`, which the job does not read" in shown


async def test_no_permission_to_read_secrets_says_which_permission(box: Sandbox) -> None:
    box.github.secrets_forbidden = True
    message = await open_walkthrough(box)
    shown = await press(box, message, NpmAction.CHECK_SECRET, number=3, until="cannot check")
    assert "Resource not accessible by integration" in shown
    assert "Secrets: Read" in shown
    assert ":white_circle: to do" in step(message, 2)


# -- step 4: the last Release run -----------------------------------------------------------------


async def test_a_run_without_the_secret_shows_the_warning_and_eneedauth(box: Sandbox) -> None:
    run_id = release_run(box)
    message = await open_walkthrough(box)
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until=":x: failed")
    assert f"/actions/runs/{run_id}|Run #1> (push on `main`" in shown
    assert (
        ":warning: *Validate npm publish credentials* printed "
        "“NPM_TOKEN secret not configured — skipping npm publish.”"
    ) in shown
    assert f"*{PUBLISH}* failed with `ENEEDAUTH`" in shown
    assert "because the secret is missing or empty" in shown


async def test_eneedauth_although_the_secret_is_set_points_at_the_workflow(
    box: Sandbox,
) -> None:
    set_secret(box, age=timedelta(days=1))
    box.github.fail_job(
        "next",
        "changesets",
        step=PUBLISH,
        log=(
            "npm error code ENEEDAUTH\n"
            "npm error need auth This command requires you to be logged in"
        ),
    )
    release_run(box)
    message = await open_walkthrough(box)
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until=":x: failed")
    assert "*Validate npm publish credentials* passed without the NPM_TOKEN warning" in shown
    assert "failed with `ENEEDAUTH`" in shown
    assert "make sure the publish step passes it to npm" in shown


@pytest.mark.parametrize(
    ("log", "code", "fix"),
    [
        (
            f"npm ERR! code E401\nnpm ERR! Unable to authenticate, token {LEAKED_IN_LOG}",
            "E401",
            "it expired, was revoked",
        ),
        (
            "npm error code E403\nnpm error 403 403 Forbidden - PUT https://registry.npmjs.org/"
            "@scriptum%2fcli - Two-factor authentication or granular access token with bypass "
            "2fa enabled is required to publish packages.",
            "E403",
            "bypasses two-factor authentication",
        ),
        (
            "npm error code E404\nnpm error 404 Not Found - PUT https://registry.npmjs.org/"
            "@scriptum%2fcli - Not found",
            "E404",
            "cannot see the `@scriptum` scope",
        ),
    ],
)
async def test_each_npm_refusal_comes_with_its_fix(
    box: Sandbox, log: str, code: str, fix: str
) -> None:
    set_secret(box, age=timedelta(days=1))
    box.github.fail_job("next", "changesets", step=PUBLISH, log=log)
    release_run(box)
    message = await open_walkthrough(box)
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until=":x: failed")
    assert f"failed with `{code}`" in shown and fix in shown


async def test_a_clean_run_passes_every_check(box: Sandbox) -> None:
    set_secret(box, age=timedelta(days=2))
    release_run(box)
    message = await open_walkthrough(box)
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until="done")
    assert ": success." in shown
    assert "*Validate npm publish credentials* passed without the NPM_TOKEN warning" in shown
    assert f"*{PUBLISH}* passed" in shown
    assert ":white_check_mark: done" in step(message, 1)
    assert ":white_check_mark: done" in step(message, 2)


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        # `changeset publish` passes when every version is on npm already, without using the
        # token: an expired or wrong-scope token goes unnoticed until the next real publish.
        ("npm_up_to_date", "No unpublished projects to publish"),
        # With changesets still to version, changesets/action opens (or updates) the "Version
        # Packages" pull request and never runs the publish: the step passes without npm, and
        # prints no "No unpublished projects to publish" either. Most pushes to main are so.
        ("npm_changesets_pending", "Version Packages"),
    ],
)
async def test_a_run_that_published_nothing_does_not_pass_for_a_verified_token(
    box: Sandbox, mode: str, said: str
) -> None:
    set_secret(box, age=timedelta(days=2))
    setattr(box.github.engine, mode, True)
    release_run(box)
    message = await open_walkthrough(box)
    shown = await press(
        box, message, NpmAction.CHECK_LAST_RUN, number=4, until=":warning: needs attention"
    )
    assert ": success." in shown
    assert "*Validate npm publish credentials* passed without the NPM_TOKEN warning" in shown
    assert f"*{PUBLISH}* passed but published nothing" in shown
    assert said in shown
    assert "npm never used the token" in shown
    assert "creating pull request" not in shown  # nothing of the log is quoted
    assert ":white_check_mark: done" not in step(message, 1)
    assert ":white_check_mark: done" in step(message, 2)  # the validate step saw a token


async def test_a_green_run_whose_log_is_gone_does_not_pass_for_a_verified_token(
    box: Sandbox,
) -> None:
    # GitHub deletes logs after the repository's retention period (the download answers 410).
    # Without the log, a passed publish step may have published nothing (every version on npm,
    # or changesets/action's version branch), and a passed validate step may have printed the
    # NPM_TOKEN warning: the steps' results do not show that npm accepts the token.
    set_secret(box, age=timedelta(days=2))
    release_run(box)
    box.github.fail_next("GET", "/_sandbox/job-logs/*", 410)
    message = await open_walkthrough(box)
    shown = await press(
        box, message, NpmAction.CHECK_LAST_RUN, number=4, until=":warning: needs attention"
    )
    assert "answered 410" in shown
    assert "green steps do not show that npm accepts the token" in shown
    assert ":white_check_mark: done" not in step(message, 1)
    # Nor is step 2 done by a validate step whose warning could not be looked for.
    assert ":white_check_mark: done" not in step(message, 2)


async def test_a_secret_added_after_the_failed_run_asks_for_a_new_run(box: Sandbox) -> None:
    box.github.create_foreign_run(
        workflow="release.yml",
        event="push",
        actor="octocat",
        created_at=datetime.now(UTC) - timedelta(hours=1),
    )
    set_secret(box, age=timedelta(minutes=5))
    message = await open_walkthrough(box)
    await press(box, message, NpmAction.CHECK_SECRET, number=3, until="done")
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until=":x: failed")
    assert "`NPM_TOKEN` was updated after this run: run Release again (step 5)" in shown


async def test_a_green_run_older_than_the_renewed_secret_does_not_verify_it(
    box: Sandbox,
) -> None:
    """The token was renewed after the last run published: that run used the old one, so it
    proves nothing of the secret now (a renewed token pasted incompletely fails the next
    publish). Before, step 4 said done, and nothing said the run predates the secret."""
    set_secret(box, age=timedelta(days=2))
    box.github.create_foreign_run(
        workflow="release.yml",
        event="push",
        actor="octocat",
        created_at=datetime.now(UTC) - timedelta(hours=1),
    )
    set_secret(box, age=timedelta(minutes=5))  # renewed since
    message = await open_walkthrough(box)
    await press(box, message, NpmAction.CHECK_SECRET, number=3, until="done")
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until="success")
    assert f"*{PUBLISH}* passed" in shown
    assert "Release run*   :warning: needs attention" in shown
    assert "`NPM_TOKEN` was updated after this run: run Release again (step 5)" in shown


async def test_no_run_yet_says_how_to_start_one(box: Sandbox) -> None:
    message = await open_walkthrough(box)
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until="never run")
    assert "run it (step 5) or push to `main`" in shown


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, github_error("Not Found", 404), "exists in .github/workflows"),
        (403, None, "rate limited"),
    ],
)
async def test_github_refusals_become_the_step_status(
    box: Sandbox, status: int, body: dict[str, str] | None, expected: str
) -> None:
    box.github.fail_next("GET", "/repos/*/actions/workflows/release.yml/runs", status, body)
    message = await open_walkthrough(box)
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until="cannot check")
    assert expected in shown and "release.yml" in shown


# -- step 5: Run Release now ----------------------------------------------------------------------


async def test_run_release_dispatches_on_main_and_follows_the_run_to_its_end(
    box: Sandbox,
) -> None:
    set_secret(box, age=timedelta(days=1))
    box.github.set_job_duration("changesets", RELEASE_JOB)
    message = await open_walkthrough(box)
    await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
    await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
    await box.pass_time(RELEASE_JOB)
    await box.slack.wait_for(lambda: ":white_check_mark: done" in step(message, 5), timeout=30)
    shown = step(message, 5)
    (dispatch,) = box.github.dispatches
    assert (dispatch.workflow_path, dispatch.ref, dispatch.inputs) == (
        ".github/workflows/release.yml",
        "main",
        {},
    )
    assert box.github.run(dispatch.run_id).status == "completed"
    assert f"Started by <@{RELEASE_MANAGER}>" in shown
    assert f"/actions/runs/{dispatch.run_id}|Run #1>" in shown
    assert f"*{PUBLISH}* passed" in shown


async def test_a_second_click_while_following_dispatches_nothing(box: Sandbox) -> None:
    box.github.set_job_duration("changesets", RELEASE_JOB)
    message = await open_walkthrough(box)
    await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
    await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
    answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)
    assert answer is not None and "already following a Release run" in answer
    await box.pass_time(RELEASE_JOB)
    await box.slack.wait_for(lambda: "ENEEDAUTH" in step(message, 5), timeout=30)
    assert len(box.github.dispatches) == 1


async def test_a_click_after_the_bot_stopped_following_a_run_still_going_dispatches_nothing(
    box: Sandbox,
) -> None:
    """The bot stops following after two hours, but the run may still go (it waits for its
    reviewers): Run Release then started a second Release beside it, both able to publish."""
    box.github.set_job_duration("changesets", timedelta(hours=3))
    message = await open_walkthrough(box)
    await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
    await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
    (dispatch,) = box.github.dispatches
    await box.pass_time(timedelta(hours=2, minutes=1))
    await box.slack.wait_for(lambda: "took too long to follow" in step(message, 5), timeout=30)

    answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)

    assert answer is not None and f"run {dispatch.run_id}" in answer, answer
    assert "is still in progress" in answer and "step 4 once it has ended" in answer
    assert len(box.github.dispatches) == 1
    await box.pass_time(timedelta(hours=1))  # once it has ended, Release may run again
    await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
    await box.slack.wait_for(lambda: len(box.github.dispatches) == 2, timeout=30)


async def test_a_run_release_click_delivered_again_dispatches_nothing_more(box: Sandbox) -> None:
    """The same click delivered again (a Slack retry, or its signed body sent again while its
    signature holds) is one request. It dispatched Release again, which can publish, once the
    run the first delivery started had ended."""
    box.github.set_job_duration("changesets", RELEASE_JOB)
    message = await open_walkthrough(box)
    url, body = box.click_body(str(NpmAction.RUN_RELEASE), message=message)
    assert await box.post_signed(body) == 200
    await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
    await box.pass_time(RELEASE_JOB)
    await box.slack.wait_for(lambda: "ENEEDAUTH" in step(message, 5), timeout=30)

    assert await box.post_signed(body) == 200

    await box.slack.wait_for(
        lambda: bool(box.slack.responses(url)) or len(box.github.dispatches) > 1, timeout=30
    )
    assert len(box.github.dispatches) == 1
    (answer,) = box.slack.responses(url)
    assert "Already done by" in json.dumps(answer.body)
    audited = [(e.action, e.result) for e in await box.audit.list_for_actor(RELEASE_MANAGER)]
    assert audited[-1] == ("click:npm_run_release", "duplicate")


async def test_a_non_approver_cannot_run_release(box: Sandbox) -> None:
    message = await open_walkthrough(box)
    answer = await box.click(str(NpmAction.RUN_RELEASE), message=message, user=BYSTANDER)
    assert answer is not None and "Only release approvers may run the npm Release" in answer
    assert box.github.dispatches == []
    assert message.updates == 0
    audited = [(e.action, e.result) for e in await box.audit.list_for_actor(BYSTANDER)]
    assert audited == [("click:npm_run_release", "refused")]


async def test_run_release_is_refused_while_deploys_are_frozen(box: Sandbox) -> None:
    # Release publishes the @scriptum packages: a freeze holds it, as it holds a Dispatch.
    message = await open_walkthrough(box)
    await box.command("freeze 2h holiday freeze")
    answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)
    assert answer is not None and "Deploys are frozen by" in answer
    assert "The npm Release workflow publishes packages, so it waits for the freeze" in answer
    assert box.github.dispatches == []
    assert message.updates == 0
    audited = [(e.action, e.result) for e in await box.audit.list_for_actor(RELEASE_MANAGER)]
    assert ("click:npm_run_release", "lane_closed") in audited


async def test_a_refused_dispatch_says_which_permission(box: Sandbox) -> None:
    box.github.fail_next(
        "POST",
        "/repos/*/actions/workflows/release.yml/dispatches",
        403,
        github_error("Resource not accessible by integration", 403),
    )
    message = await open_walkthrough(box)
    shown = await press(box, message, NpmAction.RUN_RELEASE, number=5, until="cannot check")
    assert "Could not start Release" in shown and "Actions write permission" in shown
    assert box.github.dispatches == []


async def test_a_log_with_a_token_in_it_is_never_quoted(box: Sandbox) -> None:
    box.github.fail_job(
        "next",
        "changesets",
        step=PUBLISH,
        log=f"npm error code E401\nnpm error //registry.npmjs.org/:_authToken={LEAKED_IN_LOG}",
    )
    release_run(box)
    message = await open_walkthrough(box)
    await press(box, message, NpmAction.CHECK_SECRET, number=3, until="failed")
    await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until="E401")
    # The fixture's teardown scans every Slack call; this test makes sure one had the chance.
    assert any(LEAKED_IN_LOG in line for line in _job_log(box))


def _job_log(box: Sandbox) -> list[str]:
    run = next(iter(box.github.runs.values()))
    return [line for s in run.job("changesets").steps for line in s.lines]


# -- the routing rule -----------------------------------------------------------------------------


def test_the_command_service_routes_npm_token_from_a_direct_message() -> None:
    service = CommandService(release_channels=(RELEASE_CHANNEL,), words=messages)
    assert service.route(text="npm-token", channel_id=DIRECT_MESSAGE) == parse_command("npm-token")
    with pytest.raises(NotAReleaseChannel):
        service.route(text="status", channel_id=DIRECT_MESSAGE)
    with pytest.raises(NotAReleaseChannel):
        service.route(text="npm-token", channel_id="C0RANDOM00")


# -- pure parts -----------------------------------------------------------------------------------


def test_the_script_echo_of_a_step_is_not_its_output() -> None:
    log = (
        '2026-01-05T10:00:00.0000000Z ##[group]Run if [ -z "$NPM_TOKEN" ]; then\n'
        '2026-01-05T10:00:00.0000000Z   echo "::warning::NPM_TOKEN secret not configured — '
        'skipping npm publish."\n'
        "2026-01-05T10:00:00.0000000Z ##[endgroup]\n"
        "2026-01-05T10:00:01.0000000Z npm publish credentials are configured.\n"
    )
    assert output_lines(log) == ["npm publish credentials are configured."]
    assert not printed_skip_warning(output_lines(log))
    printed = log + "2026-01-05T10:00:01.0000000Z ##[warning]NPM_TOKEN secret not configured\n"
    assert printed_skip_warning(output_lines(printed))


def test_a_log_cut_inside_a_steps_script_echo_does_not_count_the_script_as_printed() -> None:
    # Of a log over 4 MiB only its end is kept: it may begin inside the `##[group]Run` block
    # in which GitHub echoes the validate step's script, whose closing `##[endgroup]` is then
    # the first group mark read.
    log = (
        'ipt the cut began in; echo "::warning::NPM_TOKEN secret not configured — skip"\n'
        "2026-01-05T10:00:00.0000000Z   shell: /usr/bin/bash -e {0}\n"
        "2026-01-05T10:00:00.0000000Z ##[endgroup]\n"
        "2026-01-05T10:00:01.0000000Z npm publish credentials are configured.\n"
    )
    assert output_lines(log) == ["npm publish credentials are configured."]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["npm ERR! code ENEEDAUTH", "npm ERR! need auth"], NpmError.NEED_AUTH),
        (["npm error code ENEEDAUTH"], NpmError.NEED_AUTH),
        (["npm error code E401", "npm error Unable to authenticate"], NpmError.UNAUTHORIZED),
        (["npm ERR! code E403", "npm ERR! 403 You do not have permission"], NpmError.FORBIDDEN),
        (
            ["npm error code E403", "npm error 403 Two-factor authentication ... is required"],
            NpmError.TWO_FACTOR,
        ),
        (
            ["npm error code EOTP", "This operation requires a one-time password"],
            NpmError.TWO_FACTOR,
        ),
        (["npm error code E404", "npm error 404 Not Found - PUT"], NpmError.NOT_FOUND),
        (["npm error code E409", "Conflict"], None),
        (["Error: The process '/usr/local/bin/npm' failed with exit code 1"], None),
        # `changeset publish` runs `npm publish --json` and says npm's code in its own words
        # (the only place some versions give it), coloured in GitHub's log.
        (
            [
                "🦋  \x1b[31merror\x1b[39m an error occurred while publishing @scriptum/cli: "
                "E401 Unable to authenticate"
            ],
            NpmError.UNAUTHORIZED,
        ),
        (
            [
                "🦋  error An error occurred while publishing @scriptum/cli: E403",
                "🦋  error Two-factor authentication or granular access token with bypass 2fa "
                "enabled is required to publish packages.",
            ],
            NpmError.TWO_FACTOR,
        ),
        (["🦋  error an error occurred while publishing @scriptum/cli: E404"], NpmError.NOT_FOUND),
    ],
)
def test_npm_errors_are_told_apart(lines: list[str], expected: NpmError | None) -> None:
    assert npm_error(lines) is expected


def test_colour_codes_in_the_log_hide_no_npm_error() -> None:
    # npm told to colour (`--color always`, `npm_config_color`) paints its words in the log.
    log = (
        "2026-01-05T10:00:02.0000000Z \x1b[0m\x1b[31mnpm\x1b[39m \x1b[31merror\x1b[39m "
        "\x1b[35mcode\x1b[39m E401\n"
    )
    assert npm_error(output_lines(log)) is NpmError.UNAUTHORIZED


@pytest.mark.parametrize(
    ("api", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://api.github.com/", "https://github.com"),
        ("https://github.example.com/api/v3", "https://github.example.com"),
        ("https://api.octocorp.ghe.com", "https://octocorp.ghe.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://bot:s3cret@github.example.com:8443/api/v3", "https://github.example.com:8443"),
        ("https://x-token@api.github.com", "https://github.com"),
    ],
)
def test_the_web_address_comes_from_the_api_address(api: str, web: str) -> None:
    assert github_web_url(api) == web


@pytest.mark.parametrize(
    ("lines", "nothing"),
    [
        (["🦋  warn No unpublished projects to publish"], True),
        (["🦋  success packages published successfully:", "🦋  @scriptum/cli@1.4.2"], False),
        # Some versions were on npm already, another was published: the token was used.
        (
            [
                "🦋  warn @scriptum/cli is not being published because version 1.4.2 is "
                "already published on npm",
                "🦋  success packages published successfully:",
            ],
            False,
        ),
        (["done"], False),  # another publish tool: nothing to go by
        # changesets/action's version branch: the "Version Packages" pull request, no publish.
        (["setting GitHub credentials", "creating pull request"], True),
        (["\x1b[36mupdating found pull request #12\x1b[0m"], True),
        (["All changesets are empty; not creating PR"], True),
        (
            [
                "No changesets present or were removed by merging release PR. Not publishing "
                "because no publish script found."
            ],
            True,
        ),
        # Its publish branch, whatever else the step printed: decided by what publish said.
        (
            [
                "No changesets found. Attempting to publish any unpublished packages to npm",
                "creating pull request",
                "🦋  success packages published successfully:",
            ],
            False,
        ),
        (
            [
                "No changesets found, attempting to publish any unpublished packages to npm",
                "creating pull request",
            ],
            False,
        ),
    ],
)
def test_a_publish_that_published_nothing_is_told_apart(lines: list[str], nothing: bool) -> None:
    assert published_nothing(lines) is nothing


LARGEST_SECRET_CHECKS = [
    SecretCheck(max_age_days=80, organization=True, error=clip_error("\\" * 2 * MAX_ERROR)),
    # The job's environment's, shadowing both others, its environment not checkable: never
    # all at once, but counted all the same (`organization` never comes with it).
    SecretCheck(
        found=True,
        created_at=datetime(2026, 1, 5, tzinfo=UTC),
        updated_at=datetime(2026, 1, 5, tzinfo=UTC),
        age_days=10**4,
        max_age_days=80,
        environment="\\" * MAX_ENVIRONMENT,  # each takes two in JSON
        environment_secret=True,
        shadowed=(SecretLevel.REPOSITORY, SecretLevel.ORGANIZATION),
        unchecked=clip_error("\\" * 2 * MAX_ERROR),
        oidc=True,
        oidc_only=True,
        rules=(MAX_REVIEWERS, MAX_WAIT_MINUTES, int(CARRIED_FLAGS)),
        app_rule=True,
        ref_unprotected=True,
        own_app_rule=True,
    ),
]


@pytest.mark.parametrize("secret", LARGEST_SECRET_CHECKS)
def test_the_largest_walkthrough_fits_in_a_button_value(secret: SecretCheck) -> None:
    """Every bound at once: a service name of 63 characters, Slack's longest user id, a
    branch of quotes, and GitHub's error texts at their longest in step 3 and in both run
    checks (step 4's, and step 5's: each may have had its job's log unavailable). Before,
    this took up to 2,623 characters (the test left out step 5's log text and the service
    name), and slack_sdk refused to build the message (a button's `value` beyond 2000): every
    click then failed. The longest texts are kept shorter in the buttons (the message shows
    them in full until a click redraws it)."""
    now = datetime(2026, 1, 5, tzinfo=UTC)
    run = RunSummary(
        id=2**63 - 1,
        number=2**31,
        event="workflow_dispatch",
        branch='"' * 100,  # each takes two in JSON
        created_at=now,
        status="completed",
        conclusion="startup_failure",
    )
    check = RunCheck(
        run=run,
        job_found=True,
        job_id=2**63 - 1,
        validate_step=StepVerdict.WARNED,
        publish_step=StepVerdict.FAILED,
        npm_error=NpmError.TWO_FACTOR,
        published_nothing=True,  # never with an npm error, but counted all the same
        log_unavailable=clip_error('"\n' * MAX_ERROR),  # each takes two in JSON
    )
    walkthrough = Walkthrough(
        service="s" * 63,
        trusted_publishing=False,  # its longest ("false")
        secret=secret,
        last_run=check,
        release=ReleaseFollow(
            requested_by="U" * 32,
            phase=ReleasePhase.DONE,
            run_id=2**63 - 1,
            status="completed",
            check=check,
        ),
    )
    value = encode_state(walkthrough)
    assert len(value) <= BUTTON_VALUE
    carried = decode_state(value)
    assert carried.secret is not None and carried.last_run is not None
    assert carried.secret.tone is secret.tone and carried.last_run.tone is check.tone
    assert (carried.secret.rules, carried.secret.oidc_only) == (secret.rules, secret.oidc_only)
    # Within the limit, the value is the walkthrough itself.
    short = Walkthrough(secret=secret, last_run=check)
    assert decode_state(encode_state(short)) == short


def test_a_walkthrough_of_a_newer_version_is_told_as_such() -> None:
    """As this version's `oidc_only` and `rules` reach a replica of the version before: the
    next upgrade's new fields are told as a newer version's, not as "not made by the bot"."""
    value = encode_state(Walkthrough(secret=SecretCheck(max_age_days=80, oidc=True)))
    newer = value.replace('"oidc":true', '"oidc":true,"provenance":true')
    with pytest.raises(InvalidPayload) as caught:
        decode_state(newer)
    assert "made by a newer version of the bot (an upgrade is under way)" in caught.value.message
    assert "`/rollout npm-token`" in caught.value.message
    with pytest.raises(InvalidPayload) as caught:
        decode_state(value.replace('"max_age_days":80', '"max_age_days":"x"'))
    assert "does not carry a walkthrough the bot made" in caught.value.message


def test_the_plan_has_scriptums_npm_release_by_default() -> None:
    npm = NpmRelease()
    assert (npm.scope, npm.workflow, npm.ref, npm.job, npm.max_secret_age_days) == (
        "@scriptum",
        "release.yml",
        "main",
        "changesets",
        80,
    )
    with pytest.raises(PlanError, match=r"npm\.scope"):
        parse_plan(
            "workflow: {file: a.yml, name: A}\n"
            "preflight: {job: P, migrations: {directory: m, destructive: [DROP TABLE]}}\n"
            "tracks: {}\ninputs: {}\nnpm: {scope: scriptum}\n",
            "plan.yml",
        )


async def test_two_replicas_clicked_at_once_run_release_once(
    tmp_path: Path, postgres_database_url: str
) -> None:
    async with Sandbox(
        workdir=tmp_path, database_url=postgres_database_url, in_process=False
    ) as sandbox:
        second = await sandbox.start_replica()
        message = await open_walkthrough(sandbox)
        answers = await asyncio.gather(
            sandbox.click(str(NpmAction.RUN_RELEASE), message=message),
            sandbox.click(str(NpmAction.RUN_RELEASE), message=message, replica=second),
        )
        await github_until(sandbox, lambda: len(sandbox.github.dispatches) >= 1)
        await asyncio.sleep(0.5)  # a second dispatch, if any, would have been sent by now
        assert len(sandbox.github.dispatches) == 1
        assert any(a is not None and "already started" in a for a in answers), answers


@pytest.mark.parametrize("fault", ["accept_then_drop", "apply_then_502"])
async def test_release_accepted_without_a_clear_answer_is_followed_and_never_run_twice(
    box: Sandbox, fault: str
) -> None:
    box.github.set_job_duration("changesets", RELEASE_JOB)
    box.github.fault_next("POST", "/repos/*/actions/workflows/release.yml/dispatches", fault)
    message = await open_walkthrough(box)

    await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
    await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
    answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)

    assert answer is not None and "already following a Release run" in answer
    (dispatch,) = box.github.dispatches
    assert f"/actions/runs/{dispatch.run_id}|Run {dispatch.run_id}>" in step(message, 5)
    assert "Could not start" not in step(message, 5)


async def test_release_answered_502_is_looked_for_not_called_not_started(
    box: Sandbox,
) -> None:
    box.github.fault_next(
        "POST", "/repos/*/actions/workflows/release.yml/dispatches", "server_error"
    )
    message = await open_walkthrough(box)

    await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
    await box.slack.wait_for(lambda: "not identified yet" in step(message, 5), timeout=30)
    answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)

    assert answer is not None and "already following a Release run" in answer
    assert "Could not start" not in step(message, 5)
    assert box.github.dispatches == []  # the 502 was a real failure, and it was not sent again


async def release_answered_502(box: Sandbox) -> ChannelMessage:
    """A walkthrough whose Release click GitHub answered 502 (nothing started), looked for."""
    box.github.set_job_duration("changesets", RELEASE_JOB)
    box.github.fault_next(
        "POST", "/repos/*/actions/workflows/release.yml/dispatches", "server_error"
    )
    message = await open_walkthrough(box)
    await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
    await box.slack.wait_for(lambda: "not identified yet" in step(message, 5), timeout=30)
    return message


async def test_a_search_for_an_unclear_release_does_not_take_another_walkthroughs_run(
    box: Sandbox,
) -> None:
    """A Release answered 502 (nothing started) is looked for; meanwhile a second walkthrough
    runs Release and follows its run. That run, the only one by the bot since the first
    dispatch, is the second walkthrough's (its look recorded the id GitHub answered with):
    the first must not take it for its own, and says in the end that nothing started."""
    first = await release_answered_502(box)
    second = await open_walkthrough(box, DIRECT_MESSAGE)
    await box.click(str(NpmAction.RUN_RELEASE), message=second, channel=second.channel, wait=False)
    await box.slack.wait_for(lambda: "is in progress" in step(second, 5), timeout=30)
    (dispatch,) = box.github.dispatches

    await box.pass_time(timedelta(minutes=6))  # the first walkthrough's search ends
    await box.slack.wait_for(lambda: "Could not start" in step(first, 5), timeout=30)

    assert f"Run {dispatch.run_id}" not in step(first, 5)
    assert f"/actions/runs/{dispatch.run_id}|Run {dispatch.run_id}>" in step(second, 5)


async def test_a_release_github_accepted_whose_run_never_showed_is_not_said_unclearly_answered(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    """GitHub answered the dispatch 204 (GitHub Enterprise Server gives no run details), but
    listed no run of it while the bot looked: step 5 says the dispatch was accepted and no run
    was seen. Before, it said GitHub did not answer the dispatch clearly."""
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url, enterprise=True) as box:
        box.github.unlisted_workflows.add(".github/workflows/release.yml")
        message = await open_walkthrough(box)
        await box.click(str(NpmAction.RUN_RELEASE), message=message)  # its look written
        assert "not identified yet" in step(message, 5)
        assert len(box.github.dispatches) == 1

        await box.pass_time(timedelta(minutes=6))  # the search ends
        await box.slack.wait_for(lambda: "Could not start" in step(message, 5), timeout=30)
        shown = step(message, 5)
        assert "did not answer the dispatch" not in shown, shown
        assert "GitHub accepted the dispatch, but no run of release.yml" in shown, shown


async def test_a_search_that_ended_redraws_step_5_though_slack_drops_that_redraw(
    box: Sandbox,
) -> None:
    """The look that ends the search for an unclear dispatch's run has its redraw of step 5
    dropped by Slack: fired again, it draws it, and only then gives the claim back. Given back
    first, the look fired again found no claim and did nothing: *not identified yet* for good."""
    message = await release_answered_502(box)
    await box.pass_time(timedelta(minutes=3))
    box.slack.drop_next("chat.update", count=2)  # the client tries a dropped call once more
    await box.pass_time(timedelta(minutes=3))  # the search ends
    await box.slack.wait_for(lambda: "Could not start" in step(message, 5), timeout=30)
    assert "did not answer the dispatch clearly" in step(message, 5)

    answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)
    assert answer is None, answer
    await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)


# -- following a Release run across a shutdown, a crash and replicas ------------------------------

DONE = ":white_check_mark: done"


def results_drawn(box: Sandbox, shown: str) -> int:
    """How many redraws of the walkthrough showed `shown` in step 5 (its result: once)."""
    drawn = 0
    for call in box.slack.calls:
        blocks = blocks_arg(call.args) if call.method == "chat.update" else None
        fifth = [b for b in blocks or [] if b.get("block_id") == "npm_step_5"]
        drawn += shown in render_blocks(fifth)
    return drawn


async def test_a_release_run_is_followed_to_its_end_across_a_restart(box: Sandbox) -> None:
    """Stopped while a run is followed: the bot started again carries on and shows the result,
    once, with the rest of the message as it was."""
    set_secret(box, age=timedelta(days=1))
    box.github.set_job_duration("changesets", RELEASE_JOB)
    message = await open_walkthrough(box)
    await press(box, message, NpmAction.CHECK_SECRET, number=3, until="is set")
    await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
    await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
    checked_secret = step(message, 3)

    await box.stop_bot()
    # The run ends while the bot is away (moving the clock past a lease while a look is in
    # hand would have another worker take the look over, as another replica would).
    await box.pass_time(RELEASE_JOB)
    await box.start_bot()  # the same database; nothing in memory

    await box.slack.wait_for(lambda: DONE in step(message, 5), timeout=30)
    await box.pass_time(timedelta(seconds=1))  # a look left behind would have fired by now
    assert f"*{PUBLISH}* passed" in step(message, 5)
    assert step(message, 3) == checked_secret
    assert len(box.github.dispatches) == 1
    assert results_drawn(box, DONE) == 1


async def test_a_look_at_the_release_run_under_way_at_shutdown_is_let_finish(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    """Stopping the bot while it waits for GitHub's answer about the run: the look ends (and
    says GitHub failed), within the shutdown's grace, instead of being cut off; the bot
    started again follows the run on."""
    async with Sandbox(
        workdir=tmp_path, database_url=sqlite_database_url, extra_env={"GITHUB_RETRIES": "0"}
    ) as box:
        box.github.set_job_duration("changesets", RELEASE_JOB)
        message = await open_walkthrough(box)
        await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
        await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
        box.github.fault_next("GET", "/repos/*/actions/runs/*", "timeout")
        await github_waits(box)  # a look waits for GitHub's answer

        await box.stop_bot()
        assert "Still following, although GitHub just failed" in step(message, 5)

        await box.pass_time(RELEASE_JOB)
        await box.start_bot()
        await box.slack.wait_for(lambda: "ENEEDAUTH" in step(message, 5), timeout=30)
        assert results_drawn(box, "ENEEDAUTH") == 1


async def github_waits(box: Sandbox) -> None:
    """Until GitHub holds a request's answer back (the `timeout` fault asked for)."""
    async with asyncio.timeout(30):
        # A counter on the simulator: nothing to be woken by, so it is read again and again.
        while not box.github.faults_injected["timeout"]:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def serve(tmp_path: Path, database_url: str) -> Sandbox:
    """The bot as `rollout-bot serve` processes; what a killed one held is taken over after
    two seconds (LEASE_SECONDS)."""
    return Sandbox(
        workdir=tmp_path, database_url=database_url, in_process=False, extra_env=SHORT_LEASE
    )


SHORT_LEASE = {"LEASE_SECONDS": "2"}


async def test_a_release_run_followed_when_the_bot_is_killed_is_followed_after_restart(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    async with serve(tmp_path, sqlite_database_url) as box:
        box.github.set_job_duration("changesets", RELEASE_JOB)
        message = await open_walkthrough(box)
        await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
        await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)

        await box.kill_process()
        await box.start_process()
        await box.pass_time(RELEASE_JOB)

        await box.slack.wait_for(lambda: "ENEEDAUTH" in step(message, 5), timeout=30)
        await asyncio.sleep(0.5)  # a second follower, if any, would have redrawn it by now
        assert len(box.github.dispatches) == 1
        assert results_drawn(box, "ENEEDAUTH") == 1


async def test_a_release_dispatched_when_the_bot_is_killed_is_found_and_followed(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    """Killed while GitHub had not answered the dispatch yet (it applies it late): the bot
    started again looks for the run, follows it, and never dispatches again."""
    async with serve(tmp_path, sqlite_database_url) as box:
        box.github.fault_next(
            "POST", "/repos/*/actions/workflows/release.yml/dispatches", "timeout"
        )
        message = await open_walkthrough(box)
        await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
        await github_waits(box)  # the dispatch is on its way
        assert "Dispatching" in step(message, 5)

        await box.kill_process()
        await github_until(box, lambda: len(box.github.dispatches) == 1)  # applied, late
        await box.start_process()

        await box.slack.wait_for(lambda: "ENEEDAUTH" in step(message, 5), timeout=30)
        (dispatch,) = box.github.dispatches
        assert f"/actions/runs/{dispatch.run_id}|" in step(message, 5)
        await asyncio.sleep(0.5)  # a second dispatch or result, if any, would be there by now
        assert len(box.github.dispatches) == 1
        assert results_drawn(box, "ENEEDAUTH") == 1


async def test_a_release_run_is_followed_by_one_replica_and_by_the_other_after_it_stops(
    tmp_path: Path, postgres_database_url: str
) -> None:
    async with serve(tmp_path, postgres_database_url) as box:
        await box.start_replica()
        box.github.set_job_duration("changesets", RELEASE_JOB)
        message = await open_walkthrough(box)
        await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
        await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)

        assert await box.replicas[0].stop() == 0  # SIGTERM: it drains and gives its looks back
        await box.pass_time(RELEASE_JOB)

        await box.slack.wait_for(lambda: "ENEEDAUTH" in step(message, 5), timeout=30)
        await asyncio.sleep(0.5)  # a second follower, if any, would have redrawn it by now
        assert results_drawn(box, "ENEEDAUTH") == 1
        logs = "".join(replica.log.read_text() for replica in box.replicas)
        assert len(re.findall(r"Release run \d+ ended", logs)) == 1


async def test_a_look_fired_again_after_the_chain_moved_on_redraws_nothing(box: Sandbox) -> None:
    """A look whose replica died (or whose completion failed: the database) after it wrote the
    next look is fired again once its lease runs out. The chain went on meanwhile: the look
    that found the run, fired again after the run ended, must not draw it as just started
    (a run shown running forever, whose walkthrough refuses every Release click)."""
    box.github.fault_next(
        "POST", "/repos/*/actions/workflows/release.yml/dispatches", "server_error"
    )
    message = await open_walkthrough(box)
    await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
    await box.slack.wait_for(lambda: "not identified yet" in step(message, 5), timeout=30)
    # The run the unclear dispatch may have started appears: the next look finds it.
    box.github.create_foreign_run(workflow="release.yml", actor=box.github.actor, branch="main")
    await box.slack.wait_for(lambda: "ENEEDAUTH" in step(message, 5), timeout=30)

    engine = create_engine(box.database_url)
    try:
        claims = ClaimStore(create_session_factory(engine))
        claim = await claims.get(f"npm_release:{message.channel}:{message.ts}:None")
    finally:
        await engine.dispose()
    assert claim is not None
    holder = claim.holder
    found_it = await box.wait_for_timer(
        f"{RELEASE_TIMER}:{message.channel}:{message.ts}:{holder}:1",
        lambda t: t.fired_at is not None,
    )
    await box.services.npm_token.looks.on_timer(found_it)  # fired again

    assert "ENEEDAUTH" in step(message, 5)
    assert results_drawn(box, "ENEEDAUTH") == 1


async def test_a_release_whose_first_look_cannot_be_written_is_not_left_dispatching(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    """The database refuses the first look (written before the dispatch): nothing is sent, the
    walkthrough does not show a dispatch under way that nothing follows (every later Release
    click would be refused as 'already following'), and the click can be repeated once the
    database is back."""
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url) as box:
        message = await open_walkthrough(box)
        engine = create_engine(box.database_url)
        refuse = (
            "CREATE TRIGGER refuse_looks BEFORE INSERT ON timers WHEN NEW.kind = 'npm_release' "
            "BEGIN SELECT RAISE(ABORT, 'the database is away'); END"
        )
        try:
            async with engine.begin() as connection:
                await connection.execute(text(refuse))
            answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)
            assert answer is not None and "already following" not in answer
            async with engine.begin() as connection:
                await connection.execute(text("DROP TRIGGER refuse_looks"))
        finally:
            await engine.dispose()
        assert box.github.dispatches == []
        assert "Dispatching" not in step(message, 5)

        answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)
        assert answer is None or "already" not in answer, answer
        await github_until(box, lambda: len(box.github.dispatches) == 1)


async def test_a_release_whose_dispatching_cannot_be_shown_is_not_sent_nor_looked_for(
    box: Sandbox,
) -> None:
    """Slack drops the connection of the redraw that shows "Dispatching" (before the dispatch):
    nothing is sent, and the click can be repeated at once. Before, the click's claim stayed
    held and the walkthrough "already following a Release run" for minutes, until the look
    written for the dispatch said that GitHub had not answered it clearly (it was never
    asked)."""
    message = await open_walkthrough(box)
    box.slack.drop_next("chat.update", count=2)  # the client tries a dropped call once more
    answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)
    assert answer is None or "already" not in answer, answer
    assert box.github.dispatches == []
    assert "Dispatching" not in step(message, 5)

    answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)
    assert answer is None or "already" not in answer, answer
    await github_until(box, lambda: len(box.github.dispatches) == 1)


@pytest.fixture
async def long_leases(tmp_path: Path, sqlite_database_url: str) -> AsyncIterator[Sandbox]:
    """A bot whose leases outlast `RELEASE_JOB`: the clock jumped over the job never finds a
    look in hand past its lease (on a loaded machine a look can still be running when the test
    moves the clock; real time never jumps past a lease that is renewed while its look runs),
    so a look is fired twice only when the test fires it again."""
    env = {"LEASE_SECONDS": str(int(RELEASE_JOB.total_seconds()) * 2)}
    async with Sandbox(
        workdir=tmp_path, database_url=sqlite_database_url, extra_env=env
    ) as sandbox:
        yield sandbox
        assert_no_token_reached_slack(sandbox)


async def test_the_last_look_of_a_search_fired_again_does_not_follow_the_next_release(
    long_leases: Sandbox,
) -> None:
    """The search for the run of an unclear dispatch ended without one (the click's claim
    released), and the Release clicked again is followed. The search's last look, fired again
    (its completion failed, or its replica died), must neither draw "could not start" over the
    new run nor take the new run, created since its dispatch, for its own and follow it a
    second time."""
    box = long_leases
    message = await release_answered_502(box)
    await box.pass_time(timedelta(minutes=6))  # the search ends: nothing started
    await box.slack.wait_for(lambda: "Could not start" in step(message, 5), timeout=30)
    engine = create_engine(box.database_url)
    try:
        async with engine.connect() as connection:
            keys = await connection.scalars(
                text("SELECT key FROM timers WHERE kind = 'npm_release' ORDER BY id")
            )
            last = list(keys)[-1]
    finally:
        await engine.dispose()
    await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
    await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
    (dispatch,) = box.github.dispatches

    ended = await box.wait_for_timer(last, lambda t: t.fired_at is not None)
    await box.services.npm_token.looks.on_timer(ended)  # fired again

    assert "is in progress" in step(message, 5)
    await box.pass_time(RELEASE_JOB)
    await box.slack.wait_for(lambda: "ENEEDAUTH" in step(message, 5), timeout=30)
    await box.pass_time(timedelta(seconds=1))  # a second follower would have drawn it again
    assert f"/actions/runs/{dispatch.run_id}|" in step(message, 5)
    assert results_drawn(box, "ENEEDAUTH") == 1


async def test_a_look_that_cannot_be_read_is_given_up_once_not_retried_for_ever(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A look whose payload this version cannot read (written by another version) fails every
    attempt; giving it up must not fail too, or the scheduler would retry giving it up for
    ever: there is no message it could name, so it is only logged."""
    unreadable = Timer(
        id=1,
        key=f"{RELEASE_TIMER}:C0RELEASES:1.0:someone:3",
        kind=RELEASE_TIMER,
        due_at=datetime.now(UTC),
        created_at=datetime.now(UTC),
        attempts=9,
        payload={"channel": "C0RELEASES", "shape": "of another version"},
    )

    await box.services.npm_token.looks.on_timer_dead(unreadable, reason=Reason("ValidationError"))

    (given_up,) = [r for r in caplog.records if r.name == "bot.services.npm_release"]
    assert given_up.levelname == "ERROR" and unreadable.key in given_up.getMessage()
