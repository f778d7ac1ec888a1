"""The chaos test: three `rollout-bot serve` replicas on one fresh PostgreSQL database, driven
by signed Slack requests and GitHub webhooks sent to any replica, while replicas are SIGKILLed
and restarted, database connections are terminated, and the sandbox GitHub and Slack fail
some of their requests. Every rollout's metrics are scripted, so its end is known in advance.

Afterwards the evidence (the audit trail, GitHub's reviews and dispatches, what Slack
received, the replicas' logs) is checked against the invariants of issue 11 and printed as
figures. The check functions take plain records, so a test can hand them a bad one.

    python -m sandbox.chaos --seed 7 --duration 300 [--github-faults 0.2 --slack-faults 0.1]

(`make chaos SEED=7 DURATION=300`); `tests/test_chaos.py` runs a bounded form.
"""
