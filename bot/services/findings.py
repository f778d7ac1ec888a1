"""What one check of `rollout-bot doctor` found: ✓ and what was found, or ✗ and the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    ok: bool
    check: str
    """What was checked, and on success what was found."""
    fix: str = ""
    """What to do about a failure."""

    def line(self) -> str:
        return f"✓ {self.check}" if self.ok else f"✗ {self.check}: {self.fix}"


def passed(check: str) -> Finding:
    return Finding(True, check)


def failed(check: str, fix: str) -> Finding:
    return Finding(False, check, fix)
