"""`rollout-bot ARGS` run inside the test's process, as its own process would run it.

A test that checks what a command prints and the status it exits with learns the same from
`bot.cli.main.main` called here, with the same arguments, only the given variables in the
environment, the given working directory (a `.env` there is read), stdout and stderr kept, and
the root logger as a new process has it (no handler: a WARNING goes to stderr). A new process
costs a second or more of CPU (it imports the bot again); this costs what the command does. What
only a process shows (signals, a replica of its own, the interpreter's start, `--version`'s
build) stays a process: tests/test_cli.py keeps at least one such test of each command.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from bot.cli.main import main
from bot.logs import QUIETED_LIBRARIES


@contextlib.contextmanager
def loggers_kept() -> Iterator[None]:
    """Give back the root's and the quieted libraries' levels and handlers as they were: a
    command configures logging as its process would (`bot.logs.configure_logging`)."""
    loggers = [logging.getLogger(), *map(logging.getLogger, QUIETED_LIBRARIES)]
    kept = [(logger.level, logger.handlers[:], logger.propagate) for logger in loggers]
    try:
        yield
    finally:
        for logger, (level, handlers, propagate) in zip(loggers, kept, strict=True):
            logger.setLevel(level)
            logger.handlers[:], logger.propagate = handlers, propagate


def run_here(args: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> tuple[int, str, str]:
    """`rollout-bot ARGS` in this process: its exit status, stdout and stderr.

    Blocking, and it runs the command's own event loop: an async test calls it with
    `asyncio.to_thread`. The environment and the working directory are the process's, so no
    other command may run at the same time (tests in one worker run one after the other)."""
    out, err = io.StringIO(), io.StringIO()
    environment, directory = dict(os.environ), Path.cwd()
    root = logging.getLogger()
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        with loggers_kept(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            root.handlers[:] = []
            root.setLevel(logging.WARNING)
            try:
                code = main(list(args))
            except SystemExit as exit:  # argparse's usage errors (an int, as sys.exit gives)
                assert isinstance(exit.code, int), exit.code
                code = exit.code
    finally:
        os.chdir(directory)
        os.environ.clear()
        os.environ.update(environment)
        gc.unfreeze()  # `main` freezes what the command loaded, for a process that ends after
    return code, out.getvalue(), err.getvalue()
