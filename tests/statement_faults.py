"""Statements of the bot's engines that fail as the database fails them, for faults no request
can cause: a connection lost at one write, one run's statements held up past their bound."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError


@contextmanager
def failing(cause: Callable[[str, Any], BaseException | None]) -> Iterator[list[str]]:
    """Each statement `cause` (given the statement and its parameters) gives an error for fails
    with that error, as the driver's; the statements failed, in order."""
    failed: list[str] = []

    def fail(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if (error := cause(statement, params)) is not None:
            failed.append(statement)
            raise OperationalError(statement, params, error)

    event.listen(Engine, "before_cursor_execute", fail)
    try:
        yield failed
    finally:
        event.remove(Engine, "before_cursor_execute", fail)
