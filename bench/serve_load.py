"""How long `rollout-bot serve` takes to load its modules, the bulk of a replica's start: through
the command's own loader (`bot.cli.main._load`: the cyclic collector off while they load, what
they made frozen after) beside a plain import with the collector running, interleaved, N runs
of each in a fresh interpreter. Prints the median and p95 CPU and wall time of both."""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time

RUNS = 20
WAYS = {
    "plain import": "import bot.cli.serve",
    "rollout-bot's loader": "from bot.cli.main import _load; _load('serve')",
}


def _one(code: str) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh interpreter running `code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _summary(values: list[float]) -> str:
    p95 = statistics.quantiles(values, n=20, method="inclusive")[-1]
    return f"median {statistics.median(values) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    walls: dict[str, list[float]] = {way: [] for way in WAYS}
    cpus: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(runs):
        for way, code in WAYS.items():
            wall, cpu = _one(code)
            walls[way].append(wall)
            cpus[way].append(cpu)
    for way in WAYS:
        print(
            f"serve's modules, {way} ({runs} runs): wall {_summary(walls[way])}; "
            f"CPU {_summary(cpus[way])}"
        )


if __name__ == "__main__":
    main()
