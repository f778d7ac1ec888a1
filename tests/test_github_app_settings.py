"""GitHub App settings: each bad input is one line naming its variable (never the key), a mix
of token and App settings is refused, the key file is read; `check-config` prints the key's
fingerprint as GitHub shows it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from test_cli import full_env, run

from bot.config import ConfigError, Settings, load_settings
from bot.github_credentials import GitHubApp
from bot.wiring import request_budgets
from sandbox.config import GITHUB_TOKEN
from sandbox.github_app import APP_ID, SandboxApp

KEY = SandboxApp().private_key
KEY_BODY = KEY.splitlines()[1]
"""A line of the key's base64: what a leak of the key would show."""


def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    """Settings from the sandbox's environment, without GITHUB_TOKEN, plus `env`."""
    base = full_env(tmp_path)
    del base["GITHUB_TOKEN"]
    for name, value in (base | env).items():
        monkeypatch.setenv(name, value)
    return load_settings(Settings, env_file=None)


def problems(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        settings(monkeypatch, tmp_path, **env)
    assert not any(KEY_BODY in problem for problem in refused.value.problems)
    return refused.value.problems


class AppEnv:
    """The sandbox's environment in GitHub App mode: no GITHUB_TOKEN, the App's id, plus what a
    test gives (its key, mostly)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self._monkeypatch, self._tmp_path = monkeypatch, tmp_path

    def settings(self, **env: str) -> Settings:
        return settings(self._monkeypatch, self._tmp_path, GITHUB_APP_ID=str(APP_ID), **env)

    def problems(self, **env: str) -> list[str]:
        return problems(self._monkeypatch, self._tmp_path, GITHUB_APP_ID=str(APP_ID), **env)


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AppEnv:
    return AppEnv(monkeypatch, tmp_path)


def other_keys(tmp_path: Path) -> dict[str, str]:
    elliptic = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "truncated": KEY[: len(KEY) // 2],
        "not PEM": "MIIEpAIBAAKCAQEA" + KEY_BODY,
        "elliptic": elliptic.decode(),
    }


def test_the_app_settings_load_and_give_the_apps_credentials(app_env: AppEnv) -> None:
    loaded = app_env.settings(GITHUB_APP_PRIVATE_KEY=KEY, GITHUB_APP_INSTALLATION_ID="61000001")
    credentials = loaded.github_credentials()
    assert credentials == GitHubApp(APP_ID, SecretStr(KEY.strip()), 61000001)
    assert KEY_BODY not in repr(loaded) + str(loaded.describe())


def test_a_key_given_on_one_line_with_escaped_newlines_is_read(app_env: AppEnv) -> None:
    loaded = app_env.settings(GITHUB_APP_PRIVATE_KEY=KEY.strip().replace("\n", "\\n"))
    credentials = loaded.github_credentials()
    assert isinstance(credentials, GitHubApp) and credentials.installation_id is None
    assert credentials.private_key.get_secret_value() == KEY.strip()


def test_the_key_file_is_read_once_at_start(app_env: AppEnv, tmp_path: Path) -> None:
    (tmp_path / "app.pem").write_text(KEY, encoding="utf-8")
    loaded = app_env.settings(GITHUB_APP_PRIVATE_KEY_FILE=str(tmp_path / "app.pem"))
    (tmp_path / "app.pem").unlink()  # a secret mount gone after the start changes nothing
    credentials = loaded.github_credentials()
    assert isinstance(credentials, GitHubApp)
    assert credentials.private_key.get_secret_value() == KEY.strip()
    # The log scrubber knows each line of the key, read from the file too.
    assert KEY_BODY in loaded.secret_values()


@pytest.mark.parametrize("kind", ["truncated", "not PEM", "elliptic"])
def test_a_bad_key_is_one_line_that_never_shows_the_key(
    app_env: AppEnv, tmp_path: Path, kind: str
) -> None:
    expected = {
        "truncated": "is not a readable PEM private key",
        "not PEM": "is not PEM text",
        "elliptic": "is not an RSA key",
    }[kind]
    found = app_env.problems(GITHUB_APP_PRIVATE_KEY=other_keys(tmp_path)[kind])
    assert len(found) == 1, found
    assert found[0].startswith("GITHUB_APP_PRIVATE_KEY: the value ") and expected in found[0]


def test_a_missing_or_unreadable_key_file_is_one_line(app_env: AppEnv, tmp_path: Path) -> None:
    missing = app_env.problems(GITHUB_APP_PRIVATE_KEY_FILE=str(tmp_path / "gone.pem"))
    assert missing == [f"GITHUB_APP_PRIVATE_KEY_FILE: {tmp_path / 'gone.pem'} does not exist"]
    (tmp_path / "broken.pem").write_text(KEY[:300], encoding="utf-8")
    broken = app_env.problems(GITHUB_APP_PRIVATE_KEY_FILE=str(tmp_path / "broken.pem"))
    assert len(broken) == 1 and "broken.pem is not a readable PEM private key" in broken[0]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {"GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_APP_ID": str(APP_ID)},
            "GITHUB_TOKEN: set either GITHUB_TOKEN (token mode) or the GitHub App settings "
            "(GITHUB_APP_ID), not both",
            id="token and App",
        ),
        pytest.param(
            {"GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_APP_PRIVATE_KEY": KEY},
            "GITHUB_TOKEN: set either GITHUB_TOKEN (token mode) or the GitHub App settings "
            "(GITHUB_APP_PRIVATE_KEY), not both",
            id="token and key",
        ),
        pytest.param(
            {"GITHUB_APP_ID": str(APP_ID)},
            "GITHUB_APP_PRIVATE_KEY: missing (GitHub App mode: GITHUB_APP_ID is set): the App's "
            "private key, or GITHUB_APP_PRIVATE_KEY_FILE, the .pem file's path",
            id="no key",
        ),
        pytest.param(
            {"GITHUB_APP_PRIVATE_KEY": KEY},
            "GITHUB_APP_ID: missing (GitHub App mode: GITHUB_APP_PRIVATE_KEY is set): the App's "
            "id, from its settings",
            id="no App id",
        ),
        pytest.param(
            {"GITHUB_APP_ID": "my-app", "GITHUB_APP_PRIVATE_KEY": KEY},
            "GITHUB_APP_ID: Input should be a valid integer",
            id="App id not a number",
        ),
        pytest.param(
            {
                "GITHUB_APP_ID": str(APP_ID),
                "GITHUB_APP_PRIVATE_KEY": KEY,
                "GITHUB_APP_PRIVATE_KEY_FILE": "/etc/hostname",
            },
            "GITHUB_APP_PRIVATE_KEY_FILE: set GITHUB_APP_PRIVATE_KEY or "
            "GITHUB_APP_PRIVATE_KEY_FILE, not both",
            id="key and key file",
        ),
        pytest.param(
            {},
            "GITHUB_TOKEN: missing: set GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY",
            id="nothing",
        ),
    ],
)
def test_a_mix_or_half_of_the_github_settings_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    found = problems(monkeypatch, tmp_path, **env)
    assert any(problem.startswith(expected) for problem in found), found


def test_each_half_set_app_setting_is_named_under_its_own_variable_with_the_others(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found = problems(
        monkeypatch, tmp_path, GITHUB_APP_INSTALLATION_ID="61000001", RELEASE_CHANNELS="general"
    )
    assert [problem.split(":")[0] for problem in found] == [
        "RELEASE_CHANNELS",  # another setting's problem is listed too
        "GITHUB_APP_ID",
        "GITHUB_APP_PRIVATE_KEY",
    ], found
    assert "GITHUB_TOKEN" not in "\n".join(found)


def openssl_step(command: list[str], data: bytes) -> bytes:
    done = subprocess.run(  # noqa: S603 - a fixed openssl command line
        command, input=data, capture_output=True, check=True
    )
    return done.stdout


def openssl_fingerprint(pem: str) -> str:
    """What GitHub's docs have you run to compare a key with the App's settings."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    public = openssl_step([openssl, "rsa", "-pubout", "-outform", "DER"], pem.encode())
    digest = openssl_step([openssl, "sha256", "-binary"], public)
    encoded = openssl_step([openssl, "base64"], digest)
    return "SHA256:" + encoded.decode().strip()


async def test_check_config_prints_the_keys_fingerprint_never_the_key(tmp_path: Path) -> None:
    (tmp_path / "app.pem").write_text(KEY, encoding="utf-8")
    env = full_env(tmp_path) | {
        "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_APP_PRIVATE_KEY_FILE": str(tmp_path / "app.pem"),
    }
    del env["GITHUB_TOKEN"]
    code, out, err = await run("check-config", env=env, cwd=tmp_path)
    assert code == 0, err
    assert (
        f"GitHub App {APP_ID} (installation found from scriptum/scriptum): private key "
        f"{openssl_fingerprint(KEY)}"
    ) in out
    assert KEY_BODY not in out + err


async def test_check_config_refuses_a_mix_in_one_line(tmp_path: Path) -> None:
    mixed = full_env(tmp_path) | {"GITHUB_APP_ID": str(APP_ID), "GITHUB_APP_PRIVATE_KEY": KEY}
    code, out, err = await run("check-config", env=mixed, cwd=tmp_path)
    assert (code, out) == (2, "")
    assert "GITHUB_TOKEN: set either GITHUB_TOKEN" in err and KEY_BODY not in err


def test_an_app_without_a_fixed_installation_keeps_a_budget_per_owner(app_env: AppEnv) -> None:
    # GitHub's rate limit is the installation's, and an App is installed once per account.
    repositories = {"api": "acme/api", "web": "Acme/web", "billing": "globex/billing"}
    per_owner = request_budgets(app_env.settings(GITHUB_APP_PRIVATE_KEY=KEY), repositories)
    assert per_owner.of("api") is per_owner.of("web") is not per_owner.of("billing")

    fixed = app_env.settings(GITHUB_APP_PRIVATE_KEY=KEY, GITHUB_APP_INSTALLATION_ID="61000001")
    one = request_budgets(fixed, repositories)
    assert one.of("api") is one.of("web") is one.of("billing")
