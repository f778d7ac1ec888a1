"""Review of issue 15 (review15 branch): each test reproduces one defect found and FAILS on
main as it is; the assertion states what a release engineer would expect. Not to be merged
as is: the fixes make them pass."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from test_freeze_sandbox import OTHER
from test_rollout_summary import MINUTE, PERSON, PLAN, T0, ended, event, gate

from bot.adapters.slack.contents_view import summary
from bot.domain.release_contents import (
    ComparedCommit,
    Comparison,
    LastRelease,
    Since,
    release_contents,
)
from bot.domain.rollout_summary import summarize
from bot.services.records import is_machine

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)  # a Saturday