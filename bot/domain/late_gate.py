"""A gate run late: the two stretches it read and the verdict each gave (`judge_late` in
`bot.domain.metrics` decides; the card, the thread and the audit trail tell it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.gate import Verdict


@dataclass(frozen=True)
class LateGate:
    """A gate run more than `LATE_GATE` after its window's end: the two stretches it read, its
    window and the latest one of the same length, and the verdict each gave."""

    window: tuple[datetime, datetime]
    window_verdict: Verdict
    latest: tuple[datetime, datetime]
    latest_verdict: Verdict

    @property
    def latest_decided(self) -> bool:
        """The latest stretch's verdict was the worse (on a tie, the window's decides)."""
        return _SEVERITY[self.latest_verdict] > _SEVERITY[self.window_verdict]


_SEVERITY = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.ROLLBACK: 2, Verdict.KILL_SWITCH: 2}
