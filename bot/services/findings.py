"""What one check of `rollout-bot doctor` found: ✓ and what was found, ✗ and the fix, or ⚠ (a
risk, not a failure) and the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    ok: bool
    check: str
    """What was checked, and on success what was found."""
    fix: str = ""
    """What to do about a failure or a warning."""
    warning: bool = False
    """Not a failure (the doctor still exits 0), but a risk worth acting on: ⚠ and the fix."""

    def line(self) -> str:
        if self.warning:
            return f"⚠ {self.check}: {self.fix}"
        return f"✓ {self.check}" if self.ok else f"✗ {self.check}: {self.fix}"


def passed(check: str) -> Finding:
    return Finding(True, check)


def failed(check: str, fix: str) -> Finding:
    return Finding(False, check, fix)


def warned(check: str, fix: str) -> Finding:
    return Finding(True, check, fix, warning=True)
