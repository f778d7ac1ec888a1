"""What a Re-check's flags line says when the release tag moved, was deleted or was created
since its preflight read it (`bot.services.preflight_tag.flags_after_move`)."""

from __future__ import annotations

from bot.domain.rollout import Check, CheckState
from bot.services.preflight_tag import flags_after_move

CONFIRMED = Check(CheckState.PASS, "(--flags-ready)", confirmed_by="U1")
OLD, NEW = "a" * 40, "b" * 40


def test_a_tag_still_there_or_not_known_keeps_the_flags() -> None:
    assert flags_after_move("v1", CONFIRMED, was=OLD, now=OLD) is CONFIRMED
    assert flags_after_move("v1", CONFIRMED, was=None, now=NEW) is CONFIRMED
    assert flags_after_move("v1", CONFIRMED, was=OLD, now=None) is CONFIRMED


def test_a_moved_tag_names_both_commits() -> None:
    flags = flags_after_move("v1", CONFIRMED, was=OLD, now=NEW)
    assert flags.state is CheckState.PENDING and flags.confirmed_by is None
    assert f"`v1` now points at another commit: `{OLD[:12]}` → `{NEW[:12]}`" in flags.detail


def test_a_deleted_tag_is_not_said_to_point_at_another_commit() -> None:
    """Said before: "`v1` now points at another commit: … → no commit (the tag is gone from
    GitHub)", and waited for the flags "for the new one": the tag points at none."""
    flags = flags_after_move("v1", CONFIRMED, was=OLD, now="")
    assert flags.state is CheckState.PENDING
    gone = f"`v1` is gone from GitHub (its preflight read it at `{OLD[:12]}`)"
    assert flags.detail.startswith(gone), flags.detail
    assert "another commit" not in flags.detail and "new one" not in flags.detail


def test_a_tag_created_since_is_not_said_to_have_moved() -> None:
    """Said before: "now points at another commit: no commit → … (moved since its preflight
    read it)", and spoke of "the old commit": there was none."""
    flags = flags_after_move("v1", CONFIRMED, was="", now=NEW)
    assert flags.state is CheckState.PENDING
    assert flags.detail.startswith(f"`v1` now points at `{NEW[:12]}`: GitHub had no such tag")
    assert "moved" not in flags.detail and "old commit" not in flags.detail
