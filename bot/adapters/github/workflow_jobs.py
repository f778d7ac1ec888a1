"""The npm Release workflow's publishing job as its workflow file declares it: the environment
it runs in (whose secrets it reads first) and whether it may request an OIDC token."""

from __future__ import annotations

from typing import Any

import yaml

from bot.domain.npm import MAX_ENVIRONMENT, json_length
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
    if "uses" in spec:
        return PublishJob(
            unknown=f"Job {job} calls a reusable workflow, whose jobs' environments the bot "
            "does not read.",
            oidc=oidc,
        )
    environment = spec.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    if environment is None:
        return PublishJob(oidc=oidc)
    if not isinstance(environment, str) or "${{" in environment:
        return PublishJob(
            unknown=f"Job {job} names its environment with an expression, known only when it runs.",
            oidc=oidc,
        )
    # Counted as the check's JSON carries it in the buttons (a control character takes six).
    if json_length(environment) > MAX_ENVIRONMENT:
        return PublishJob(
            unknown=f"Job {job}'s environment has a name longer than {MAX_ENVIRONMENT} characters "
            "(as JSON writes it).",
            oidc=oidc,
        )
    return PublishJob(environment=environment, oidc=oidc)


def _grants_id_token(permissions: Any) -> bool:
    if permissions == "write-all":
        return True
    return isinstance(permissions, dict) and permissions.get("id-token") == "write"
