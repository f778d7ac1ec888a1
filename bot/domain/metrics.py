"""Figures a gate is decided on: the rates observed over a window and the sample behind them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Figures:
    """Rates observed over a stage's window (fractions: 0.01 is 1%)."""

    crash_rate: Decimal | None
    error_rate: Decimal | None = None
    sample: int | None = None
    """How many requests or sessions the rates come from; None when the source cannot tell."""


@dataclass(frozen=True)
class Reading:
    """What a metrics source read for one stage: its figures and the track's baseline."""

    baseline_crash: Decimal | None
    figures: Figures
    source: str
