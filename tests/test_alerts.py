"""The alert rules an operator installs (ops/alerts.yml) are valid Prometheus rules, and each
alert fires on what should wake someone and stays quiet otherwise (ops/alerts.test.yml).

promtool comes with Debian's `prometheus` package (`.ci/run` installs it): without it this
test fails rather than skips, so a CI machine cannot pass it by not checking.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sandbox.prometheus_exporter import promtool_binary

OPS = Path(__file__).resolve().parent.parent / "ops"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = promtool_binary()
    if found is None:
        pytest.fail("promtool is missing: apt-get install prometheus (Debian's package ships it)")
    return subprocess.run(  # noqa: S603 - promtool on files of this repository
        [found, *args], capture_output=True, text=True, check=False, cwd=OPS
    )


def test_the_alert_rules_are_valid() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 17 rules found" in checked.stdout


def test_each_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test_and_a_runbook_section() -> None:
    rules = (OPS / "alerts.yml").read_text(encoding="utf-8")
    tests = (OPS / "alerts.test.yml").read_text(encoding="utf-8")
    runbook = (OPS.parent / "docs" / "observability.md").read_text(encoding="utf-8")
    alerts = [line.split(":", 1)[1].strip() for line in rules.splitlines() if "- alert:" in line]
    assert len(alerts) == 17
    for alert in alerts:
        assert f"alertname: {alert}\n" in tests, alert
        assert f"### {alert}\n" in runbook, alert
