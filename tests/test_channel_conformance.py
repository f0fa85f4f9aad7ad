"""One body of tests run over EVERY channel scheme, across real processes.

Round trip and order, sizes up to the maximum and one over, receive_into,
timeouts 0 / positive / None, a peer's close (EndOfChannel), a peer's SIGKILL
(PeerDied, within seconds), use after close, many clients on one listener.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

import pytest

from tests.channel_support import WAIT, Endpoint, Peer
from tests.helpers import assert_elapsed
from unixipc import (
    Channel,
    ClosedResourceError,
    EndOfChannel,
    MessageTooLarge,
    PeerDied,
    TimeoutExpired,
    WouldBlock,
)

# How long a SIGKILLed peer may take to be noticed: "a few seconds", never a hang.
DEATH_NOTICED_WITHIN = 8.0


# The children's side (module level, so that spawn can import it).


def _echo(peer: Peer) -> int:
    """Send back every message until the peer closes; return how many."""
    channel = peer.open()
    count = 0
    try:
        while True:
            try:
                message = channel.receive(timeout=WAIT)
            except EndOfChannel:
                return count
            channel.send(message, timeout=WAIT)
            count += 1
    finally:
        channel.close()


def _await_close(channel: Channel) -> None:
    """Wait until the parent closes its end (so that it reads our last message first)."""
    try:
        channel.receive(timeout=WAIT)
    except EndOfChannel:
        return
    raise AssertionError("expected the parent to close the channel")


def _send_then_close(peer: Peer, messages: list[bytes]) -> None:
    with peer.open() as channel:
        for message in messages:
            channel.send(message, timeout=WAIT)


def _send_later(peer: Peer, delay: float, message: bytes) -> None:
    with peer.open() as channel:
        time.sleep(delay)
        channel.send(message, timeout=WAIT)
        _await_close(channel)


def _drain_when_told(peer: Peer, go: Any) -> None:
    """Read nothing until ``go`` is set, then count messages until b"end"; send the count."""
    with peer.open() as channel:
        channel.send(b"ready", timeout=WAIT)
        if not go.wait(WAIT):
            raise AssertionError("never told to drain")
        count = 0
        while channel.receive(timeout=WAIT) != b"end":
            count += 1
        channel.send(str(count).encode(), timeout=WAIT)
        _await_close(channel)


def _die_after(peer: Peer, delay: float) -> None:
    channel = peer.open()
    channel.send(b"about to die", timeout=WAIT)
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)


def _client(peer: Peer, number: int, rounds: int) -> int:
    with peer.open() as channel:
        total = 0
        for i in range(rounds):
            channel.send(f"{number} {i}".encode(), timeout=WAIT)
            reply = channel.receive(timeout=WAIT)
            if reply != f"{number} {i} ok".encode():
                raise AssertionError(f"client {number} got {reply!r}")
            total += 1
        return total


# The tests.


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_round_trip_keeps_order_and_content(endpoint: Endpoint, method: str) -> None:
    child, channel = endpoint.start(_echo, method=method)
    generator = random.Random(7)
    limit = min(channel.max_message_size, 70_000)
    messages = [b"", b"x"] + [
        generator.randbytes(min(limit, generator.choice([1, 10, 100, 1000, 10_000, limit])))
        for _ in range(30 if method == "fork" else 8)
    ]
    for message in messages:
        channel.send(message, timeout=WAIT)
        assert channel.receive(timeout=WAIT) == message
    # Several small ones in flight at once (they fit in the smallest queues): order is kept.
    burst = [str(i).encode() * 10 for i in range(6)]
    for message in burst:
        channel.send(message, timeout=WAIT)
    for message in burst:
        assert channel.receive(timeout=WAIT) == message
    messages += burst
    channel.close()
    assert child.result() == len(messages)


def test_sizes_up_to_the_maximum_and_one_over(endpoint: Endpoint) -> None:
    child, channel = endpoint.start(_echo)
    maximum = channel.max_message_size
    assert maximum >= 1
    for size in (0, 1, maximum - 1, maximum):
        message = random.randbytes(size)
        channel.send(message, timeout=WAIT)
        assert channel.receive(timeout=WAIT) == message
    with pytest.raises(MessageTooLarge):
        channel.send(bytes(maximum + 1), timeout=WAIT)
    # Refused before anything was sent: the channel still works.
    channel.send(b"still fine", timeout=WAIT)
    assert channel.receive(timeout=WAIT) == b"still fine"
    channel.close()
    assert child.result() == 5


def test_any_bytes_like_goes_in(endpoint: Endpoint) -> None:
    child, channel = endpoint.start(_echo)
    import array

    numbers = array.array("i", range(100))
    for data in (bytearray(b"abc"), memoryview(b"xyz"), numbers):
        channel.send(data, timeout=WAIT)
        assert channel.receive(timeout=WAIT) == bytes(data)
    with pytest.raises(TypeError):
        channel.send("text is not bytes", timeout=WAIT)  # type: ignore[arg-type]
    channel.close()
    assert child.result() == 3


def test_receive_into(endpoint: Endpoint) -> None:
    child, channel = endpoint.start(_echo)
    message = random.randbytes(min(channel.max_message_size, 100_000))
    channel.send(message, timeout=WAIT)
    buffer = bytearray(len(message) + 10)
    assert channel.receive_into(buffer, timeout=WAIT) == len(message)
    assert buffer[: len(message)] == message
    # Too small a buffer: MessageTooLarge, and the message is kept.
    channel.send(b"0123456789", timeout=WAIT)
    small = bytearray(4)
    with pytest.raises(MessageTooLarge):
        channel.receive_into(small, timeout=WAIT)
    assert channel.receive_into(memoryview(buffer)[:10], timeout=WAIT) == 10
    assert buffer[:10] == b"0123456789"
    with pytest.raises(TypeError):
        channel.receive_into(b"read-only", timeout=WAIT)
    channel.close()
    assert child.result() == 2


def test_receive_timeouts(endpoint: Endpoint) -> None:
    child, channel = endpoint.start(_send_later, 0.5, b"late")
    with pytest.raises(WouldBlock):
        channel.receive(timeout=0)
    with pytest.raises(WouldBlock):
        channel.receive_into(bytearray(10), timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        channel.receive(timeout=0.2)
    assert_elapsed(started, 0.2)
    assert channel.receive(timeout=None) == b"late"
    channel.close()
    child.result()


def test_send_timeouts_and_nothing_lost(endpoint: Endpoint) -> None:
    import multiprocessing

    go = multiprocessing.get_context("fork").Event()
    child, channel = endpoint.start(_drain_when_told, go)
    assert channel.receive(timeout=WAIT) == b"ready"
    message = bytes(min(channel.max_message_size, 3000))
    sent = 0
    with pytest.raises(WouldBlock):  # noqa: PT012 - fill the channel until it is full
        for _ in range(100_000):
            channel.send(message, timeout=0)
            sent += 1
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        channel.send(message, timeout=0.2)
    assert_elapsed(started, 0.2)
    go.set()
    channel.send(b"end", timeout=WAIT)
    # Every send that returned was delivered; none that raised was.
    assert channel.receive(timeout=WAIT) == str(sent).encode()
    channel.close()
    child.result()


def test_timeout_is_validated_before_anything_happens(endpoint: Endpoint) -> None:
    ours, theirs = endpoint.connect_here()
    with pytest.raises(ValueError, match="timeout"):
        ours.send(b"x", timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        ours.receive(timeout="1")  # type: ignore[arg-type]
    with pytest.raises(WouldBlock):
        theirs.receive(timeout=0)  # nothing was sent


def test_peer_close_gives_end_of_channel_after_its_messages(endpoint: Endpoint) -> None:
    messages = [b"one", b"two", bytes(200)]  # they fit in the smallest channel's buffers
    child, channel = endpoint.start(_send_then_close, messages)
    child.result()  # the child closed and exited
    for message in messages:
        assert channel.receive(timeout=WAIT) == message
    with pytest.raises(EndOfChannel):
        channel.receive(timeout=WAIT)
    with pytest.raises(EndOfChannel):  # it stays ended
        channel.receive_into(bytearray(10), timeout=0)
    with pytest.raises(EndOfChannel):
        channel.send(b"anyone?", timeout=WAIT)
    channel.close()


def test_peer_close_is_seen_by_a_sender(endpoint: Endpoint) -> None:
    child, channel = endpoint.start(_send_then_close, [])
    child.result()
    with pytest.raises(EndOfChannel):  # noqa: PT012 - a few sends may be buffered first
        for _ in range(10_000):
            channel.send(b"x" * 100, timeout=WAIT)
    channel.close()


def test_peer_killed_while_we_wait_gives_peer_died(endpoint: Endpoint) -> None:
    child, channel = endpoint.start(_die_after, 0.3)
    assert channel.receive(timeout=WAIT) == b"about to die"
    started = time.monotonic()
    with pytest.raises(PeerDied):
        channel.receive(timeout=WAIT)
    assert time.monotonic() - started < DEATH_NOTICED_WITHIN
    with pytest.raises(PeerDied):  # it stays dead
        channel.receive(timeout=0)
    child.kill()
    channel.close()


def test_peer_killed_is_seen_by_a_sender(endpoint: Endpoint) -> None:
    child, channel = endpoint.start(_die_after, 0)
    assert channel.receive(timeout=WAIT) == b"about to die"
    child.process.join(WAIT)
    assert child.process.exitcode == -signal.SIGKILL
    started = time.monotonic()
    with pytest.raises(PeerDied):  # noqa: PT012 - a few sends may be buffered first
        for _ in range(10_000):
            channel.send(b"x" * 100, timeout=WAIT)
    assert time.monotonic() - started < DEATH_NOTICED_WITHIN
    channel.close()


def test_use_after_close(endpoint: Endpoint) -> None:
    ours, theirs = endpoint.connect_here()
    ours.send(b"last", timeout=WAIT)
    ours.close()
    ours.close()  # idempotent
    assert ours.closed
    with pytest.raises(ClosedResourceError):
        ours.send(b"x")
    with pytest.raises(ClosedResourceError):
        ours.receive(timeout=0)
    with pytest.raises(ClosedResourceError):
        ours.receive_into(bytearray(4), timeout=0)
    with pytest.raises(ClosedResourceError):
        ours.fileno()
    assert theirs.receive(timeout=WAIT) == b"last"
    with pytest.raises(EndOfChannel):
        theirs.receive(timeout=WAIT)
    if endpoint.listener is not None:
        endpoint.listener.close()
        with pytest.raises(ClosedResourceError):
            endpoint.listener.accept(timeout=0)


def test_many_clients_on_one_listener(url_endpoint: Endpoint) -> None:
    clients, rounds = 4, 20
    started = [url_endpoint.start(_client, number, rounds) for number in range(clients)]
    for _, channel in started:
        for _ in range(rounds):
            request = channel.receive(timeout=WAIT)
            channel.send(request + b" ok", timeout=WAIT)
    for child, channel in started:
        assert child.result() == rounds
        with pytest.raises(EndOfChannel):
            channel.receive(timeout=WAIT)
        channel.close()


def test_accept_timeouts(url_endpoint: Endpoint) -> None:
    listener = url_endpoint.listener
    assert listener is not None
    with pytest.raises(WouldBlock):
        listener.accept(timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        listener.accept(timeout=0.2)
    assert_elapsed(started, 0.2)
