"""The help of `/rollout` as data: each subcommand's usage and what it does, in the order the
help lists them (`/rollout help`, the App Home; a refused command quotes its usage)."""

from __future__ import annotations

from typing import NamedTuple


class HelpEntry(NamedTuple):
    usage: str
    description: str


HELP: tuple[HelpEntry, ...] = (
    HelpEntry(
        '/rollout start <tag> [--flags-ready] [--at "tue 09:00"] [--override-freeze "<reason>"]',
        "Check the preflight for a release tag, then dispatch the Deployment Strategy workflow "
        "(at a time in your time zone, with --at; through a freeze, with a reason)",
    ),
    HelpEntry("/rollout status", "Show the active rollouts and where each one stands"),
    HelpEntry("/rollout promote", "Approve the next stage once the current stage's gate passed"),
    HelpEntry("/rollout rollback", "Roll the relay back: stop at once and run the rollback job"),
    HelpEntry(
        "/rollout kill [reason]",
        "Trip the desktop/CLI kill-switch: stop promotion and keep the current ring",
    ),
    HelpEntry("/rollout history [tag]", "Show the last rollouts, or the timeline of one release"),
    HelpEntry(
        "/rollout report [period]",
        "Sum up the rollouts that ended in a period (7d, 30d, 2026-11; default 30d)",
    ),
    HelpEntry("/rollout npm-token", "Set up and verify the NPM_TOKEN secret of the npm Release"),
    HelpEntry(
        "/rollout freeze [--all] <duration or until> <reason>",
        "Freeze starts and dispatches (`2h`, or `2026-12-24 18:00` in your time zone); running "
        "rollouts go on. `--all`: every service at once (an approver of every service)",
    ),
    HelpEntry(
        "/rollout unfreeze [--all]", "Lift a `/rollout freeze` (of every service) before it ends"
    ),
    HelpEntry("/rollout lock [reason]", "Hold the release lane: others cannot start or dispatch"),
    HelpEntry("/rollout unlock [reason]", "Release the lane (another approver gives a reason)"),
    HelpEntry(
        "/rollout link <run id or URL>",
        "Follow a run of the workflow whose dispatch the bot could not identify",
    ),
    HelpEntry("/rollout help", "Show this help"),
)
