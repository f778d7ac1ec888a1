"""Acknowledge first, work after (`handlers.ack_first` and `handlers.errors.acknowledged`):
the work on a request waits for the acks of the requests in flight, a second at most, over
HTTP only; a form's opener never waits; the work is counted until it ends, whatever it
raises. Driven with events and a Bolt request, no sleeps beyond a few loop turns."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import quote

import pytest
from slack_bolt.async_app import AsyncAck
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.services.telemetry import Telemetry
from handlers import ack_first
from handlers.ack_first import AckFirst
from handlers.errors import acknowledged

CLICK: dict[str, Any] = {"type": "block_actions", "actions": [{"action_id": "promote"}]}


async def turns(count: int = 20) -> None:
    """Let the event loop run everything ready, a few times over."""
    for _ in range(count):
        await asyncio.sleep(0)


def request(acks: AckFirst, *, mode: str = "http") -> AsyncBoltRequest:
    """A click as Bolt hands it to a listener, with the app's `AckFirst` in its context (over
    HTTP Bolt reads the raw body, over Socket Mode the parsed one)."""
    body = CLICK if mode == "socket_mode" else "payload=" + quote(json.dumps(CLICK))
    bolt_request = AsyncBoltRequest(body=body, mode=mode)
    bolt_request.context[ack_first.CONTEXT_KEY] = acks
    return bolt_request


def listener(started: asyncio.Event, release: asyncio.Event | None = None) -> Any:
    async def clicked(ack: AsyncAck, body: dict[str, Any], request: AsyncBoltRequest) -> None:
        started.set()
        if release is not None:
            await release.wait()

    return clicked


async def test_work_waits_until_the_requests_in_flight_are_acknowledged() -> None:
    acks, started = AckFirst(patience=60), asyncio.Event()
    run = acknowledged(Telemetry())(listener(started))
    with acks.acknowledging():  # a request of the burst Bolt has not answered yet
        work = asyncio.create_task(run(ack=AsyncAck(), body=CLICK, request=request(acks)))
        await turns()
        assert not started.is_set() and acks.work_under_way == 1
    async with asyncio.timeout(5):
        await work
    assert started.is_set() and acks.work_under_way == 0


async def test_work_waits_no_longer_than_the_patience() -> None:
    acks, started = AckFirst(patience=0.05), asyncio.Event()
    run = acknowledged(Telemetry())(listener(started))
    with acks.acknowledging():  # never answered while the work waits
        async with asyncio.timeout(5):
            await run(ack=AsyncAck(), body=CLICK, request=request(acks))
        assert started.is_set()


@pytest.mark.parametrize("why", ["socket_mode", "opens a form"])
async def test_socket_mode_and_form_openers_do_not_wait(why: str) -> None:
    acks, started = AckFirst(patience=60), asyncio.Event()
    run = acknowledged(Telemetry(), waits=why != "opens a form")(listener(started))
    mode = "socket_mode" if why == "socket_mode" else "http"
    with acks.acknowledging():
        async with asyncio.timeout(5):
            await run(ack=AsyncAck(), body=CLICK, request=request(acks, mode=mode))
        assert started.is_set()


async def test_a_dispatch_that_raises_is_no_longer_counted() -> None:
    acks = AckFirst(patience=60)
    with contextlib.suppress(RuntimeError), acks.acknowledging():
        raise RuntimeError("Bolt failed")
    async with asyncio.timeout(5):
        await acks.acknowledged()  # at once: nothing is waiting for its ack any more


async def test_work_is_counted_until_it_ends_even_when_it_fails() -> None:
    acks, started, release = AckFirst(), asyncio.Event(), asyncio.Event()

    async def fails(ack: AsyncAck, body: dict[str, Any], request: AsyncBoltRequest) -> None:
        started.set()
        await release.wait()
        raise RuntimeError("the listener failed")

    work = asyncio.create_task(
        acknowledged(Telemetry())(fails)(ack=AsyncAck(), body=CLICK, request=request(acks))
    )
    await started.wait()
    assert acks.work_under_way == 1
    assert not await acks.idle(within=0.01)
    release.set()
    assert await acks.idle(within=5)  # the error was answered (no response_url: logged)
    await work
    assert acks.work_under_way == 0


def test_a_listener_without_the_arguments_it_needs_is_refused_when_decorated() -> None:
    async def clicked(ack: AsyncAck, body: dict[str, Any]) -> None:
        """No `request`: Bolt would not pass it."""

    with pytest.raises(TypeError, match="must declare request"):
        acknowledged(Telemetry())(clicked)
