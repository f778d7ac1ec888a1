"""The npm Release workflow's publishing job as its workflow file declares it: the environment
it runs in (whose secrets it reads first) and whether it may request an OIDC token."""

from __future__ import annotations

import re
from collections.abc import Iterator
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
    only = (
        oidc
        and _github_hosted(spec.get("runs-on"))
        and not _may_read_token(spec, document.get("env"))
    )
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


_HOSTED = re.compile(r"(ubuntu|windows|macos)-[\w.-]+", re.IGNORECASE)


def _github_hosted(runs_on: Any) -> bool:
    """Whether the job runs on a GitHub-hosted runner, as npm trusted publishing needs ("self-
    hosted runners are not currently supported"): every label one of GitHub's images
    (`ubuntu-latest`, `windows-2022`, `macos-14`, ...). A runner group, a custom label or an
    expression may be a self-hosted runner: not taken for hosted."""
    labels = [runs_on] if isinstance(runs_on, str) else runs_on
    return (
        isinstance(labels, list)
        and bool(labels)
        and all(isinstance(label, str) and _HOSTED.fullmatch(label) for label in labels)
    )


_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_SECRETS_AT_ONCE = re.compile(r"(?<![\w.-])secrets(?![\w-])(?!\s*\.\s*[a-z_])", re.IGNORECASE)
"""The `secrets` context other than as `secrets.<name>`: `secrets[...]`, `secrets.*`,
`toJSON(secrets)`, `format('{0}', secrets)`: any secret, NPM_TOKEN too, may be handed over."""


def _may_read_token(spec: dict[Any, Any], workflow_env: Any) -> bool:
    """Whether the job (its steps, its `env`, or the workflow's `env`) may hand npm NPM_TOKEN:
    it names the secret anywhere (a script that merely prints its name counts too: then the
    walkthrough checks the secret, as before), or an expression takes the `secrets` context
    other than by a name (`secrets[...]`, `secrets.*`, `toJSON(secrets)`)."""
    for text in _texts([spec, workflow_env]):
        if SECRET_NAME.casefold() in text.casefold():
            return True
        if any(_SECRETS_AT_ONCE.search(body) for body in _EXPRESSION.findall(text)):
            return True
    return False


def _texts(node: Any) -> Iterator[str]:
    """Every string in a YAML document's node: keys and values, at any depth."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _texts(key)
            yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)


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
