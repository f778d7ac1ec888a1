"""What a chaos run leaves behind, gathered once its replicas are stopped: each rollout's end,
GitHub's reviews and dispatches, what Slack received, the replicas' logs."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from typing import TYPE_CHECKING

from sandbox.chaos.checks import Evidence, Outcome
from sandbox.config import RELEASE_CHANNEL, SECRETS
from storage.rollout_store import RolloutStore

if TYPE_CHECKING:
    from sandbox.chaos.run import ChaosRun


async def gather_evidence(run: ChaosRun, store: RolloutStore, seconds: float) -> Evidence:
    """What the run left behind, once its replicas are stopped: each rollout's end, GitHub's
    reviews and dispatches, what Slack received, the logs."""
    box = run.box
    outcomes = []
    for tag, scenario in run.played:
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
                card = box.slack.message(RELEASE_CHANNEL, rollout.message_ts)
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
    dispatches = Counter(str(d.inputs.get("relay_image_tag")) for d in box.github.dispatches)
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
    if app is not None:
        deliveries = box.github.app_hook.deliveries
        run.figures["App deliveries"] = len(deliveries)
        # The bot finds their requests again from the run's deployments (docs/protection-rules.md).
        run.figures["App deliveries that reached no replica"] = sum(
            1 for d in deliveries if d.status_code is None
        )
        run.figures["App installation tokens minted"] = len(app.issued)
        key_lines = app.private_key.splitlines()[1:-1]
        secrets += (*key_lines, *(token.token for token in app.issued))
    return Evidence(
        outcomes=tuple(outcomes),
        reviews=tuple(
            (review.run_id, environment, review.state)
            for review in (*box.github.reviews, *box.github.engine.rule_reviews)
            for environment in review.environments
        ),
        dispatches=dispatches,
        logs={r.log.name: r.log.read_text(errors="replace") for r in box.replicas},
        sent_to_slack=tuple(sent),
        answers=dict(run.answers),
        figures=dict(run.figures),
        seconds=seconds,
        secrets=secrets,
    )
