"""octokit/webhooks' published payload schemas, read from a git checkout named by
`OCTOKIT_WEBHOOKS_GIT` (default: the workplace's mirror); the test skips without one. The
schemas are read, never copied into this repository."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

CHECKOUT = Path(os.environ.get("OCTOKIT_WEBHOOKS_GIT", "/work/.mirror/octokit+webhooks/repo"))
SCHEMAS = "payload-schemas/api.github.com"


def _git(*args: str) -> str:
    return subprocess.run(  # noqa: S603 - git reading a checkout of octokit/webhooks
        ["git", "--git-dir", str(CHECKOUT), *args],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def registry(*events: str) -> Any:
    """Every `common/` schema and the given events' (`deployment_protection_rule/requested`),
    by `$id` (their `$ref`s are relative ids)."""
    referencing = pytest.importorskip("referencing")
    pytest.importorskip("referencing.jsonschema")
    if not CHECKOUT.exists():
        pytest.skip(f"no octokit/webhooks checkout at {CHECKOUT} (set OCTOKIT_WEBHOOKS_GIT)")
    names = _git("ls-tree", "--name-only", "HEAD", f"{SCHEMAS}/common/").split()
    names += [f"{SCHEMAS}/{event}.schema.json" for event in events]
    resources = []
    for name in names:
        schema = json.loads(_git("show", f"HEAD:{name}"))
        resource = referencing.Resource.from_contents(
            schema, default_specification=referencing.jsonschema.DRAFT7
        )
        resources.append((schema["$id"], resource))
    return referencing.Registry().with_resources(resources)


def schema_errors(registry: Any, schema_id: str, payload: Any) -> list[str]:
    """Where `payload` breaks the schema `schema_id` (`workflow_run$completed`), one line each."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(registry.contents(schema_id), registry=registry)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(payload)]
