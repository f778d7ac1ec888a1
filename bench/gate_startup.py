"""How fast `rollout-bot gate` answers: it replaces shell scripts in CI, so its start-up is
the cost. Runs the real console entry N times and prints the median and p95 wall time."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 30
ARGS = [
    "gate",
    "relay",
    "--baseline-crash-rate",
    "0.001",
    "--current-crash-rate",
    "0.0015",
    "--current-error-rate",
    "0.004",
]


def main() -> None:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bot.cli", *ARGS], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    times.sort()
    p95 = times[int(len(times) * 0.95) - 1]
    print(
        f"gate start-up over {RUNS} runs: median {statistics.median(times) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
