"""The checks the settings' groups (`bot.settings`) share or make across variables: the Slack
ids' rules, a signing key, the settings of a bot of one service against ROLLOUT_SERVICES, the
metrics sources the plans read, and problems listed together under their variables' names."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from pydantic import AnyHttpUrl, SecretStr, ValidationError, ValidationInfo
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from bot.domain.errors import PlanError, RolloutError, ServicesError
from bot.plan_file import load_plan
from bot.service_file import APPROVER_ID, APPROVER_RULE, CHANNEL_ID, CHANNEL_RULE, load_services


class SlackIds(NamedTuple):
    """What a list of Slack ids must hold, and what to say when it does not."""

    pattern: re.Pattern[str]
    bad: str


SLACK_IDS = {
    "release_channels": SlackIds(CHANNEL_ID, CHANNEL_RULE),
    "rollout_approvers": SlackIds(APPROVER_ID, APPROVER_RULE),
}
ONE_SERVICE = ("GITHUB_REPOSITORY", "ROLLOUT_PLAN", "RELEASE_CHANNELS", "ROLLOUT_APPROVERS")
"""The one service of a bot without ROLLOUT_SERVICES; with it, each service names its own."""
_NOT_BOTH = (
    f"each service of ROLLOUT_SERVICES names its own ({', '.join(ONE_SERVICE)} are for a bot "
    "of one service): remove {name}"
)


def a_folder(url: AnyHttpUrl) -> AnyHttpUrl:
    """The URL ending in `/`: slack_sdk joins a method's name to its base URL, and without
    the slash `.../api` would lose its last part (`.../chat.postMessage`)."""
    return url if str(url).endswith("/") else AnyHttpUrl(f"{url}/")


def given(value: object) -> bool:
    """Whether a raw setting was given (an empty value is not)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, tuple):
        return bool(value)
    return value is not None and (not isinstance(value, str) or bool(value.strip()))


def signing_key(value: SecretStr | None, *, fix: str) -> SecretStr | None:
    """A signing key as given: a blank one signs what anyone sends, so it is refused (`fix`
    says what to do), never taken as a key."""
    if value is not None and not value.get_secret_value().strip():
        raise ValueError(f"empty: anyone can sign with an empty key; {fix}")
    return value


def with_problems(
    title: str, errors: Sequence[ErrorDetails], problems: Mapping[str, str]
) -> ValidationError:
    """The settings' errors and `problems` (by environment name) as one ValidationError."""
    details = [
        InitErrorDetails(type=e["type"], loc=e["loc"], input=e["input"], ctx=e.get("ctx", {}))
        for e in errors
    ]
    details += [
        InitErrorDetails(
            type=PydanticCustomError("github_settings", text),
            loc=(name.lower(),),
            input=None,
        )
        for name, text in problems.items()
    ]
    return ValidationError.from_exception_data(title, details)


def one_service_problem(value: object, info: ValidationInfo, *, required: bool = True) -> bool:
    """Whether a setting of the one service has nothing more to check: it is not given with
    ROLLOUT_SERVICES, and given without it (when `required`); raises what is wrong."""
    if "rollout_services" not in info.data:  # given, and wrong: its problems are said too
        if given(value):
            raise ValueError(_NOT_BOTH.format(name=(info.field_name or "").upper()))
        return True
    if info.data["rollout_services"] is not None:
        if given(value):
            raise ValueError(_NOT_BOTH.format(name=(info.field_name or "").upper()))
        return True
    if required and not given(value):
        raise ValueError("missing")
    return not given(value)


def loaded(path: Path, load: Callable[[Path], object], refused: type[RolloutError]) -> Path:
    """`path`, once `load` (what the bot does with the file at start) took it; its `refused`
    error, which names the file, each key and its problem, becomes the setting's."""
    try:
        load(path)
    except refused as error:
        raise ValueError(error.message) from None
    return path


def service_owners(info: ValidationInfo) -> set[str]:
    """The owners of the services' repositories (none without a valid services file)."""
    path = info.data.get("rollout_services")
    if path is None:
        return set()
    try:
        return {service.repository.split("/")[0].casefold() for service in load_services(path)}
    except ServicesError:
        return set()


def metrics_sources(info: ValidationInfo) -> set[str]:
    """The metrics sources of the configured plans (none when a plan itself is invalid)."""
    try:
        if info.data.get("rollout_services") is not None:
            plans = [service.plan for service in load_services(info.data["rollout_services"])]
        elif "rollout_plan" in info.data and "rollout_services" in info.data:
            plans = [load_plan(info.data["rollout_plan"])]
        else:
            return set()
    except (PlanError, ServicesError):
        return set()
    return {track.metrics.source for plan in plans for track in plan.tracks.values()}
