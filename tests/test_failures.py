"""A failure a later try repairs is one WARNING line; a bug is an ERROR with its traceback."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from sqlalchemy.exc import InternalError

from bot.domain.controls import NothingDone
from bot.services.failures import log_failure

LOG = logging.getLogger("bot.test.failures")


def test_a_connection_killed_mid_operation_is_one_warning_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What asyncpg raised through SQLAlchemy when the chaos run killed a connection mid-delivery.
    killed = InternalError(
        "SELECT rollouts.id FROM rollouts WHERE rollouts.id = $1",
        {"id_1": "r-1"},
        Exception("cannot switch to state 12; another operation (2) is in progress"),
    )
    with caplog.at_level(logging.INFO, logger=LOG.name):
        log_failure(LOG, "acting on webhook d-1 failed", killed)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith("acting on webhook d-1 failed: InternalError:")
    assert "SELECT" not in record.getMessage()  # no SQL statement in the line


def test_a_connection_killed_while_the_pool_sets_it_up_is_one_warning_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What the App chaos run's replica logged with a traceback: the connection was terminated
    # while SQLAlchemy's connect hook set up its JSON codec, where asyncpg's error is not
    # wrapped. The scheduler tried again 5 s later, as after any database failure.
    closed = asyncpg.InterfaceError("connection is closed")
    with caplog.at_level(logging.INFO, logger=LOG.name):
        log_failure(LOG, "scheduler iteration failed (timers); retrying in 0:00:05", closed)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().endswith("InterfaceError: connection is closed")


def test_a_bug_is_an_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOG.name):
        log_failure(LOG, "acting on webhook d-2 failed", KeyError("state"))
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_a_claim_whose_answer_was_lost_is_one_warning_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A scheduled dispatch whose claim lost its answer is tried again, as after a dropped
    connection: nothing was done (`NothingDone`), so it is no bug."""
    lost = NothingDone("The bot lost its connection to its database … nothing was done. Try again.")
    with caplog.at_level(logging.INFO, logger=LOG.name):
        log_failure(LOG, "timer 7 (scheduled dispatch) failed", lost)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "NothingDone: The bot lost its connection" in record.getMessage()
