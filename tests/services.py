"""What a test does when a service or binary it needs is missing from the machine."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(message: str) -> NoReturn:
    """Skip the test, or fail it when REQUIRE_SERVICES=1 (CI, `.ci/run`): a required service
    that is missing there is a broken machine, not a reason to pass."""
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)
