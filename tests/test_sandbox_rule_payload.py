"""The sandbox's `deployment_protection_rule` delivery against octokit/webhooks' published schema
(`payload-schemas/api.github.com/deployment_protection_rule/requested.schema.json` and the
`common/` schemas it refers to), read from a git checkout of octokit/webhooks named by
`OCTOKIT_WEBHOOKS_GIT` (default: the workplace's mirror). Skipped without one or without
jsonschema: the schema is read, never copied into this repository.

GitHub's REST description differs from octokit's schema in two ways the sandbox follows:
`sha` and `ref` at the top level, and a nullable `deployment`. The test takes them off (and
checks them) before validating the rest.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from octokit_schemas import registry, schema_errors

from sandbox.github import GitHubSimulator
from sandbox.github_rules import APP_LOGIN


async def _delivered(*, with_deployment: bool) -> dict[str, Any]:
    async with GitHubSimulator(repository="scriptum/scriptum") as gh:
        gh.requests_without_deployment = not with_deployment
        gh.protection_rule(["relay-canary-5"])
        gh.create_foreign_run(actor=APP_LOGIN)  # the App dispatched the run
        await gh.settle()
        (delivery,) = gh.app_hook.deliveries
        payload: dict[str, Any] = json.loads(delivery.body)
        return payload


@pytest.mark.parametrize("with_deployment", [True, False])
async def test_the_sandbox_delivery_matches_octokits_schema(with_deployment: bool) -> None:
    schemas = registry("deployment_protection_rule/requested")
    payload = await _delivered(with_deployment=with_deployment)

    sha, ref, deployment = payload.pop("sha"), payload.pop("ref"), payload.pop("deployment")
    assert isinstance(sha, str) and len(sha) == 40 and ref.startswith("refs/heads/")
    assert (deployment is not None) is with_deployment
    if deployment is not None:
        payload["deployment"] = deployment
        assert deployment["sha"] == sha
    assert schema_errors(schemas, "deployment_protection_rule$requested", payload) == []
    assert (payload["sender"]["login"], payload["sender"]["type"]) == (APP_LOGIN, "Bot")
