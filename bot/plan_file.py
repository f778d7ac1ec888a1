"""The rollout plan's file: reads its YAML (or the built-in plan), validates it into the
domain's `RolloutPlan`, and words every problem of a bad plan at once, each under the dotted
path of its key (`tracks.relay.stages[1].observe.window: '6o' is not a duration ...`).
`read_model` does the same for any YAML file read into a pydantic model (the services file).
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from bot.domain.errors import PlanError, RolloutError
from bot.domain.plan import RolloutPlan
from bot.domain.plan.fields import Path_, Problems, dotted

# libyaml's parser when PyYAML was built with it (ten times faster), the Python one otherwise.
try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


def load_plan(path: Path | None) -> RolloutPlan:
    """The plan in the YAML file at `path`, or the built-in Scriptum plan when None."""
    if path is None:
        default = resources.files("bot.domain").joinpath("default_plan.yml")
        return parse_plan(default.read_text(encoding="utf-8"), "the built-in plan")
    return parse_plan(read_text(path, f"the rollout plan {path}", PlanError), str(path))


def read_text(path: Path, what: str, error: type[RolloutError]) -> str:
    """The UTF-8 text of the file at `path`, `what` names it when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as problem:
        raise error(f"cannot read {what}: {problem.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"cannot read {what}: it is not UTF-8 text") from None


@functools.lru_cache(maxsize=16)
def parse_plan(text: str, source: str) -> RolloutPlan:
    """The plan in `text`; `source` names it in errors. Raises PlanError listing every problem.
    Kept for the same text (a frozen plan): a start reads the plan in several checks."""
    return read_model(
        text, RolloutPlan, what=f"the rollout plan {source}", keys="docs/plan.md", error=PlanError
    )


M = TypeVar("M", bound=BaseModel)


def read_model(text: str, model: type[M], *, what: str, keys: str, error: type[RolloutError]) -> M:
    """`text`, YAML, validated into `model`; raises `error` listing every problem at its dotted
    path. `what` names the file in messages, `keys` the document listing its keys."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as problem:
        raise error(f"{what} is not valid YAML: {_yaml_problem(problem)}") from None
    if data is None:
        raise error(f"{what} is empty")
    try:
        return model.model_validate(data)
    except ValidationError as invalid:
        raise error(invalid_lines(what, problem_lines(invalid, data, keys=keys))) from None


def invalid_lines(what: str, lines: list[str]) -> str:
    """The message of a file with problems: one indented line per problem."""
    problems = "\n".join(f"  {line}" for line in lines)
    return f"{what} is invalid:\n{problems}"


class _StrictLoader(_SafeLoader):
    """A safe loader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            if isinstance(key, Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    return " ".join(str(error).split())


def problem_lines(error: ValidationError, data: object, *, keys: str) -> list[str]:
    """Each of pydantic's errors as `dotted.path: problem`, the path through the YAML."""
    lines: list[str] = []
    for detail in error.errors():
        at = _plan_path(detail["loc"], data)
        kind = detail["type"]
        context = detail.get("ctx", {})
        if kind == "value_error" and isinstance(context.get("error"), Problems):
            problems: list[tuple[Path_, str]] = context["error"].problems
            lines.extend(f"{dotted((*at, *path))}: {problem}" for path, problem in problems)
        elif kind == "union_tag_not_found":
            lines.append(f"{dotted(at)}: needs a {_discriminator(context)} key")
        elif kind == "union_tag_invalid":
            key = _discriminator(context).strip("'")
            problem = f"{context['tag']!r} is not one of {context['expected_tags']}"
            lines.append(f"{dotted((*at, key))}: {problem}")
        else:
            lines.append(f"{dotted(at)}: {_problem(kind, detail, keys)}")
    return lines


def _problem(kind: str, detail: Mapping[str, Any], keys: str) -> str:
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"unknown key ({keys} lists every key)"
    if kind == "value_error":
        return str(detail["ctx"]["error"])
    if kind == "too_short":
        return "must not be empty"
    shown = repr(detail["input"])
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    message = str(detail["msg"])
    return f"{message[:1].lower()}{message[1:]}, not {shown}"


def _discriminator(context: Mapping[str, Any]) -> str:
    # pydantic names a discriminator field with an alias as "'from_' | 'from'"; YAML uses the alias.
    return str(context["discriminator"]).split(" | ")[-1]


def _plan_path(loc: tuple[int | str, ...], data: object) -> Path_:
    """pydantic's location as a path through the YAML: without the union tags it inserts."""
    path: list[str | int] = []
    node: object = data
    for index, part in enumerate(loc):
        found, child = _child(node, part)
        if not found and isinstance(node, dict) and index < len(loc) - 1:
            continue  # a tag naming the member of a discriminated union, not a key of the plan
        node = child
        path.append(part)
    return tuple(path)


def _child(node: object, part: int | str) -> tuple[bool, object]:
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None
