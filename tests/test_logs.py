"""The production log setup: rollout ids on every line about a rollout, secrets scrubbed."""

from __future__ import annotations

import json
import logging

import pytest

from bot.logs import REDACTED, configure_logging, rollout_context


def test_json_lines_carry_the_rollout_id_and_never_a_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="INFO", fmt="json", secrets=["s3cr3t-value-123"])
    log = logging.getLogger("bot.test")
    with rollout_context("r-0123456789ab"):
        log.info("approving with %s", "s3cr3t-value-123")
    log.info("outside")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["rollout_id"] == "r-0123456789ab"
    assert first["message"] == f"approving with {REDACTED}"
    assert "rollout_id" not in second


def test_text_lines_scrub_secrets_in_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", fmt="text", secrets=["s3cr3t-value-123"])
    try:
        raise RuntimeError("token s3cr3t-value-123 rejected")
    except RuntimeError:
        logging.getLogger("bot.test").exception("call failed")
    err = capsys.readouterr().err
    assert "call failed" in err and "RuntimeError" in err
    assert "s3cr3t-value-123" not in err


def test_anything_shaped_like_a_github_token_is_scrubbed_though_no_setting_names_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="INFO", fmt="text", secrets=[])
    tokens = [
        "ghs_1040337_" + "a1B2c3D4" * 4,  # an installation token, minted at run time
        "ghp_" + "Z9y8X7w6" * 4 + "v5U4",
        "github_pat_11ABCDEFG0" + "_x" * 20,
    ]
    logging.getLogger("bot.test").info("answer %s", {"token": tokens[0], "others": tokens[1:]})
    err = capsys.readouterr().err
    assert err.count(REDACTED) == 3
    assert not [token for token in tokens if token[:8] in err]
