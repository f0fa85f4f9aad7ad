"""asyncio receivers on shared memory spin while their messages come soon, and only then.

The spin (``unixipc.aio._spin``) blocks the event loop for at most 50 µs per
receive. These tests check what it is for and what it must never cost: a peer
that answers at once is caught by the spin; every message still arrives whole
and in order; a receiver whose messages come slowly stops spinning after a few
misses; close() and timeouts behave as without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import unixipc
from tests.helpers import Child
from unixipc import ClosedResourceError, EndOfChannel, Ring, TimeoutExpired, aio
from unixipc.aio import _spin

WAIT = 30.0
ROUNDS = 500


def _echo(channel: unixipc.Channel) -> int:
    with channel:
        count = 0
        with contextlib.suppress(EndOfChannel):
            while True:
                channel.send(channel.receive(timeout=WAIT), timeout=WAIT)
                count += 1
        return count


def _shm_pair(cleanup: Callable[..., None]) -> tuple[unixipc.Channel, unixipc.Channel]:
    ours, theirs = unixipc.channel_pair("shm")
    cleanup(ours.close)
    cleanup(theirs.close)
    return ours, theirs


def test_a_prompt_peer_is_caught_by_the_spin_and_nothing_is_lost(
    cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    ours, theirs = _shm_pair(cleanup)
    child = children(_echo, theirs)
    theirs.close()
    channel = aio.AsyncChannel(ours)
    caught = 0

    async def main() -> list[bytes]:
        nonlocal caught
        answers = []
        for turn in range(ROUNDS):
            await channel.send(turn.to_bytes(4, "little") * 8, timeout=WAIT)
            spin = channel._spin
            before = spin.caught if spin is not None else 0
            answers.append(await channel.receive(timeout=WAIT))
            spin = channel._spin
            caught += (spin.caught if spin is not None else 0) - before
        return answers

    answers = asyncio.run(main())
    assert answers == [turn.to_bytes(4, "little") * 8 for turn in range(ROUNDS)]
    channel.close()
    assert child.result() == ROUNDS
    # The echo answers within microseconds: most answers come from the spin (not
    # all: the first waits go through the loop, and a busy machine preempts).
    assert caught > 0


def _send_slowly(channel: unixipc.Channel, quick: int, slow: int, gap: float) -> None:
    with channel:
        for turn in range(quick):  # answers to a ping-pong: the receiver spins
            channel.receive(timeout=WAIT)
            channel.send(b"quick %d" % turn, timeout=WAIT)
        for turn in range(slow):
            time.sleep(gap)
            channel.send(b"slow %d" % turn, timeout=WAIT)
        with contextlib.suppress(EndOfChannel):
            channel.receive(timeout=WAIT)


def test_a_receiver_whose_messages_come_slowly_stops_spinning(
    cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    ours, theirs = _shm_pair(cleanup)
    slow = 3 * _spin.MISSES
    child = children(_send_slowly, theirs, 200, slow, 0.02)
    theirs.close()
    channel = aio.AsyncChannel(ours)
    tries: list[int] = []

    async def main() -> list[bytes]:
        received = []
        for _ in range(200):
            await channel.send(b"ping", timeout=WAIT)
            received.append(await channel.receive(timeout=WAIT))
        spin = channel._spin
        assert spin is not None
        for _ in range(slow):
            before = spin.tries
            received.append(await channel.receive(timeout=WAIT))
            tries.append(spin.tries - before)
        return received

    received = asyncio.run(main())
    assert received == [b"quick %d" % n for n in range(200)] + [b"slow %d" % n for n in range(slow)]
    channel.close()
    child.result()
    # 20 ms between messages: each spin misses and none gives the credit back, so
    # at most MISSES receives spin at all, and the last ones go straight to the loop.
    assert sum(tries) <= _spin.MISSES
    assert tries[-_spin.MISSES :] == [0] * _spin.MISSES


def test_close_from_another_thread_wakes_a_receiver_that_was_spinning(
    cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    ours, theirs = _shm_pair(cleanup)
    child = children(_echo, theirs)
    theirs.close()
    channel = aio.AsyncChannel(ours)

    async def main() -> BaseException | None:
        for _ in range(100):  # earn the spin credit
            await channel.send(b"x", timeout=WAIT)
            await channel.receive(timeout=WAIT)
        threading.Timer(0.2, channel.close).start()
        try:
            await channel.receive(timeout=WAIT)  # the echo has nothing more to say
        except ClosedResourceError as error:
            return error
        return None

    started = time.monotonic()
    error = asyncio.run(main())
    assert isinstance(error, ClosedResourceError)
    assert time.monotonic() - started < WAIT
    child.result()


def test_a_timeout_shorter_than_the_spin_is_kept(names: Any, cleanup: Callable[..., None]) -> None:
    name = names.posix("spinring")
    ring = Ring.create(name, 4096)
    cleanup(unixipc.ring.unlink, name)
    cleanup(ring.close)
    receiver = aio.AsyncRing(ring)

    async def main() -> None:
        for turn in range(_spin.MISSES + 2):  # quick messages: the credit is earned
            ring.send(b"%d" % turn)
            assert await receiver.receive(timeout=WAIT) == b"%d" % turn
        started = time.monotonic()
        try:
            await receiver.receive(timeout=0.001)
        except TimeoutExpired:
            pass
        else:
            raise AssertionError("a receive on an empty ring returned")
        assert time.monotonic() - started < WAIT

    asyncio.run(main())
