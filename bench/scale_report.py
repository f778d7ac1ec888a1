"""What the many-services benchmark (`services_scale.py`) measured of one mode, and how it
prints it."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ack_latency import percentile

HOUR = 3600.0


@dataclass
class ModeFigures:
    """What one mode (webhooks, or polling only) measured."""

    mode: str
    services: int
    recorded: list[float] = field(default_factory=list)
    """Seconds from each window's due time to its gate verdict's save."""
    posted: list[float] = field(default_factory=list)
    """Seconds from each window's due time to its verdict's delivery in the thread."""
    written: list[float] = field(default_factory=list)
    """Seconds from each window's due time to its timer's write (negative: written before)."""
    known: list[float] = field(default_factory=list)
    """Seconds from the later of each window's due time and its timer's write to the verdict's
    save: the lateness that is the bot's own."""
    completed: int = 0
    rollout_requests: Counter[str] = field(default_factory=Counter)
    rollout_kinds: Counter[str] = field(default_factory=Counter)
    rollout_seconds: float = 0.0
    rollout_cpu: list[float] = field(default_factory=list)
    """Per replica, CPU seconds per second from the first start to the last rollout's end."""
    simulators_cpu: float = 0.0
    """CPU seconds per second of this process (GitHub and Slack simulators, the webhook
    sender) while the rollouts ran: near 1, it, not the bot, sets the pace."""
    deliveries: int = 0
    """Webhook deliveries while the rollouts ran to their end."""
    rollout_rss: list[int] = field(default_factory=list)
    """kB per replica once every rollout ended (VmRSS), and the peak (VmHWM) after it."""
    rollout_peak: list[int] = field(default_factory=list)
    rollout_charts: list[tuple[float, int]] = field(default_factory=list)
    """Per replica, its chart worker's CPU seconds per second while the rollouts ran, and
    its kB (VmRSS) once they ended (the replica's own figures leave it out)."""
    idle_cpu: list[float] = field(default_factory=list)
    """Per replica, CPU seconds per second over the idle measurement."""
    idle_rss: list[int] = field(default_factory=list)
    idle_charts: list[tuple[float, int]] = field(default_factory=list)
    """Per replica, its chart worker's CPU share and kB over the idle measurement."""
    idle_requests: Counter[str] = field(default_factory=Counter)
    idle_kinds: Counter[str] = field(default_factory=Counter)
    idle_seconds: float = 0.0


def charts_row(charts: Sequence[tuple[float, int]]) -> str:
    cpu = " | ".join(f"{share * 100:.1f} %" for share, _ in charts)
    return f"{mb([kb for _, kb in charts])}, {cpu} of a core (niced +10)"


def mb(kbs: Sequence[int]) -> str:
    return " | ".join(f"{kb / 1024:.0f}" for kb in kbs) + " MB"


def spread(seconds: Sequence[float]) -> str:
    """p50 / p99 / max of `seconds`."""
    return f"{percentile(seconds, 50):.2f} / {percentile(seconds, 99):.2f} / {max(seconds):.2f} s"


def rows(figures: ModeFigures) -> Iterator[tuple[str, str]]:
    done = figures.completed
    counted = figures.rollout_requests["counted"]
    unchanged = figures.rollout_requests["not_modified"]
    idle_hour = HOUR / figures.idle_seconds
    yield (
        "window-end lateness, verdict saved (p50 / p99 / max)",
        f"{spread(figures.recorded)} over {len(figures.recorded)} windows (goal p99 < 1 s)",
    )
    yield (
        "window-end lateness, verdict posted (p50 / p99 / max)",
        spread(figures.posted),
    )
    yield (
        "window timers written after their due time (p50 / p99 / max)",
        spread(figures.written),
    )
    yield (
        "verdict saved after the due time or the timer's write, the later (p50 / p99 / max)",
        spread(figures.known),
    )
    yield (
        "window ends per second while the rollouts ran",
        f"{len(figures.recorded) / figures.rollout_seconds:.2f}",
    )
    yield (
        "GitHub requests per complete rollout",
        f"{counted / done:.1f} counted + {unchanged / done:.1f} 304s (goal <= 60 counted)",
    )
    yield ("webhook deliveries per complete rollout", f"{figures.deliveries / done:.1f}")
    yield (
        "GitHub requests per hour while rollouts complete",
        f"{counted * HOUR / figures.rollout_seconds:.0f} counted + "
        f"{unchanged * HOUR / figures.rollout_seconds:.0f} 304s "
        f"({done} rollouts in {figures.rollout_seconds:.0f} s)",
    )
    yield (
        "RSS per replica after the rollouts (peak)",
        f"{mb(figures.rollout_rss)} ({mb(figures.rollout_peak)}) (goal < 250 MB)",
    )
    yield (
        "CPU per replica while the rollouts ran",
        " | ".join(f"{share * 100:.0f} %" for share in figures.rollout_cpu) + " of a core",
    )
    yield (
        "CPU of the simulators' process (GitHub, Slack, webhooks) meanwhile",
        f"{figures.simulators_cpu * 100:.0f} % of a core (one Python process: near 100 %, "
        "it sets the pace)",
    )
    yield (
        "chart worker per replica: RSS after the rollouts, CPU while they ran",
        charts_row(figures.rollout_charts),
    )
    yield (
        f"CPU per replica, {2 * figures.services} tracks in long windows",
        " | ".join(f"{share * 100:.2f} %" for share in figures.idle_cpu)
        + f" of a core over {figures.idle_seconds:.0f} s (goal < 2 %)",
    )
    yield ("RSS per replica in long windows", mb(figures.idle_rss))
    yield ("chart worker per replica in long windows: RSS, CPU", charts_row(figures.idle_charts))
    yield (
        "GitHub requests per hour in long windows",
        f"{figures.idle_requests['counted'] * idle_hour:.0f} counted "
        f"(of a 5,000/h budget) + {figures.idle_requests['not_modified'] * idle_hour:.0f} 304s",
    )


def report(figures: ModeFigures, options: argparse.Namespace) -> None:
    print(
        f"\n{figures.mode}: {options.services} services, one two-track rollout each, started "
        + (f"over {options.spread:.0f} s" if options.spread else "at once")
        + f", windows {options.window} s, GITHUB_POLL_INTERVAL {options.poll_interval} s, "
        "PostgreSQL, 2 serve replicas (figures per replica: first | second)",
        flush=True,
    )
    for name, value in rows(figures):
        print(f"  {name}: {value}")
    for phase, kinds in (("rollouts", figures.rollout_kinds), ("long windows", figures.idle_kinds)):
        shown = ", ".join(f"{kind} {n}" for kind, n in kinds.most_common(8))
        print(f"  GitHub requests, {phase}: {shown}", flush=True)
