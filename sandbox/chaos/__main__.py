"""`python -m sandbox.chaos`: the long chaos run from the command line (`make chaos`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from sandbox import chaos
from sandbox.chaos.checks import report
from sandbox.chaos.run import run_chaos
from sandbox.chaos.script import Faults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.chaos",
        description=chaos.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (at least)")
    parser.add_argument("--rollouts", type=int, default=10, help="at least this many")
    parser.add_argument("--github-faults", type=float, default=Faults.github)
    parser.add_argument("--slack-faults", type=float, default=Faults.slack)
    parser.add_argument("--kill-every", type=float, default=Faults.kill_every)
    parser.add_argument("--db-kills", type=int, default=Faults.db_kills)
    parser.add_argument(
        "--github-app",
        action="store_true",
        help="the replicas as a GitHub App, every stage held by its protection rule",
    )
    args = parser.parse_args(argv)
    faults = Faults(
        github=args.github_faults,
        slack=args.slack_faults,
        kill_every=args.kill_every or None,
        db_kills=args.db_kills,
    )
    workdir = Path(tempfile.mkdtemp(prefix="rollout-bot-chaos-"))
    evidence, findings = asyncio.run(
        run_chaos(
            workdir=workdir,
            seed=args.seed,
            faults=faults,
            rollouts=args.rollouts,
            duration=args.duration,
            github_app=args.github_app,
        )
    )
    sys.stdout.write(report(evidence, findings, seed=args.seed) + "\n")
    sys.stdout.write(f"logs: {workdir}\n")
    return 0 if all(f.ok for f in findings) else 1


if __name__ == "__main__":
    sys.exit(main())
