"""What the test suite costs in CPU-seconds, every process it starts counted (README, How long
`make test` takes).

    python tests/cpu_seconds.py OUT -- .venv/bin/pytest -q -n 4 [tests ...]

runs the command as a child subreaper: every process below it is reaped here when it ends, a
replica's chart worker orphaned by a SIGKILL of the replica included, which `/usr/bin/time`
and `getrusage` in the workers do not see. It prints user + system CPU-seconds of them all and
the wall time. With `-p cpu_seconds` (and `PYTHONPATH=tests`) in the pytest command, each test
process also writes, per test (setup, call and teardown), its own CPU and that of the children
it reaped meanwhile to `OUT/<worker>.json`; then it prints the modules that cost most.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

PR_SET_CHILD_SUBREAPER = 36
OUT = "CPU_SECONDS_OUT"
"""The environment variable that tells the test processes where to write their figures."""


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, reaped.ru_utime + reaped.ru_stime


_tests: list[dict[str, object]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    before, started = _cpu(), time.monotonic()
    yield
    after = _cpu()
    own, children = after[0] - before[0], after[1] - before[1]
    _tests.append(
        {"id": item.nodeid, "own": own, "children": children, "wall": time.monotonic() - started}
    )


def pytest_sessionfinish() -> None:
    folder = os.environ.get(OUT)
    if folder and _tests:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        (Path(folder) / f"{worker}.json").write_text(json.dumps(_tests), encoding="utf-8")


def _modules(folder: Path, count: int = 15) -> list[str]:
    cost: Counter[str] = Counter()
    for path in folder.glob("*.json"):
        for test in json.loads(path.read_text(encoding="utf-8")):
            cost[test["id"].partition("::")[0]] += test["own"] + test["children"]
    return [f"{seconds:7.1f}  {module}" for module, seconds in cost.most_common(count)]


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    started = time.monotonic()
    command = subprocess.Popen(argv[2:], env=os.environ | {OUT: str(folder)})  # noqa: S603
    status = 1
    while True:  # reap every descendant, the orphans included, until none is left
        try:
            pid, waited = os.wait()
        except ChildProcessError:
            break
        if pid == command.pid:
            status = os.waitstatus_to_exitcode(waited)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print("\n".join(_modules(folder)))
    print(
        f"CPU-seconds {used.ru_utime + used.ru_stime:.1f} (user {used.ru_utime:.1f}, system "
        f"{used.ru_stime:.1f}), wall {time.monotonic() - started:.0f} s, exit status {status}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
