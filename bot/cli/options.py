"""The operator commands' argument parser: argparse, but an option that takes one value is
refused when given twice (`--service a --service b`), where argparse keeps the last one and
the command would act on a service, stage or tag the operator may not have meant."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

_GIVEN = "_options_given"
"""Where a parse keeps which single-valued options it has seen (removed before it returns)."""


class StoredOnce(argparse.Action):
    """argparse's `store`, refusing a second value for the same option."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        given: dict[str, tuple[str, object]] = namespace.__dict__.setdefault(_GIVEN, {})
        if self.dest in given:
            first, value = given[self.dest]
            again = option_string or "/".join(self.option_strings)
            parser.error(
                f"{again} is given twice ({first} {value!r}, then {again} {values!r}); it takes "
                "one value: give it once"
            )
        given[self.dest] = (option_string or self.dest, values)
        setattr(namespace, self.dest, values)


class OperatorParser(argparse.ArgumentParser):
    """An operator command's arguments; each option that takes one value may be given once."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        optional = bool(args) and all(str(name).startswith("-") for name in args)
        if optional and kwargs.get("action", "store") == "store":
            kwargs["action"] = StoredOnce
        return super().add_argument(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        options, extra = super().parse_known_args(args, namespace)
        vars(options).pop(_GIVEN, None)
        return options, extra
