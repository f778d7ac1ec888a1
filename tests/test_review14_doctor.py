"""Review of issue 14 (branch review14): `rollout-bot doctor` says ✓ where the install is not
sound, or keeps a ✗ after its own fix was applied (token mode, against the sandbox).

These tests FAIL on main: each names the defect it proves (see the review report).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from test_doctor import APPROVER_GROUP, Install, install, lines  # noqa: F401 - fixture

from sandbox import github_json as shapes


async def test_review14_a_webhook_without_the_bots_events_fails_doctor(
    install: Install,  # noqa: F811
) -> None:
    """A repository webhook that posts to …/github/webhook but is subscribed to `push` only:
    the bot never hears of its runs, jobs or deployment reviews, yet doctor says ✓ (it reads
    the URL and the deliveries, never the hook's events; App mode does check the events)."""
    hook = install.github.hooks[0]
    hook.events = ("push",)
    hook.deliveries.clear()
    hook.deliver(event="push", status_code=200)
    webhook = [line for line in await lines(install) if "webhook" in line]
    assert webhook and webhook[0].startswith("✗"), webhook
    assert "workflow_run" in webhook[0], webhook


async def test_review14_a_failed_delivery_redelivered_passes_doctor(
    install: Install,  # noqa: F811
) -> None:
    """Doctor's fix for a failed delivery is "redeliver from the webhook's Recent Deliveries";
    GitHub records the redelivery as another attempt with the same guid. Token mode counts
    every failed attempt, so the ✗ stays after the fix (App mode matches guids)."""
    hook = install.github.hooks[0]
    failed = hook.deliver(event="workflow_job", status_code=502, status="failed to connect")
    redelivered = hook.deliver(event="workflow_job", status_code=200)
    hook.deliveries[-1] = replace(redelivered, guid=failed.guid)
    webhook = [line for line in await lines(install) if "webhook" in line]
    assert webhook and webhook[0].startswith("✓"), webhook


async def test_review14_an_empty_approver_group_fails_doctor(
    install: Install,  # noqa: F811
) -> None:
    """ROLLOUT_APPROVERS names a user group with nobody in it: nobody it names can approve,
    yet doctor says "✓ approver group S0APPROVE1 has 0 members"."""
    install.slack.usergroups[APPROVER_GROUP] = []
    group = [line for line in await lines(install) if APPROVER_GROUP in line]
    assert group and group[0].startswith("✗"), group


async def test_review14_an_environment_that_forbids_self_review_fails_doctor(
    install: Install,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GitHub's "Prevent self-review" on an environment: a required reviewer cannot approve a
    run they triggered. The bot dispatches the workflow with its own token, so it is the run's
    triggering actor and GitHub refuses its approvals there; doctor never reads the rule's
    `prevent_self_review` and says "✓ environment … waits for release-bot". (The sandbox always
    answers False; the answer is patched to True for relay-rollout-50 only.)"""
    answer = shapes.environment
    prevented: list[str] = []

    def self_review_prevented(*args: Any, **kwargs: Any) -> dict[str, Any]:
        json = answer(*args, **kwargs)
        if args[1] == "relay-rollout-50":
            for rule in json["protection_rules"]:
                rule["prevent_self_review"] = True
                prevented.append(args[1])
        return json

    monkeypatch.setattr(shapes, "environment", self_review_prevented)
    found = [line for line in await lines(install) if "relay-rollout-50" in line]
    assert prevented, "the sandbox answered the environment with the rule"
    assert found and found[0].startswith("✗"), found
