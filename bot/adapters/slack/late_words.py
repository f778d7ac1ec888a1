"""A gate run late, in the thread's one-line verdicts: how late, and which of the two stretches
it read decided (the card says it at length: `gate_views`)."""

from __future__ import annotations

from bot.domain.gate_report import window_length
from bot.domain.late_gate import LateGate


def judged_late(late: LateGate | None) -> str:
    """` Judged 2h after its window ended: the latest 30m decided (ROLLBACK; its window gave
    PASS).`, or nothing for a gate on time."""
    if late is None:
        return ""
    end, (latest_start, latest_end) = late.window[1], late.latest
    window, latest = "its window", f"the latest {window_length(latest_start, latest_end)}"
    if late.latest_decided:
        decided = f"{latest} decided ({late.latest_verdict}; {window} gave {late.window_verdict})"
    else:
        decided = f"{window} decided ({late.window_verdict}; {latest} gave {late.latest_verdict})"
    return (
        f" :hourglass: Judged {window_length(end, latest_end)} after its window ended: {decided}."
    )
