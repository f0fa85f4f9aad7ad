"""asyncio receivers on shared memory spin while their messages come soon, and only then.

The spin (``unixipc.aio._spin``) blocks the event loop for at most 50 µs per
receive. These tests check what it must never cost, whatever the machine's load:
every message still arrives whole and in order when receives spin; a receiver
whose messages come slowly stops spinning after a few misses; close() and
timeouts behave as without it. (How often a spin catches the answer is timing,
measured by ``unixipc bench``'s ``aio-*`` rows, never asserted here.)
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


def _with_child(
    cleanup: Callable[..., None],
    children: Callable[..., Child],
    function: Callable[..., Any],
    *args: Any,
) -> tuple[Child, aio.AsyncChannel]:
    """A ``shm`` channel pair: ``function(their_end, *args)`` in a child, our end for asyncio."""
    ours, theirs = unixipc.channel_pair("shm")
    cleanup(ours.close)
    cleanup(theirs.close)
    child = children(function, theirs, *args)
    theirs.close()
    return child, aio.AsyncChannel(ours)


def test_receives_that_spin_lose_nothing_and_keep_the_order(
    cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    child, channel = _with_child(cleanup, children, _echo)
    spin = channel._spin = _spin.Spin()  # as the first wait on the doorbells makes it

    async def main() -> list[bytes]:
        answers = []
        for turn in range(ROUNDS):
            spin.waiting()
            spin.arrived()  # as if the last message came at once: this receive spins first
            await channel.send(turn.to_bytes(4, "little") * 8, timeout=WAIT)
            answers.append(await channel.receive(timeout=WAIT))
        return answers

    answers = asyncio.run(main())
    assert answers == [turn.to_bytes(4, "little") * 8 for turn in range(ROUNDS)]
    channel.close()
    assert child.result() == ROUNDS
    # Every receive spun first; whether the answer came within the 50 µs is up to the
    # machine (a busy one preempts the echo), and either way nothing was lost.
    assert spin.tries == ROUNDS
    assert 0 <= spin.caught <= ROUNDS


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
    slow = 3 * _spin.MISSES
    child, channel = _with_child(cleanup, children, _send_slowly, 200, slow, 0.02)
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
    child, channel = _with_child(cleanup, children, _echo)

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
        for turn in range(3):
            ring.send(b"%d" % turn)
            assert await receiver.receive(timeout=WAIT) == b"%d" % turn
        receiver._spin.waiting()
        receiver._spin.arrived()  # as after a message that came at once: the next spins
        started = time.monotonic()
        try:
            await receiver.receive(timeout=0.001)
        except TimeoutExpired:
            pass
        else:
            raise AssertionError("a receive on an empty ring returned")
        assert time.monotonic() - started < WAIT
        assert receiver._spin.tries == 1  # the spin ran, timed out, and the wait went on

    asyncio.run(main())
