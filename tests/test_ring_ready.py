"""Readiness of rings and shm:// channels: doorbells under selectors, asyncio and unixipc.wait."""

from __future__ import annotations

import asyncio
import os
import random
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable

import pytest

import unixipc
from tests.conftest import Names
from tests.helpers import Child, drain_selected, wait_until
from unixipc import (
    ClosedResourceError,
    EndOfChannel,
    PeerDied,
    PosixMessageQueue,
    Ring,
    TimeoutExpired,
    Topic,
    WouldBlock,
    aio,
    ring,
    topic,
    wait,
)

Cleanup = Callable[..., None]
RINGS = 100


def _rings(names: Names, cleanup: Cleanup, count: int, capacity: int = 1024) -> list[Ring]:
    made = []
    for _ in range(count):
        name = names.posix("ring")
        handle = Ring.create(name, capacity)
        cleanup(ring.unlink, name)
        cleanup(handle.close)
        made.append(handle)
    return made


def _send_to(names: list[str], order: list[int], pause: float) -> int:
    """In another process: send one message to each ring, in the given order."""
    handles = [Ring.open(name) for name in names]
    try:
        for index in order:
            handles[index].send(b"to %d" % index, timeout=30)
            time.sleep(pause)
    finally:
        for handle in handles:
            handle.close()
    return len(order)


def test_selectors_wait_on_a_hundred_rings_at_once(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    rings = _rings(names, cleanup, RINGS)
    with selectors.DefaultSelector() as selector:
        for index, handle in enumerate(rings):
            selector.register(handle, selectors.EVENT_READ, index)
            assert not handle.ready()  # empty: the doorbell is armed
        assert selector.select(timeout=0) == []
        order = random.Random(5).sample(range(RINGS), RINGS)
        child = children(_send_to, [r.name for r in rings], order, 0.0005)
        received = drain_selected(selector, rings, RINGS)
        assert child.result() == RINGS
    assert received == {index: b"to %d" % index for index in range(RINGS)}


def test_asyncio_waits_on_a_hundred_rings_without_threads(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    rings = _rings(names, cleanup, RINGS)
    waiting = [aio.AsyncRing(handle) for handle in rings]

    async def main() -> list[bytes]:
        before = threading.active_count()
        tasks = [asyncio.ensure_future(r.receive(timeout=60)) for r in waiting]
        await asyncio.sleep(0.05)
        assert threading.active_count() == before  # no helper thread per wait
        order = random.Random(9).sample(range(RINGS), RINGS)
        child = children(_send_to, [r.name for r in rings], order, 0.0005)
        results = await asyncio.gather(*tasks)
        assert child.result() == RINGS
        return results

    assert asyncio.run(main()) == [b"to %d" % index for index in range(RINGS)]
    # The child's producers closed: every ring is ready (receive raises EndOfChannel).
    assert asyncio.run(aio.wait(rings, timeout=0)) == rings
    for handle in rings:
        handle.declare(producer=True)  # a live producer again: nothing is ready

    async def together() -> list[object]:
        asyncio.get_running_loop().call_later(0.05, rings[42].send, b"late")
        return await aio.wait(rings, timeout=30)

    assert asyncio.run(together()) == [rings[42]]
    assert rings[42].receive(timeout=0) == b"late"


def test_a_sender_waits_for_room_through_the_doorbell(names: Names, cleanup: Cleanup) -> None:
    (handle,) = _rings(names, cleanup, 1)
    sender = aio.AsyncRing(handle)
    consumer = Ring.open(handle.name)
    cleanup(consumer.close)
    message = b"m" * 200

    async def main() -> list[bytes]:
        async def produce() -> None:
            for _ in range(20):  # four times the capacity: it must wait for room
                await sender.send(message, timeout=30)

        producing = asyncio.ensure_future(produce())
        got = []
        while len(got) < 20:
            got += await aio.AsyncRing(consumer).receive_many(8, timeout=30)
        await producing
        return got

    assert asyncio.run(main()) == [message] * 20
    while handle.ready(send=True):  # fill it: then the send direction is armed
        handle.send(message)
    assert not handle.ready(send=True)
    with selectors.DefaultSelector() as selector:
        selector.register(handle, selectors.EVENT_READ)
        assert selector.select(timeout=0) == []
        consumer.receive()
        assert len(selector.select(timeout=30)) == 1
    assert handle.ready(send=True)


def test_readiness_when_the_peer_closes_or_dies(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    closing, dying = _rings(names, cleanup, 2)
    producer = Ring.open(closing.name)
    producer.declare(producer=True)
    assert not closing.ready()
    producer.close()  # the last producer: the consumer's doorbell rings
    assert wait([closing], timeout=30) == [closing]
    with pytest.raises(EndOfChannel):
        closing.receive(timeout=0)

    child = children(_declare_then_sleep, dying.name)
    wait_until(lambda: dying.info().producers == 1)
    assert not dying.ready()
    os.kill(child.pid, signal.SIGKILL)  # nobody rings: the 0.2 s looks find it
    assert wait([dying], timeout=30) == [dying]
    with pytest.raises(PeerDied):
        dying.receive(timeout=0)


def _declare_then_sleep(name: str) -> None:
    handle = Ring.open(name)
    handle.declare(producer=True)
    time.sleep(60)


def test_closing_a_ring_wakes_its_watchers_and_a_child_gets_its_own_doorbell(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    (handle,) = _rings(names, cleanup, 1)
    other = Ring.open(handle.name)
    fd = other.fileno()
    assert other.fileno() == fd  # made once
    assert not other.ready()
    assert other._bell is not None
    child = children(_receive_through_own_doorbell, other, other._bell.id)
    time.sleep(0.1)
    handle.send(b"to the child")
    assert child.result() == (True, b"to the child")
    assert not other.ready()
    threading.Timer(0.05, other.close).start()
    started = time.monotonic()
    with pytest.raises(ClosedResourceError):
        wait([other], timeout=30)  # close() in another thread rang it
    assert time.monotonic() - started < 10
    with pytest.raises(ClosedResourceError):
        other.fileno()


def _receive_through_own_doorbell(handle: Ring, parent_bell: bytes) -> tuple[bool, bytes]:
    handle.fileno()  # the parent's doorbell was dropped at fork: a new one, on our own slot
    assert handle._bell is not None
    assert unixipc.wait([handle], timeout=30) == [handle]
    return handle._bell.id != parent_bell, handle.receive(timeout=0)


def _feed_later(kind: str, target: str, pause: float) -> str:
    time.sleep(pause)
    if kind == "topic":
        with Topic.open(target) as handle:
            handle.publisher().publish(b"news")
    elif kind == "queue":
        with PosixMessageQueue.open(target) as queue:
            queue.send(b"job")
    elif kind == "ring":
        with Ring.open(target) as handle:
            handle.send(b"work")
    return kind


@pytest.mark.parametrize("kind", ["ring", "topic", "queue", "socket", "shm"])
def test_wait_on_rings_topics_queues_sockets_and_shm_channels(
    names: Names, cleanup: Cleanup, children: Callable[..., Child], kind: str
) -> None:
    (handle,) = _rings(names, cleanup, 1)
    topic_name = names.posix("topic")
    made_topic = Topic.create(topic_name, capacity=4, max_message_size=32)
    cleanup(topic.unlink, topic_name)
    cleanup(made_topic.close)
    subscriber = made_topic.subscribe(history=False)
    queue_name = names.posix("mq")
    queue = PosixMessageQueue.create(queue_name, max_messages=2, max_message_size=64)
    cleanup(queue.unlink)
    cleanup(queue.close)
    left, right = socket.socketpair()
    cleanup(left.close)
    cleanup(right.close)
    near, far = unixipc.channel_pair("shm", capacity=4096)
    cleanup(near.close)
    cleanup(far.close)
    objects = [handle, subscriber, queue, left, near]
    with pytest.raises(WouldBlock):
        wait(objects, timeout=0)
    with pytest.raises(TimeoutExpired):
        wait(objects, timeout=0.05)
    if kind == "socket":
        right.send(b"x")
    elif kind == "shm":
        threading.Timer(0.1, far.send, (b"over shm",)).start()
    else:
        target = {"ring": handle.name, "topic": topic_name, "queue": queue_name}[kind]
        children(_feed_later, kind, target, 0.1)
    expected = {"ring": handle, "topic": subscriber, "queue": queue, "socket": left}
    assert wait(objects, timeout=60) == [expected.get(kind, near)]
    if kind == "ring":
        assert handle.receive(timeout=0) == b"work"
    elif kind == "topic":
        assert subscriber.receive(timeout=0) == b"news"
    elif kind == "queue":
        assert queue.receive(timeout=0).data == b"job"
    elif kind == "socket":
        assert left.recv(1) == b"x"
    else:
        assert near.receive(timeout=0) == b"over shm"
    far.send(b"again")
    handle.send(b"both")
    assert wait(objects, timeout=5) == [handle, near]


def _echo_shm(channel: unixipc.Channel, count: int) -> int:
    with channel:
        for _ in range(count):
            channel.send(channel.receive(timeout=30), timeout=30)
    return count


def test_asyncio_shm_round_trips_use_no_helper_thread(children: Callable[..., Child]) -> None:
    near, far = unixipc.channel_pair("shm", capacity=4096, max_message_size=100_000)
    child = children(_echo_shm, far, 50)
    far.close()

    async def main() -> None:
        async with aio.AsyncChannel(near) as channel:
            before = threading.active_count()
            for number in range(50):
                message = os.urandom(number * 997 % 20_000)  # some span many ring records
                await channel.send(message, timeout=30)
                assert await channel.receive(timeout=30) == message
                assert threading.active_count() == before
            with pytest.raises(EndOfChannel):
                await channel.receive(timeout=30)

    asyncio.run(main())
    assert child.result() == 50


def _hold_then_sleep(channel: unixipc.Channel) -> None:
    channel.send(b"alive", timeout=30)
    time.sleep(60)


def test_wait_reports_a_shm_channel_whose_peer_was_killed(children: Callable[..., Child]) -> None:
    near, far = unixipc.channel_pair("shm", capacity=4096)
    child = children(_hold_then_sleep, far)
    far.close()
    with near:
        assert wait([near], timeout=30) == [near]
        assert near.receive(timeout=0) == b"alive"
        assert not near.ready()  # the peer lives: armed
        os.kill(child.pid, signal.SIGKILL)  # nobody rings: wait's 0.2 s looks find it
        assert wait([near], timeout=30) == [near]
        with pytest.raises(PeerDied):
            near.receive(timeout=0)
        assert near.ready()  # ended: receive raises at once
