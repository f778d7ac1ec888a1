"""The npm Release workflow's publishing job as its workflow file declares it: the environment
it runs in (whose secrets it reads first) and whether it may request an OIDC token."""

from __future__ import annotations

import re
from typing import Any

import yaml

from bot.domain.npm import MAX_ENVIRONMENT, SECRET_NAME, json_length
from bot.domain.npm_secrets import PublishJob


def publish_job(text: str, job: str) -> PublishJob:
    """The job whose key or `name` is `job` in the workflow file `text`."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return PublishJob(unknown="The workflow file is not valid YAML.")
    jobs = document.get("jobs") if isinstance(document, dict) else None
    specs = [
        spec
        for key, spec in (jobs.items() if isinstance(jobs, dict) else ())
        if isinstance(spec, dict) and job in (str(key), spec.get("name"))
    ]
    if not specs:
        return PublishJob(unknown=f"The workflow file has no job {job} (the plan's npm.job).")
    spec = specs[0]
    assert isinstance(document, dict)
    # A job's own `permissions` replace the workflow's entirely.
    oidc = _grants_id_token(spec.get("permissions", document.get("permissions")))
    if "uses" in spec:  # the called workflow's jobs may read it (`secrets: inherit`)
        return PublishJob(
            unknown=f"Job {job} calls a reusable workflow, whose jobs' environments the bot "
            "does not read.",
            oidc=oidc,
        )
    # Trusted publishing alone: the job may request an OIDC token and never hands npm the
    # secret (no `secrets.NPM_TOKEN` in it, nor in the workflow's `env`).
    only = oidc and not _may_read_token(spec, document.get("env"))
    tags = _runs_on_tags(document.get("on", document.get(True)))  # YAML 1.1 reads `on` as true
    environment = spec.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    if environment is None:
        return PublishJob(oidc=oidc, oidc_only=only, on_tags=tags)
    if not isinstance(environment, str) or "${{" in environment:
        return PublishJob(
            unknown=f"Job {job} names its environment with an expression, known only when it runs.",
            oidc=oidc,
            oidc_only=only,
            on_tags=tags,
        )
    # Counted as the check's JSON carries it in the buttons (a control character takes six).
    if json_length(environment) > MAX_ENVIRONMENT:
        return PublishJob(
            unknown=f"Job {job}'s environment has a name longer than {MAX_ENVIRONMENT} characters "
            "(as JSON writes it).",
            oidc=oidc,
            oidc_only=only,
            on_tags=tags,
        )
    return PublishJob(environment=environment, oidc=oidc, oidc_only=only, on_tags=tags)


def _grants_id_token(permissions: Any) -> bool:
    if permissions == "write-all":
        return True
    return isinstance(permissions, dict) and permissions.get("id-token") == "write"


_EVERY_SECRET = re.compile(r"secrets\s*\[|tojson\s*\(\s*secrets\s*\)", re.IGNORECASE)


def _may_read_token(spec: dict[Any, Any], workflow_env: Any) -> bool:
    """Whether the job (its steps, its `env`, or the workflow's `env`) may hand npm NPM_TOKEN:
    it names the secret anywhere (a script that merely prints its name counts too: then the
    walkthrough checks the secret, as before), or takes secrets by an expression
    (`secrets[...]`, `toJSON(secrets)`)."""
    text = yaml.safe_dump([spec, workflow_env])
    return SECRET_NAME.casefold() in text.casefold() or _EVERY_SECRET.search(text) is not None


_BRANCH_FILTERS = ("branches", "branches-ignore")
_TAG_FILTERS = ("tags", "tags-ignore")


def _runs_on_tags(on: Any) -> bool:
    """Whether the workflow's triggers run it for a tag: `release` (its ref is the release's
    tag), `create`, or `push` unless filtered to branches only (GitHub: with only `branches`
    filters a tag push does not run it; with none, or `tags` filters, it does)."""
    if isinstance(on, str):
        on = [on]
    if isinstance(on, list):
        on = dict.fromkeys(str(event) for event in on)
    if not isinstance(on, dict):
        return False
    if "release" in on or "create" in on:
        return True
    if "push" not in on:
        return False
    push = on["push"]
    if not isinstance(push, dict):
        return True
    return any(key in push for key in _TAG_FILTERS) or not any(
        key in push for key in _BRANCH_FILTERS
    )
