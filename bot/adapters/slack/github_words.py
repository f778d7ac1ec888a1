"""The thread's lines about what GitHub reports of a run: its deliveries, and a job that waits
for the bot's answer (the App's rule, or its account's review) where the plan has no stage.
Names and comments come from GitHub: they are escaped, so a `<!channel>` in a job's name or a
reviewer's comment reads as typed instead of notifying the channel.
"""

from __future__ import annotations

from bot.adapters.slack.mrkdwn import escape
from bot.domain.github_events import GitHubReported
from bot.domain.rollout.events import WaitsOutsidePlan


def github_reported_text(told: GitHubReported) -> str:
    """What GitHub reported of the run (a delivery), for the `all` notification level."""
    event = told.event
    job = f"*{escape(event.job)}*" if event.job else "A job"
    environment = f"`{escape(event.environment)}`" if event.environment else "an environment"
    outcome = f"`{escape(event.outcome or 'unknown')}`"
    if event.event == "workflow_job":
        if event.action == "waiting":
            of = f"`{escape(told.environment)}`" if told.environment else "its environment"
            return f"GitHub: {job} is waiting for approval of {of}."
        return {
            "queued": f"GitHub: {job} queued.",
            "in_progress": f"GitHub: {job} started.",
        }.get(event.action, f"GitHub: {job} finished: {outcome}.")
    if event.event == "workflow_run":
        return {
            "requested": "GitHub: the run was requested.",
            "in_progress": "GitHub: the run is in progress.",
        }.get(event.action, f"GitHub: the run completed: {outcome}.")
    if event.event == "deployment":
        return f"GitHub: deployment to {environment} created."
    if event.event == "deployment_status":
        return f"GitHub: deployment to {environment} is {outcome}."
    if event.event == "deployment_protection_rule":
        return f"GitHub: {environment} is waiting for the bot's protection rule."
    if event.action == "requested":
        return f"GitHub: {environment} is waiting for a reviewer."
    review = event.reviews[0]
    said = f" ({escape(review.comment)})" if review.comment else ""
    return f"GitHub: {escape(review.reviewer)} {escape(event.action)} {environment}{said}."


def waits_outside_plan_text(event: WaitsOutsidePlan) -> str:
    """A job waits at an environment the plan does not name, for the bot's answer that never
    comes (the App's rule, or the review of the bot's account, whose mail nobody reads): say
    so, and what a person can do."""
    name = f"`{escape(event.environment)}`"
    run = f"<{event.run_url}|run {event.run_id}>"
    admin = "a repository admin can start the waiting job past its protection rules, or cancel"
    if event.by_review:
        waits = "for the bot's review (its account is a required reviewer there)"
        who = f"another of its required reviewers can approve or reject it, {admin} the run"
        off = "take the bot's account off its required reviewers"
    else:
        waits = "for the bot's protection rule"
        who = f"{admin} the run"
        off = "take the bot's rule off it"
    return (
        f":warning: A job of {run} waits at {name} {waits}, but the plan does not name "
        f"{name}, so the bot neither approves nor rejects it: the job waits on GitHub until "
        f"someone acts. Answer it on the run's page ({who}), or add {name} to the plan (or "
        f"{off}) for the next rollouts."
    )
