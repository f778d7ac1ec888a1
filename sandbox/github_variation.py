"""The simulator's variation mode: answers GitHub's REST reference allows, shaped unlike the
simulator's regular ones, so a bot that leans on that regularity fails a test.

Off by default (`GitHubSimulator(variation=GitHubVariation())` turns it on). When on:
- every list page is at most `page_size` long, whatever `per_page` asks (GitHub caps it at
  100 and gives the rest by `Link` header: "Using pagination in the REST API");
- a page's `Link` names the `prev` and `next` pages only, never `first` nor `last` (the same
  guide: a link GitHub cannot calculate is left out);
- the lists whose order the reference does not promise (runs, jobs, pending deployments,
  deployments, their statuses, environments, their protection rules and reviewers, workflows,
  secrets, package versions, reviews) come in another order, the same for the same content
  (so an unchanged answer keeps its ETag); a workflow's runs, deployments and their
  statuses are listed oldest first (`GitHubSimulator.lists_oldest_first`);
- every JSON object carries a field the bot has never heard of (GitHub adds fields without
  a new API version: "API Versions", additive changes);
- fields the schema declares nullable and the bot has no business needing are null: a run's
  `name` and `head_commit`, a job's `workflow_name` and `head_branch`;
- a webhook delivery, the App's included, leaves out the top-level fields its schema does not
  require (octokit/webhooks' `payload-schemas`): a protection rule request's `event` and
  `pull_requests`, a deployment review's `reviewers`, `comment` and `workflow_job_run` (its
  `workflow_job_runs` name the jobs);
- header names come lower-cased (as HTTP/2 sends them).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

from aiohttp import web

UNKNOWN_FIELD = "sandbox_variation_unknown"
"""The field added to every object: a name no GitHub answer has (yet)."""

_UNORDERED_KEYS = frozenset(
    {
        "workflow_runs",
        "jobs",
        "environments",
        "protection_rules",
        "reviewers",
        "workflows",
        "secrets",
    }
)
"""Lists inside an object whose order GitHub's reference does not promise."""

_UNORDERED_PATHS = (
    "/repos/*/*/actions/runs/*/pending_deployments",
    "/repos/*/*/actions/runs/*/approvals",
    "/repos/*/*/deployments",
    "/repos/*/*/deployments/*/statuses",
    "/*/*/packages/container/*/versions",
)
"""GETs answered by a bare list in no promised order."""

_UNREQUIRED = {
    "deployment_protection_rule": ("event", "pull_requests"),
    "deployment_review": ("reviewers", "comment", "workflow_job_run"),
}
"""Top-level fields of a delivery, by event, that its schema does not require."""

_NULLABLE_RUN = ("name", "head_commit")
_NULLABLE_JOB = ("workflow_name", "head_branch")


@dataclass
class GitHubVariation:
    """What the simulator varies (see the module's docstring); `seed` picks the orders."""

    page_size: int = 2
    seed: int = 0

    def per_page(self, asked: int) -> int:
        return min(asked, self.page_size)

    @staticmethod
    def links(named: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The `Link` relations a page names: `prev` and `next` only, as GitHub gives them
        when it cannot calculate the others ("Using pagination in the REST API")."""
        return [(rel, page) for rel, page in named if rel in ("prev", "next")]

    def answer(self, method: str, path: str, data: Any) -> Any:
        """`data` (a JSON answer to `method path`) as the variation gives it."""
        unordered = any(fnmatch.fnmatchcase(path, pattern) for pattern in _UNORDERED_PATHS)
        if method == "GET" and isinstance(data, list) and unordered:
            data = self._reordered(data)
        return self._varied(data)

    def payload(self, event: str, data: dict[str, Any]) -> Any:
        """An `event` delivery's payload, with unknown fields, nullable fields null and the
        fields its schema does not require left out."""
        left_out = _UNREQUIRED.get(event, ())
        return self._varied({key: value for key, value in data.items() if key not in left_out})

    def _varied(self, data: Any) -> Any:
        if isinstance(data, list):
            return [self._varied(item) for item in data]
        if not isinstance(data, dict):
            return data
        varied = {key: self._varied(value) for key, value in data.items()}
        for key in _UNORDERED_KEYS & varied.keys():
            if isinstance(varied[key], list):
                varied[key] = self._reordered(varied[key])
        if "workflow_id" in varied and "run_attempt" in varied:  # a workflow run
            varied.update(dict.fromkeys(_NULLABLE_RUN))
        if "runner_id" in varied and "run_id" in varied:  # a job
            varied.update(dict.fromkeys(_NULLABLE_JOB))
        varied[UNKNOWN_FIELD] = {"added": "by GitHub after the bot was written"}
        return varied

    def _reordered(self, items: list[Any]) -> list[Any]:
        """`items` in an order of their own content's choosing (stable for the same items),
        never the given one when there are two or more."""
        if len(items) < 2:
            return items
        digest = hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode())
        shuffled = list(items)
        random.Random(f"{self.seed}:{digest.hexdigest()}").shuffle(shuffled)
        if shuffled == items:
            shuffled = shuffled[1:] + shuffled[:1]
        return shuffled

    @staticmethod
    def lower_header_names(response: web.StreamResponse) -> None:
        """The response's header names lower-cased (HTTP says their case does not matter)."""
        for name, value in list(response.headers.items()):
            del response.headers[name]
            response.headers.add(name.lower(), value)
