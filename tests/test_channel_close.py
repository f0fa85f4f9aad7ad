"""close() wakes every waiter, on every scheme: threads and asyncio tasks blocked in a
send, a receive or an accept get ClosedResourceError at once, not when their
timeout runs out (trio's notify_closing)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.channel_support import WAIT, Endpoint
from tests.conftest import Names
from tests.helpers import Child
from unixipc import Channel, ClosedResourceError, WouldBlock, aio

# Long enough for the waiter to be asleep in its call when close() comes.
SETTLE = 0.2
# A woken waiter returns long before this (its own timeout is WAIT).
WOKEN_WITHIN = WAIT / 3


def _fill(channel: Channel) -> bytes:
    """Send until the channel takes no more; return a message that cannot fit soon
    (as large as allowed: kernel buffers may still grow a little)."""
    message = bytes(channel.max_message_size)
    with pytest.raises(WouldBlock):  # noqa: PT012 - part of one may be committed first
        for _ in range(100_000):
            channel.send(message, timeout=0)
    return message


def _blocked_call_is_woken(call: Callable[[], Any], close: Callable[[], None]) -> None:
    """Run ``call`` in a thread; once it waits, ``close()`` must end it with
    ClosedResourceError long before its own timeout."""
    outcome: list[tuple[BaseException | None, float]] = []

    def run() -> None:
        started = time.monotonic()
        try:
            call()
        except BaseException as error:
            outcome.append((error, time.monotonic() - started))
        else:
            outcome.append((None, time.monotonic() - started))

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(SETTLE)
    closed_at = time.monotonic()
    close()
    thread.join(WAIT)
    assert outcome, "the call was still blocked after close()"
    error, _ = outcome[0]
    assert isinstance(error, ClosedResourceError), error
    assert time.monotonic() - closed_at < WOKEN_WITHIN


def test_close_wakes_a_blocked_receive(endpoint: Endpoint) -> None:
    ours, _ = endpoint.connect_here()
    _blocked_call_is_woken(lambda: ours.receive(timeout=WAIT), ours.close)
    with pytest.raises(ClosedResourceError):
        ours.receive(timeout=0)


def test_close_wakes_a_blocked_send(endpoint: Endpoint) -> None:
    ours, _ = endpoint.connect_here()
    message = _fill(ours)
    _blocked_call_is_woken(lambda: ours.send(message, timeout=WAIT), ours.close)


def test_close_wakes_a_blocked_accept(url_endpoint: Endpoint) -> None:
    listener = url_endpoint.listener
    assert listener is not None
    _blocked_call_is_woken(lambda: listener.accept(timeout=WAIT), listener.close)


# asyncio: a task waiting on the channel, closed by another task (or thread).


async def _task_is_woken(awaitable: Any, close: Callable[[], None]) -> None:
    task = asyncio.ensure_future(awaitable)
    await asyncio.sleep(SETTLE)
    assert not task.done()
    close()
    with pytest.raises(ClosedResourceError):
        await asyncio.wait_for(task, WOKEN_WITHIN)


def test_aio_close_wakes_a_waiting_receive(endpoint: Endpoint) -> None:
    ours, _ = endpoint.connect_here()
    channel = aio.AsyncChannel(ours)
    asyncio.run(_task_is_woken(channel.receive(timeout=WAIT), channel.close))


def test_aio_close_wakes_a_waiting_send(endpoint: Endpoint) -> None:
    ours, _ = endpoint.connect_here()
    message = _fill(ours)
    channel = aio.AsyncChannel(ours)
    asyncio.run(_task_is_woken(channel.send(message, timeout=WAIT), channel.close))


def test_aio_close_wakes_a_waiting_accept(url_endpoint: Endpoint) -> None:
    assert url_endpoint.listener is not None
    listener = aio.AsyncListener(url_endpoint.listener)
    asyncio.run(_task_is_woken(listener.accept(timeout=WAIT), listener.close))


@pytest.mark.parametrize("scheme", ["pair-socketpair", "fifo", "mq"])
def test_aio_close_from_another_thread_stops_watching_before_closing(
    scheme: str, names: Names, cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    ours, _ = Endpoint(scheme, names, cleanup, children).connect_here()
    channel = aio.AsyncChannel(ours)
    descriptor = ours.fileno()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        closer = threading.Timer(SETTLE, channel.close)
        closer.start()
        with pytest.raises(ClosedResourceError):
            await asyncio.wait_for(channel.receive(timeout=WAIT), WOKEN_WITHIN)
        closer.join()
        # The loop no longer watches the descriptor, which a new file may reuse.
        assert descriptor not in loop._selector.get_map()  # type: ignore[attr-defined]

    asyncio.run(main())
