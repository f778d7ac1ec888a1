"""The card of a run the bot did not start (`bot.domain.unfollowed_runs`): what waits where, who
started it, and Adopt / Reject until it is answered; then what became of it."""

from __future__ import annotations

from slack_sdk.models.blocks import Block

from bot.adapters.slack.actions import Action, RunValue
from bot.adapters.slack.blocks import actions, button, confirm, context, section
from bot.adapters.slack.mrkdwn import escape, person, slack_time
from bot.domain.text import shown
from bot.domain.unfollowed_runs import RunFate, UnfollowedRun, no_release


def _of(card: UnfollowedRun, named: bool) -> str:
    """The service's name and a space, when the card names it (`named`: the bot releases
    several): before the workflow's name and the tag of a `/rollout start` it suggests."""
    return f"{card.service} " if named and card.service else ""


def unfollowed_text(card: UnfollowedRun, *, named: bool = False) -> str:
    """The card's first line (also its notification text); `named`: the bot releases several
    services, so it names the run's."""
    by = f"@{_quoted(card.sender)}" if card.sender else "someone"
    how = {"workflow_dispatch": "dispatched by", "push": "started by a push of"}.get(
        card.event, f"started ({_quoted(card.event) or 'unknown event'}) by"
    )
    if card.attempt > 1:  # the webhook's sender is who re-ran it; the run's event is the first's
        how = f"re-run (attempt {card.attempt}) by"
    ended = (
        f" Rollout `{_quoted(card.ended_rollout)}` followed it and has ended."
        if card.ended_rollout
        else ""
    )
    return (
        f"Run {card.run_id} of {_service(card, named)}{escape(card.workflow)}, {how} {by} on "
        f"GitHub, waits at `{_quoted(card.environment)}` for the bot's answer. No rollout "
        f"follows it.{ended}"
    )


def unfollowed_card(card: UnfollowedRun, *, named: bool = False) -> list[Block]:
    lines = [
        section(f":warning: {unfollowed_text(card, named=named)}"),
        context(f"<{card.run_url}|Run {card.run_id}> on `{_quoted(card.ref)}`"),
    ]
    if card.fate is RunFate.UNANSWERED:
        lines.append(
            section(
                ":rotating_light: The default answer could not be given (UNFOLLOWED_RUN_DEFAULT"
                f"): run {card.run_id} still waits on GitHub. {_offered(card)} it here, or "
                f"review it on <{card.run_url}|its page>."
            )
        )
    if card.fate in (RunFate.WAITING, RunFate.UNANSWERED):
        lines += _answers(card, _of(card, named))
    else:
        lines.append(section(_fate(card)))
    return lines


def _service(card: UnfollowedRun, named: bool) -> str:
    """`billing-api`'s, before the workflow's name, when the card names the service."""
    return f"`{card.service}`'s " if _of(card, named) else ""


def _answers(card: UnfollowedRun, of: str) -> list[Block]:
    """What Adopt and Reject do, and the buttons; `of`: the service's name and a space, for
    the `/rollout start` it suggests, in a channel of several."""
    value = RunValue(run_id=card.run_id).encode()
    if card.dispatch_by_two:
        follow = (
            "The plan's two-person rule covers dispatch, so this run cannot be adopted (whoever "
            "adopts it may be who started it on GitHub): Reject it, and start the release with "
            f"`/rollout start {of}{_quoted(card.tag) or '&lt;tag&gt;'}` so that another approver "
            "dispatches it."
        )
    elif card.ended_rollout:
        follow = (
            f"The bot dispatched it for `{_quoted(card.tag)}`. Adopt it (approvers) to follow it "
            f"as a new rollout of `{_quoted(card.tag)}` with the plan's gates, or Reject it "
            "(its job fails) and start a new rollout with "
            f"`/rollout start {of}{_quoted(card.tag)}`."
        )
    elif card.tag:
        follow = (
            "The release it deploys (its inputs' `relay_image_tag`) is not known until someone "
            "adopts it: GitHub's API does not show a run's inputs, so check them on its page. "
            f"Adopt it (approvers) to follow it as a rollout of `{_quoted(card.tag)}` with the "
            "plan's gates, or Reject it."
        )
    else:
        follow = (
            f"`{_quoted(card.ref)}` {no_release(card)}, so this run cannot be adopted: Reject "
            f"it, or start the release's tag with `/rollout start {of}&lt;tag&gt;`."
        )
    # A re-run of an ended rollout's run, and any run that cannot be adopted (not on a release
    # tag, or under the two-person rule on dispatch), is rejected by default, whatever the
    # setting.
    default = (
        "rejects it"
        if card.ended_rollout or not card.adoptable
        else "answers it (UNFOLLOWED_RUN_DEFAULT)"
    )
    due = (
        f" Unanswered by {slack_time(card.due_at)}, the default {default}."
        if card.fate is RunFate.WAITING
        else ""
    )
    rejects = confirm("Reject this run?", f"Run {card.run_id}'s job fails.", "Reject", danger=True)
    reject = button("Reject", Action.REJECT_RUN, value, style="danger", confirm=rejects)
    if not card.adoptable:  # no button that can only be refused
        return [context(f"{follow}{due}"), *actions([reject])]
    adopt = confirm(
        "Adopt this run?",
        # Plain text: shown as typed, nothing to escape.
        f"By adopting it you confirm that run {card.run_id} deploys {shown(card.tag or card.ref)} "
        "(check its inputs on its page: GitHub's API does not show them) and that the "
        "release's feature flags are ready. Its waiting stage is approved; the plan's gates "
        "follow.",
        "Adopt",
        danger=False,
    )
    return [
        context(f"{follow}{due}"),
        *actions(
            [button("Adopt", Action.ADOPT_RUN, value, style="primary", confirm=adopt), reject]
        ),
    ]


def _offered(card: UnfollowedRun) -> str:
    """The answers the card's buttons give."""
    return "Adopt or Reject" if card.adoptable else "Reject"


def _fate(card: UnfollowedRun) -> str:
    if card.fate is RunFate.ADOPTED:
        return (
            f":white_check_mark: Adopted by {person(card.by)}: rollout `{card.rollout_id}` "
            "follows it from here (see its card)."
        )
    if card.fate is RunFate.NOTHING_WAITED and card.by:
        return (
            f":hourglass: Nothing of run {card.run_id} waited for an answer any more when "
            f"{person(card.by)} rejected it (it was cancelled, or answered on GitHub first), so "
            f"nothing was rejected. What it does is on <{card.run_url}|its page>: anything of "
            "it that waits from here waits on GitHub for a person. No rollout follows it."
        )
    if card.fate is RunFate.NOTHING_WAITED:
        return (
            f":hourglass: Nothing waited for the bot's answer when the default came at "
            f"{slack_time(card.due_at)} (the run had moved on), so it answered nothing. Run "
            f"{card.run_id}'s later stages wait on GitHub for a person: review them on "
            f"<{card.run_url}|its page>. No rollout follows it."
        )
    if card.by:
        return f":no_entry: Rejected by {person(card.by)}: its job fails."
    verb = "Rejected" if card.fate is RunFate.REJECTED else "Approved"
    setting = (
        f"UNFOLLOWED_RUN_DEFAULT=approve, which rejects it since {escape(card.refused)}"
        if card.refused
        else "UNFOLLOWED_RUN_DEFAULT"
    )
    return (
        f":hourglass: {verb} by default ({setting}): nobody adopted or rejected it by "
        f"{slack_time(card.due_at)}. No rollout follows it."
    )


def _quoted(text: str) -> str:
    """What GitHub sent (a branch, an environment, a login), quoted short and escaped: a
    `<!channel>` in a branch's name reads as typed instead of notifying the channel."""
    return escape(shown(text))
