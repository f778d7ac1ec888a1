"""The notice, in the failure channel, that a release channel refuses the bot: which channel,
why (Slack's answer), what fixes it, and what the channel was not told."""

from __future__ import annotations

from collections.abc import Sequence

from bot.adapters.slack.limits import SECTION_TEXT, clip
from bot.adapters.slack.mrkdwn import channel as channel_mention
from bot.services.outbox_messages import CARD, FAILURE, FIGURES, GATE, SUMMARY, THREAD, UNFOLLOWED
from bot.services.ports import Undelivered

_FIXES = {
    "not_in_channel": "the bot is not a member of it. Invite it: type `/invite @rollout-bot` "
    "(the bot's name in this workspace) in that channel",
    "is_archived": "the channel is archived. Unarchive it (channel settings), or name another "
    "release channel in the bot's configuration (`RELEASE_CHANNELS`, or the service's file)",
    "channel_not_found": "Slack does not show it to the bot (a private channel it was removed "
    "from, or an ID that is wrong). Invite the bot there, or check the channel's ID in the "
    "bot's configuration",
    "no_permission": "the bot has no permission to post there (it is not a member). Invite it: "
    "type `/invite @rollout-bot` (the bot's name in this workspace) in that channel",
    "restricted_action": "a setting of the channel or the workspace keeps the bot from posting "
    "there (who may post). Ask a channel manager or a workspace admin to let the bot post",
    "restricted_action_read_only_channel": "the channel is read-only. Ask a workspace admin to "
    "let the bot post there, or name another release channel in the bot's configuration",
    "ekm_access_denied": "the workspace's administrators suspended posting there (Enterprise "
    "Key Management revoked the keys). Ask them to restore access",
}

_KINDS = {
    CARD: "the card",
    THREAD: "a thread line",
    FIGURES: 'an "Enter figures" prompt',
    GATE: "a gate verdict",
    SUMMARY: "the summary",
    FAILURE: "a failure",
    UNFOLLOWED: "the card of a run the bot did not start",
}


_REPLIES_FIX = (
    "the channel's posting permissions let the bot post but not reply in threads: its cards "
    "are posted, their threads are not told. Ask a channel manager or a workspace admin to let "
    "the bot reply in threads (channel settings, posting permissions)"
)


def refusal_text(
    refusing: str,
    refusal: str,
    undelivered: Sequence[Undelivered],
    *,
    replies_only: bool = False,
) -> str:
    """The notice: the refusing channel (its thread replies only, `replies_only`), its fix,
    what it was not told by now."""
    fix = _REPLIES_FIX if replies_only else refusal_fix(refusal)
    cannot = "reply in threads in" if replies_only else "post in"
    answered = " to its thread replies" if replies_only else ""
    lines = [
        f":no_entry: *The bot cannot {cannot} {channel_mention(refusing)}* "
        f"(Slack answers `{refusal}`{answered}): {fix}.",
        f"Not delivered there so far: {_undelivered(undelivered)}.",
        "Rollouts go on (gates, rollbacks, promotions act as before; their failures are told "
        "here). Messages given up are not posted later: once the bot can "
        f"{'reply in threads' if replies_only else 'post'} there, `/rollout status` in the "
        "channel shows each rollout as it stands.",
    ]
    return clip("\n".join(lines), SECTION_TEXT)


def refusal_fix(refusal: str) -> str:
    """Why a channel refuses the bot (Slack's `refusal`), and what fixes it."""
    return _FIXES.get(refusal, "Slack refuses the bot there")


def _undelivered(undelivered: Sequence[Undelivered]) -> str:
    if not undelivered:
        return "nothing yet"
    by_tag: dict[str | None, list[str]] = {}
    for message in undelivered:
        by_tag.setdefault(message.tag, []).append(_KINDS.get(message.kind, "a message"))
    parts = []
    for tag, kinds in by_tag.items():
        said = ", ".join(dict.fromkeys(kinds))  # each kind once, in order
        if len(kinds) > 1:
            said = f"{len(kinds)} messages ({said})"
        parts.append(f"`{tag}`: {said}" if tag else said)
    return "; ".join(parts)
