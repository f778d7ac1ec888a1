"""The sandbox Slack's views: how Slack describes a view, and views.open, views.update and
views.publish on a workspace's modals and App Home tabs."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

from sandbox.slack_records import VIEW_BLOCKS, ApiResult, Identity, slack_error, str_arg

TRIGGER_LIFETIME = 3.0
"""Seconds a trigger_id can open a modal after the click that made it (Slack: 3 seconds)."""


class Views(Identity, Protocol):
    """A workspace's views by id, each user's App Home tab, and the trigger_ids it issued
    (with the time each was issued, on `trigger_clock`)."""

    views: dict[str, dict[str, Any]]
    home_tabs: dict[str, dict[str, Any]]
    triggers: dict[str, float | None]
    trigger_clock: Callable[[], float]


def view_object(
    workspace: Identity,
    view: dict[str, Any],
    *,
    view_id: str,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """The view as Slack returns and stores it: the app's fields plus Slack's own."""
    return {
        "id": view_id,
        "team_id": workspace.team_id,
        "type": view["type"],
        "blocks": view.get("blocks", []),
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "state": {"values": {}},
        "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
        "title": view.get("title"),
        "close": view.get("close"),
        "submit": view.get("submit"),
        "clear_on_close": bool(view.get("clear_on_close", False)),
        "notify_on_close": bool(view.get("notify_on_close", False)),
        "external_id": view.get("external_id", ""),
        "root_view_id": previous["root_view_id"] if previous else view_id,
        "previous_view_id": None,
        "app_id": workspace.app_id,
        "app_installed_team_id": workspace.team_id,
        "bot_id": workspace.bot_id,
    }


def view_problem(view: Any, expected_type: str) -> str | None:
    if not isinstance(view, dict):
        return "missing required field: view"
    if view.get("type") != expected_type:
        return f"view type must be {expected_type}"
    if not isinstance(view.get("blocks", []), list):
        return "blocks must be a list"
    if len(view.get("blocks", [])) > VIEW_BLOCKS:
        return f"must provide at most {VIEW_BLOCKS} items [json-pointer:/view/blocks]"
    if expected_type == "modal" and not isinstance(view.get("title"), dict):
        return "missing required field: title"
    return None


def new_view_id() -> str:
    return "V" + secrets.token_hex(5).upper()


def _refused(args: dict[str, Any], field: str, view_type: str) -> ApiResult | None:
    """Slack's answer to a views call without its `field` or whose `view` is not a valid view
    of `view_type`; None when both are right."""
    if not str_arg(args, field):
        return slack_error("invalid_arguments", f"missing required field: {field}")
    problem = view_problem(args.get("view"), view_type)
    return None if problem is None else slack_error("invalid_arguments", problem)


def _exchanged(workspace: Views, trigger_id: str) -> str | None:
    """Take `trigger_id` for a modal: None, or Slack's error when it is spent
    (`exchanged_trigger_id`) or older than `TRIGGER_LIFETIME` (`expired_trigger_id`). A
    trigger_id this server did not issue (a payload built without it) counts as fresh."""
    if trigger_id not in workspace.triggers:
        return None
    issued = workspace.triggers[trigger_id]
    if issued is None:
        return "exchanged_trigger_id"
    if workspace.trigger_clock() - issued > TRIGGER_LIFETIME:
        return "expired_trigger_id"
    workspace.triggers[trigger_id] = None
    return None


def open_view(workspace: Views, args: dict[str, Any]) -> ApiResult:
    """views.open: a modal shown to whoever clicked (its `trigger_id`, good for one modal
    within 3 seconds of the click)."""
    refused = _refused(args, "trigger_id", "modal")
    if refused is not None:
        return refused
    trigger_id = str_arg(args, "trigger_id")
    spent = _exchanged(workspace, trigger_id)
    if spent is not None:
        return slack_error(spent)
    view_id = new_view_id()
    workspace.views[view_id] = view_object(workspace, args["view"], view_id=view_id, previous=None)
    return {"ok": True, "view": workspace.views[view_id]}


def update_view(workspace: Views, args: dict[str, Any]) -> ApiResult:
    """views.update: a view replaced by its id or external id, refused on a stale `hash`."""
    view_id, external_id = str_arg(args, "view_id"), str_arg(args, "external_id")
    if not view_id and not external_id:
        return slack_error("invalid_arguments", "view_id or external_id is required")
    current = workspace.views.get(view_id) or next(
        (v for v in workspace.views.values() if external_id and v["external_id"] == external_id),
        None,
    )
    if current is None:
        return slack_error("not_found")
    problem = view_problem(args.get("view"), current["type"])
    if problem is not None:
        return slack_error("invalid_arguments", problem)
    if str_arg(args, "hash") and args["hash"] != current["hash"]:
        return slack_error("hash_conflict")
    updated = view_object(workspace, args["view"], view_id=current["id"], previous=current)
    workspace.views[current["id"]] = updated
    return {"ok": True, "view": updated}


def publish_view(workspace: Views, args: dict[str, Any]) -> ApiResult:
    """views.publish: a user's App Home tab, refused on a stale `hash`."""
    refused = _refused(args, "user_id", "home")
    if refused is not None:
        return refused
    user_id = str_arg(args, "user_id")
    current = workspace.home_tabs.get(user_id)
    if current is not None and str_arg(args, "hash") and args["hash"] != current["hash"]:
        return slack_error("hash_conflict")
    view_id = current["id"] if current else new_view_id()
    view = view_object(workspace, args["view"], view_id=view_id, previous=current)
    workspace.home_tabs[user_id] = workspace.views[view_id] = view
    return {"ok": True, "view": view}
