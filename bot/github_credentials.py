"""How the bot proves who it is to GitHub: a token, or a GitHub App (its id, its RSA private
key, and optionally the id of its installation on the repository).

The App's key is parsed here once, so that a missing, unreadable or non-RSA key is one clear
line at start (never the key itself), and `check-config` can print its fingerprint the way
GitHub shows it in the App's settings. PyGithub signs the JWTs and mints the installation
tokens (`bot.adapters.github.transport`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pydantic import SecretStr


class KeyProblem(ValueError):
    """The App's private key cannot be used; the message never carries the key."""


@dataclass(frozen=True)
class GitHubApp:
    """A GitHub App's credentials. `private_key` is PEM text (PKCS#1, as GitHub hands it out,
    or PKCS#8); `installation_id` None: found from the repository on first use."""

    app_id: int
    private_key: SecretStr
    installation_id: int | None = None

    @property
    def key(self) -> rsa.RSAPrivateKey:
        """The parsed key (once per process: `rsa_key`), to sign the App's JWTs with."""
        return rsa_key(self.private_key.get_secret_value(), source="the key")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


APP_SETTINGS = (
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_FILE",
    "GITHUB_APP_INSTALLATION_ID",
)


def mode_problems(given: set[str]) -> dict[str, str]:
    """What is wrong with the GitHub settings given (by their environment names), each under
    the variable it concerns: a token or an App (never both, never neither), and an App needs
    its id and one key."""
    app = [name for name in APP_SETTINGS if name in given]
    if "GITHUB_TOKEN" in given and app:
        return {
            "GITHUB_TOKEN": f"set either GITHUB_TOKEN (token mode) or the GitHub App settings "
            f"({', '.join(app)}), not both: unset the ones of the mode you do not use"
        }
    if "GITHUB_TOKEN" in given:
        return {}
    if not app:
        return {
            "GITHUB_TOKEN": "missing: set GITHUB_TOKEN, or GITHUB_APP_ID and "
            "GITHUB_APP_PRIVATE_KEY (or GITHUB_APP_PRIVATE_KEY_FILE) for a GitHub App"
        }
    mode = f"GitHub App mode: {', '.join(app)} {'is' if len(app) == 1 else 'are'} set"
    problems = {}
    if "GITHUB_APP_ID" not in given:
        problems["GITHUB_APP_ID"] = f"missing ({mode}): the App's id, from its settings"
    keys = [name for name in APP_SETTINGS[1:3] if name in given]
    if len(keys) == 2:
        problems["GITHUB_APP_PRIVATE_KEY_FILE"] = (
            "set GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_FILE, not both"
        )
    elif not keys:
        problems["GITHUB_APP_PRIVATE_KEY"] = (
            f"missing ({mode}): the App's private key, or GITHUB_APP_PRIVATE_KEY_FILE, the "
            ".pem file's path"
        )
    return problems


def read_key_file(path: Path) -> str:
    """The PEM text of GITHUB_APP_PRIVATE_KEY_FILE, or KeyProblem naming the file only."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyProblem(f"{path} does not exist") from None
    except PermissionError:
        raise KeyProblem(f"{path} is not readable by the bot's user") from None
    except IsADirectoryError:
        raise KeyProblem(f"{path} is a directory, not the App's .pem file") from None
    except UnicodeDecodeError:
        raise KeyProblem(f"{path} is not a PEM text file") from None
    except OSError as error:
        raise KeyProblem(f"{path} cannot be read ({error.strerror})") from None


def key_from_file(path: Path) -> str:
    """The RSA private key in GITHUB_APP_PRIVATE_KEY_FILE as PEM text, read once at start;
    KeyProblem naming the file only."""
    pem = normalize_pem(read_key_file(path))
    rsa_key(pem, source=str(path))
    return pem


def normalize_pem(text: str) -> str:
    """PEM text as given in an environment variable: surrounding blanks removed, and the
    literal `\\n` of a one-line value (docker --env-file, many secret stores) made newlines."""
    text = text.strip()
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text


def rsa_key(pem: str, *, source: str) -> rsa.RSAPrivateKey:
    """The RSA private key in `pem`, or KeyProblem saying what is wrong with it (never the key).
    `source` names where it came from, for the message. A key is parsed once per process:
    loading checks its numbers, tens of milliseconds of CPU each time."""
    if "-----BEGIN" not in pem:
        raise KeyProblem(
            f"{source} is not PEM text (it should start with -----BEGIN RSA PRIVATE KEY-----, "
            "as in the .pem file GitHub downloads)"
        )
    try:
        key = _loaded(pem)
    except TypeError:
        raise KeyProblem(
            f"{source} is encrypted with a passphrase; use the key as GitHub gave it"
        ) from None
    except ValueError:
        raise KeyProblem(
            f"{source} is not a readable PEM private key (truncated or altered?): download "
            "a new one from the App's settings (Private keys)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyProblem(
            f"{source} is not an RSA key; GitHub App keys are RSA (the App's settings → "
            "Private keys → Generate a private key)"
        )
    return key


@functools.lru_cache(maxsize=8)
def _loaded(pem: str) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(pem.encode("utf-8"), password=None)


def fingerprint(key: rsa.RSAPrivateKey) -> str:
    """`SHA256:` and the base64 SHA-256 of the public key (DER, SubjectPublicKeyInfo): what
    GitHub shows next to each private key in the App's settings, and what
    `openssl rsa -in key.pem -pubout -outform DER | openssl sha256 -binary | openssl base64`
    prints."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")
