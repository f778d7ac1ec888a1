"""The marks every message uses: a time each reader sees in their own zone, a mention, and
text shown as written."""

from __future__ import annotations

from datetime import datetime


def slack_time(moment: datetime) -> str:
    """Slack date formatting: every reader sees the time in their own zone."""
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{{time}} ({{date_short_pretty}})|{moment:%Y-%m-%d %H:%M} UTC>"


def person(actor: str) -> str:
    """A mention of one Slack user."""
    return f"<@{actor}>"


def escape(text: str) -> str:
    """Text shown as written in mrkdwn: Slack's three control characters escaped, so a
    person's `<!channel>` or `<https://x|approved>` reads as typed instead of notifying or
    linking."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
