"""The production log setup: rollout ids on every line about a rollout, secrets scrubbed."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import DatabaseSettings, PrometheusSettings, Settings, load_settings
from bot.logs import REDACTED, configure_logging, rollout_context
from sandbox.config import SLACK_APP_TOKEN, bot_environment
from sandbox.slack import SlackTestServer


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


def test_anything_shaped_like_a_token_is_scrubbed_though_no_setting_names_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="INFO", fmt="text", secrets=[])
    tokens = [
        "ghs_1040337_" + "a1B2c3D4" * 4,  # an installation token, minted at run time
        "ghp_" + "Z9y8X7w6" * 4 + "v5U4",
        "github_pat_11ABCDEFG0" + "_x" * 20,
        # a GitHub App's JWT, and one cut inside its payload (an error page's first 200 bytes)
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3OTY1MDIwNjUsImV4cCI6MTc5Nj.R1pm",
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3",
        # npm's and Slack's, pasted by a person where a command's argument goes
        "npm_" + "Pa5t" * 9,
        "xoxp-1040337-2050" + "a1B2c3D4" * 4,
        "xapp-1-A0B1C2D3E4F-1040337-" + "a1b2c3d4" * 8,
    ]
    logging.getLogger("bot.test").info("answer %s", {"token": tokens[0], "others": tokens[1:]})
    err = capsys.readouterr().err
    assert err.count(REDACTED) == 8
    assert not [token for token in tokens if token[:8] in err]


def test_a_slack_response_url_in_an_error_is_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    # aiohttp names the URL whole in some errors (TooManyRedirects, InvalidURL): a response_url
    # lets whoever reads the log post in the channel for half an hour.
    configure_logging(level="INFO", fmt="text", secrets=[])
    hooks = [
        "https://hooks.slack.com/actions/T0SCRIPTUM/1040337/Zx9Yw8Vu7Ts6",
        "https://hooks.slack.com/commands/T0SCRIPTUM/2050/Ab1Cd2Ef3",
        "https://hooks.slack.com/services/T0SCRIPTUM/B0RELAY/a1B2c3D4e5",
    ]
    for hook in hooks:
        logging.getLogger("bot.test").warning("response_url failed (0, message='', url='%s')", hook)
    err = capsys.readouterr().err
    assert err.count(REDACTED) == 3
    assert "hooks.slack.com" not in err and "response_url failed" in err


URL_PASSWORDS = {
    "DATABASE_URL": ("postgresql://bot:p%40ss%2Fw0rd@127.0.0.1:5432/rollouts", "p@ss/w0rd"),
    "PROMETHEUS_URL": ("http://admin:hunter%3A22x@127.0.0.1:9090/", "hunter:22x"),
}
"""Generated passwords often hold `@`, `/` or `:`, which a URL carries percent-encoded."""


def test_a_password_inside_a_url_shows_in_neither_form_in_the_settings_or_a_log_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`repr(settings)` (a traceback's locals, a dataclass that holds them) masks the URLs'
    passwords as it masks the SecretStr settings, and a URL logged by a slip is scrubbed
    whether its password is written encoded or decoded."""
    env = bot_environment(
        slack_api_url="http://127.0.0.1:9/api/",
        github_api_url="http://127.0.0.1:9/",
        database_url=URL_PASSWORDS["DATABASE_URL"][0],
    )
    for name, setting in env.items():
        monkeypatch.setenv(name, setting)
    monkeypatch.setenv("PROMETHEUS_URL", URL_PASSWORDS["PROMETHEUS_URL"][0])
    settings = load_settings(Settings, env_file=None)
    configure_logging(level="INFO", fmt="text", secrets=settings.secret_values())
    logging.getLogger("bot.test").warning(
        "connecting to %s, then %s", settings.database_url, settings.prometheus_url
    )
    logging.getLogger("bot.test").warning(
        "as given: %s", [url for url, _ in URL_PASSWORDS.values()]
    )
    shown = repr(settings) + str(settings) + capsys.readouterr().err
    for url, password in URL_PASSWORDS.values():
        encoded = url.split(":")[2].split("@")[0]
        assert encoded not in shown and password not in shown
    assert "postgresql+asyncpg://bot:***@127.0.0.1:5432/rollouts" in repr(settings)


@pytest.mark.parametrize("kind", [DatabaseSettings, PrometheusSettings])
def test_the_settings_of_migrate_audit_and_backtest_mask_the_urls_passwords_too(
    monkeypatch: pytest.MonkeyPatch, kind: type[DatabaseSettings]
) -> None:
    """`rollout-bot migrate`, `audit` and `backtest` load only DATABASE_URL (and
    PROMETHEUS_URL): their settings' repr masks the passwords as the bot's settings do."""
    monkeypatch.setenv("DATABASE_URL", URL_PASSWORDS["DATABASE_URL"][0])
    monkeypatch.setenv("PROMETHEUS_URL", URL_PASSWORDS["PROMETHEUS_URL"][0])
    settings = load_settings(kind, env_file=None)

    shown = repr(settings) + str(settings)

    for url, password in URL_PASSWORDS.values():
        encoded = url.split(":")[2].split("@")[0]
        assert encoded not in shown and password not in shown
    assert "postgresql+asyncpg://bot:***@127.0.0.1:5432/rollouts" in shown


async def test_a_socket_url_s_ticket_shows_in_no_line_at_debug(
    slack: SlackTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ticket of a Socket Mode URL lets whoever has it open the app's socket until it is
    used. At LOG_LEVEL=DEBUG the Web API client's line with `apps.connections.open`'s answer
    is held back (slack_sdk stays at WARNING), and the SDK's ERROR line when the handshake is
    refused (aiohttp's error names the URL whole) is scrubbed."""
    configure_logging(level="DEBUG", fmt="text", secrets=[])
    client = AsyncWebClient(base_url=slack.api_url)
    url = (await client.apps_connections_open(app_token=SLACK_APP_TOKEN))["url"]
    ticket = parse_qs(urlsplit(url).query)["ticket"][0]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url.replace(ticket, ticket[::-1]))  # a ticket Slack refuses
    # What slack_sdk.socket_mode.aiohttp.SocketModeClient.connect logs, through Bolt's logger.
    logging.getLogger("slack_bolt.AsyncApp").error(
        "Failed to connect (error: %s); Retrying...", refused.value
    )
    err = capsys.readouterr().err
    assert "Failed to connect (error: 401" in err and f"ticket={REDACTED}" in err
    assert ticket not in err and ticket[::-1] not in err
