"""What a chaos run leaves behind, gathered once its replicas are stopped: each rollout's end,
GitHub's reviews and dispatches, what Slack received, the replicas' logs."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sandbox.chaos.checks import Evidence, Outcome
from sandbox.config import SECRETS
from sandbox.github_app import SandboxApp
from sandbox.github_app_paths import is_app_path
from sandbox.github_requests import RecordedRequest
from storage.rollout_store import RolloutStore

if TYPE_CHECKING:
    from sandbox.chaos.run import ChaosRun


async def gather_evidence(run: ChaosRun, store: RolloutStore, seconds: float) -> Evidence:
    """What the run left behind, once its replicas are stopped: each rollout's end, GitHub's
    reviews and dispatches, what Slack received, the logs."""
    box = run.box
    outcomes = []
    for played in run.played:
        tag, scenario = played.tag, played.scenario
        found = await store.by_tag(tag)
        if not found:
            outcomes.append(Outcome(tag, scenario, None))
            continue
        rollout = found[0]
        events = await box.audit.list_for_rollout(rollout.id)
        gates = tuple(
            (e.track or "", e.stage or "", e.result)
            for e in events
            if e.action == "gate" and not (e.detail or {}).get("interim")
        )
        thread: tuple[str, ...] = ()
        if rollout.message_ts is not None:
            with contextlib.suppress(KeyError):
                card = box.slack.message(played.lane.channel, rollout.message_ts)
                thread = tuple(reply.rendered for reply in card.replies)
        outcomes.append(
            Outcome(
                tag,
                scenario,
                rollout.phase.value,
                {t.name: t.state.value for t in rollout.tracks},
                gates,
                thread,
                rollout.run_id,
            )
        )
    for replica in box.replicas:
        await replica.kill()
    sent = [json.dumps(call.args) for call in box.slack.calls]
    sent += [json.dumps(post.body) for post in box.slack.all_responses]
    repositories = box.github.repositories.values()
    dispatches = Counter(
        str(d.inputs.get("relay_image_tag")) for r in repositories for d in r.dispatches
    )
    run.figures["GitHub requests"] = len(box.github.requests)
    app = box.github.app
    answered, path = (
        ("review", "/pending_deployments")
        if app is None
        else ("rule answer", "/deployment_protection_rule")
    )
    run.figures[f"GitHub {answered} attempts refused (not waiting)"] = sum(
        1
        for r in box.github.requests
        if r.method == "POST" and r.path.endswith(path) and r.status == 422
    )
    secrets: tuple[str, ...] = SECRETS
    installations: dict[str, int] = {}
    calls: Counter[tuple[str, int | None]] = Counter()
    delivered = Counter(run.delivered)
    if app is not None:
        installations, calls = owners_installations(app, box.github.requests)
        deliveries = box.github.app_hook.deliveries
        delivered.update(named_installation(json.loads(d.body)) for d in deliveries)
        run.figures["App deliveries"] = len(deliveries)
        # The bot finds their requests again from the run's deployments (docs/protection-rules.md).
        run.figures["App deliveries that reached no replica"] = sum(
            1 for d in deliveries if d.status_code is None
        )
        run.figures["App installation tokens minted"] = len(app.issued)
        run.figures["App installations whose tokens called GitHub"] = len(
            {number for _, number in calls if number is not None}
        )
        key_lines = app.private_key.splitlines()[1:-1]
        secrets += (*key_lines, *(token.token for token in app.issued))
    return Evidence(
        outcomes=tuple(outcomes),
        reviews=tuple(
            (review.run_id, environment, review.state)
            for r in repositories
            for review in (*r.reviews, *r.engine.rule_reviews)
            for environment in review.environments
        ),
        dispatches=dispatches,
        logs={r.log.name: r.log.read_text(errors="replace") for r in box.replicas},
        sent_to_slack=tuple(sent),
        answers=dict(run.answers),
        figures=dict(run.figures),
        seconds=seconds,
        secrets=secrets,
        installations=installations,
        calls=dict(calls),
        deliveries=dict(delivered),
    )


def named_installation(payload: Mapping[str, Any]) -> tuple[str, int | None]:
    """A webhook delivery's repository and the App installation it names (None: none)."""
    repository, installation = payload.get("repository"), payload.get("installation")
    number = installation.get("id") if isinstance(installation, Mapping) else None
    full_name = repository.get("full_name") if isinstance(repository, Mapping) else None
    return str(full_name), number if isinstance(number, int) else None


def owners_installations(
    app: SandboxApp, requests: Iterable[RecordedRequest]
) -> tuple[dict[str, int], Counter[tuple[str, int | None]]]:
    """Each account's installation id, and the calls to each repository's paths by the
    installation whose token they carried (but the lookup of its installation, which goes
    with the App's JWT)."""
    installations = {account: i.id for account, i in app.installations.items() if i.installed}
    calls = Counter(
        ("/".join(r.path.split("/")[2:4]), r.installation)
        for r in requests
        if r.path.startswith("/repos/") and not is_app_path(r.path)
    )
    return installations, calls
