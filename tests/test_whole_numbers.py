"""Numbers read from headers and arguments: ASCII digits only (`bot.domain.text.whole_number`).
`str.isdigit` takes characters `int` refuses ("²", which a latin-1 header can carry): a check
with it before `int` raised ValueError where the reader meant "no number"."""

from __future__ import annotations

import pytest
from github import GithubException
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.adapters.github.refusals import reset_hint, said_wait
from bot.domain.text import whole_number
from handlers.origin import slack_retry


@pytest.mark.parametrize(
    ("text", "number"),
    [("0", 0), ("42", 42), ("\xb2", None), ("", None), (" 1", None), ("+1", None), ("1_0", None)],
)
def test_a_whole_number_is_ascii_digits_only(text: str, number: int | None) -> None:
    assert whole_number(text) == number


def test_a_rate_limit_whose_headers_say_no_number_asks_no_wait_and_raises_nothing() -> None:
    odd = GithubException(
        429, {"message": "slow down"}, {"Retry-After": "\xb2", "X-RateLimit-Reset": "\xb2"}
    )
    assert said_wait(odd) is None
    assert reset_hint(odd).startswith("try again in ")
    said = GithubException(429, {"message": "slow down"}, {"Retry-After": "7"})
    assert (said_wait(said), reset_hint(said)) == (7.0, "try again in 7 s.")


def test_a_slack_retry_number_that_is_no_number_is_a_first_delivery() -> None:
    def retried(number: str) -> AsyncBoltRequest:
        return AsyncBoltRequest(body="{}", headers={"x-slack-retry-num": number})

    assert [slack_retry(retried(n)) for n in ("2", "\xb2", "")] == [2, 0, 0]
