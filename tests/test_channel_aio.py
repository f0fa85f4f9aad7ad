"""unixipc.aio over every scheme: awaitable send/receive, timeouts, peers, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest

from tests.channel_support import (
    CONNECT_OPTIONS,
    LISTEN_OPTIONS,
    URL_SCHEMES,
    WAIT,
    Endpoint,
    Peer,
    url_for,
)
from tests.conftest import Names
from tests.helpers import assert_elapsed
from unixipc import EndOfChannel, MessageTooLarge, PeerDied, TimeoutExpired, WouldBlock, aio


def _echo(peer: Peer) -> int:
    with peer.open() as channel:
        count = 0
        while True:
            try:
                message = channel.receive(timeout=WAIT)
            except EndOfChannel:
                return count
            channel.send(message, timeout=WAIT)
            count += 1


def _send_later(peer: Peer, delay: float, messages: list[bytes]) -> None:
    with peer.open() as channel:
        time.sleep(delay)
        for message in messages:
            channel.send(message, timeout=WAIT)
        with contextlib.suppress(EndOfChannel):
            channel.receive(timeout=WAIT)


def _die_after(peer: Peer, delay: float) -> None:
    channel = peer.open()
    channel.send(b"about to die", timeout=WAIT)
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)


def test_round_trip_with_a_process(endpoint: Endpoint) -> None:
    child, sync_channel = endpoint.start(_echo)
    channel = aio.AsyncChannel(sync_channel)
    sizes = [0, 1, 100, min(channel.max_message_size, 50_000)]

    async def main() -> None:
        for size in sizes:
            message = os.urandom(size)
            await channel.send(message, timeout=WAIT)
            assert await channel.receive(timeout=WAIT) == message
        await channel.send(b"into a buffer")
        buffer = bytearray(100)
        assert await channel.receive_into(buffer, timeout=WAIT) == 13
        assert buffer[:13] == b"into a buffer"
        await channel.send(b"too big for it")
        with pytest.raises(MessageTooLarge):
            await channel.receive_into(bytearray(3), timeout=WAIT)
        assert await channel.receive(timeout=WAIT) == b"too big for it"  # it was kept
        channel.close()

    asyncio.run(main())
    assert child.result() == len(sizes) + 2


def test_timeouts_and_a_late_message(endpoint: Endpoint) -> None:
    child, sync_channel = endpoint.start(_send_later, 0.5, [b"late"])

    async def main() -> None:
        async with aio.AsyncChannel(sync_channel) as channel:
            with pytest.raises(WouldBlock):
                await channel.receive(timeout=0)
            started = time.monotonic()
            with pytest.raises(TimeoutExpired):
                await channel.receive(timeout=0.2)
            assert_elapsed(started, 0.2)
            # Other tasks run while a receive waits.
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.create_task(ticker())
            assert await channel.receive(timeout=WAIT) == b"late"
            task.cancel()
            assert ticks > 5

    asyncio.run(main())
    child.result()


def test_peer_close_and_peer_death(endpoint: Endpoint) -> None:
    closer, closed_channel = endpoint.start(_send_later, 0, [b"bye"])
    killed, dying_channel = endpoint.start(_die_after, 0.3)

    async def main() -> None:
        async with (
            aio.AsyncChannel(closed_channel) as first,
            aio.AsyncChannel(dying_channel) as second,
        ):
            assert await first.receive(timeout=WAIT) == b"bye"
            first.channel.close()  # our close lets the child finish
            assert await second.receive(timeout=WAIT) == b"about to die"
            started = time.monotonic()
            with pytest.raises(PeerDied):
                await second.receive(timeout=WAIT)
            assert time.monotonic() - started < 8

    asyncio.run(main())
    closer.result()
    killed.kill()


def test_many_channels_waited_on_at_once(endpoint: Endpoint) -> None:
    started = [endpoint.start(_send_later, 0.2 * i, [str(i).encode()]) for i in range(3)]

    async def main() -> list[bytes]:
        channels = [aio.AsyncChannel(channel) for _, channel in started]
        try:
            return list(await asyncio.gather(*(c.receive(timeout=WAIT) for c in channels)))
        finally:
            for channel in channels:
                channel.close()

    assert asyncio.run(main()) == [b"0", b"1", b"2"]
    for child, _ in started:
        child.result()


@pytest.mark.parametrize("scheme", URL_SCHEMES)
def test_listen_and_connect_in_one_loop(scheme: str, names: Names) -> None:
    async def main() -> None:
        url = url_for(scheme, names)
        async with await aio.listen(url, **LISTEN_OPTIONS.get(scheme, {})) as listener:

            async def serve() -> None:
                async with await listener.accept(timeout=WAIT) as server:
                    while True:
                        try:
                            message = await server.receive(timeout=WAIT)
                        except EndOfChannel:
                            return
                        await server.send(message[::-1], timeout=WAIT)

            server_task = asyncio.create_task(serve())
            options = CONNECT_OPTIONS.get(scheme, {})
            async with await aio.connect(listener.url, timeout=WAIT, **options) as client:
                for word in (b"abc", b"hello", b""):
                    await client.send(word, timeout=WAIT)
                    assert await client.receive(timeout=WAIT) == word[::-1]
            await asyncio.wait_for(server_task, WAIT)
            with pytest.raises(WouldBlock):
                await listener.accept(timeout=0)

    asyncio.run(main())


def test_a_cancelled_receive_loses_no_message(endpoint: Endpoint) -> None:
    child, sync_channel = endpoint.start(_send_later, 0.5, [b"first", b"second"])

    async def main() -> None:
        async with aio.AsyncChannel(sync_channel) as channel:
            waiting = asyncio.create_task(channel.receive(timeout=WAIT))
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert await channel.receive(timeout=WAIT) == b"first"
            assert await channel.receive(timeout=WAIT) == b"second"

    asyncio.run(main())
    child.result()


@pytest.mark.parametrize("scheme", ["fifo", "mq"])
def test_a_cancelled_connect_removes_what_it_made(scheme: str, names: Names) -> None:
    url = url_for(scheme, names)

    async def main() -> None:
        async with await aio.listen(url, **LISTEN_OPTIONS.get(scheme, {})) as listener:
            connecting = asyncio.create_task(
                aio.connect(listener.url, **CONNECT_OPTIONS.get(scheme, {}))
            )
            await asyncio.sleep(0.3)  # nobody accepts
            connecting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await connecting
            await asyncio.sleep(0.5)  # the helper thread notices within a slice

    asyncio.run(main())
    if scheme == "fifo":
        assert os.listdir(os.path.dirname(url[len("fifo://") :])) == []
    else:
        stem = url[len("mq://") :]
        assert [name for name in os.listdir("/dev/shm") if name.startswith(stem)] == []


def test_aio_channel_pair() -> None:
    async def main() -> None:
        first, second = aio.channel_pair("socketpair")
        async with first, second:
            sender = asyncio.create_task(first.send(os.urandom(3_000_000), timeout=WAIT))
            message = await second.receive(timeout=WAIT)
            await sender
            assert len(message) == 3_000_000

    asyncio.run(main())


def test_aio_exports_exactly_its_public_names() -> None:
    public = {"AsyncChannel", "AsyncListener", "channel_pair", "connect", "listen"}
    assert public <= set(aio.__all__)
    for name in aio.__all__:
        assert getattr(aio, name).__doc__, name
