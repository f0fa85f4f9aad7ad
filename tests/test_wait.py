"""Readiness descriptors: selectors, asyncio and unixipc.wait over topics and other objects."""

from __future__ import annotations

import asyncio
import random
import selectors
import socket
import time
from collections.abc import Callable

import pytest

from tests.conftest import Names
from tests.helpers import Child, drain_selected
from unixipc import (
    PosixMessageQueue,
    TimeoutExpired,
    Topic,
    WaitSet,
    WouldBlock,
    aio,
    topic,
    wait,
)

Cleanup = Callable[..., None]
TOPICS = 100


def _topics(names: Names, cleanup: Cleanup, count: int) -> list[Topic]:
    made = []
    for _ in range(count):
        name = names.posix("topic")
        handle = Topic.create(name, capacity=4, max_message_size=32)
        cleanup(topic.unlink, name)
        cleanup(handle.close)
        made.append(handle)
    return made


def _publish_to(names: list[str], order: list[int], pause: float) -> int:
    """In another process: publish one message to each topic, in the given order."""
    handles = [Topic.open(name) for name in names]
    try:
        for index in order:
            publisher = handles[index].publisher()
            publisher.publish(b"to %d" % index, timeout=30)
            publisher.close()
            time.sleep(pause)
    finally:
        for handle in handles:
            handle.close()
    return len(order)


def test_selectors_wait_on_a_hundred_topics_at_once(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    topics = _topics(names, cleanup, TOPICS)
    subscribers = [handle.subscribe(history=False) for handle in topics]
    with selectors.DefaultSelector() as selector:
        for index, subscriber in enumerate(subscribers):
            selector.register(subscriber, selectors.EVENT_READ, index)
        assert selector.select(timeout=0) == []  # nothing published: nothing readable
        order = random.Random(7).sample(range(TOPICS), TOPICS)
        child = children(_publish_to, [t.name for t in topics], order, 0.0005)
        received = drain_selected(selector, subscribers, TOPICS)
        assert child.result() == TOPICS
    assert received == {index: b"to %d" % index for index in range(TOPICS)}


def test_a_new_subscriber_with_history_is_readable_at_once(names: Names, cleanup: Cleanup) -> None:
    name = names.posix("topic")
    handle = Topic.create(name, capacity=4, max_message_size=8, history=2)
    cleanup(topic.unlink, name)
    cleanup(handle.close)
    handle.publisher().publish(b"old")
    with selectors.DefaultSelector() as selector:
        selector.register(handle.subscribe(), selectors.EVENT_READ)
        assert len(selector.select(timeout=5)) == 1
        selector.register(handle.subscribe(history=False), selectors.EVENT_READ)
        assert len(selector.select(timeout=0)) == 1


def test_asyncio_waits_on_a_hundred_topics_without_threads(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    topics = _topics(names, cleanup, TOPICS)
    subscribers = [aio.AsyncSubscriber(handle.subscribe(history=False)) for handle in topics]

    async def main() -> list[bytes]:
        import threading

        before = threading.active_count()
        waiting = [asyncio.ensure_future(s.receive(timeout=60)) for s in subscribers]
        await asyncio.sleep(0.05)
        assert threading.active_count() == before  # no helper thread per wait
        order = random.Random(3).sample(range(TOPICS), TOPICS)
        child = children(_publish_to, [t.name for t in topics], order, 0.0005)
        results = await asyncio.gather(*waiting)
        assert child.result() == TOPICS
        return results

    results = asyncio.run(main())
    assert results == [b"to %d" % index for index in range(TOPICS)]


def test_asyncio_publisher_waits_for_room_and_subscriber_iterates(
    names: Names, cleanup: Cleanup
) -> None:
    (handle,) = _topics(names, cleanup, 1)
    publisher = aio.AsyncPublisher(handle.publisher())
    subscriber = aio.AsyncSubscriber(handle.subscribe())

    async def main() -> list[bytes]:
        async def produce() -> None:
            for number in range(20):  # five times the capacity: it must wait for room
                await publisher.publish(b"%d" % number, timeout=30)

        producing = asyncio.ensure_future(produce())
        got = []
        async for message in subscriber:
            got.append(message)
            if len(got) == 20:
                break
        await producing
        with pytest.raises(TimeoutExpired):
            await subscriber.receive(timeout=0.05)
        with pytest.raises(WouldBlock):
            await subscriber.receive(timeout=0)
        return got

    assert asyncio.run(main()) == [b"%d" % number for number in range(20)]


def _ring_later(kind: str, target: str, pause: float) -> str:
    time.sleep(pause)
    if kind == "topic":
        with Topic.open(target) as handle:
            handle.publisher().publish(b"news")
    elif kind == "queue":
        with PosixMessageQueue.open(target) as queue:
            queue.send(b"job")
    return kind


@pytest.mark.parametrize("kind", ["topic", "queue", "socket"])
def test_wait_returns_exactly_the_ready_objects_of_mixed_kinds(
    names: Names, cleanup: Cleanup, children: Callable[..., Child], kind: str
) -> None:
    (handle,) = _topics(names, cleanup, 1)
    subscriber = handle.subscribe(history=False)
    queue_name = names.posix("mq")
    queue = PosixMessageQueue.create(queue_name, max_messages=2, max_message_size=64)
    cleanup(queue.unlink)
    cleanup(queue.close)
    left, right = socket.socketpair()
    cleanup(left.close)
    cleanup(right.close)
    objects = [subscriber, queue, left]
    with pytest.raises(WouldBlock):
        wait(objects, timeout=0)
    with pytest.raises(TimeoutExpired):
        wait(objects, timeout=0.05)
    if kind == "socket":
        right.send(b"x")
    else:
        target = handle.name if kind == "topic" else queue_name
        children(_ring_later, kind, target, 0.1)
    expected = {"topic": subscriber, "queue": queue, "socket": left}[kind]
    assert wait(objects, timeout=60) == [expected]
    if kind == "topic":
        assert subscriber.receive(timeout=0) == b"news"
    elif kind == "queue":
        assert queue.receive(timeout=0).data == b"job"
    else:
        assert left.recv(1) == b"x"
    right.send(b"y")
    handle.publisher().publish(b"both")
    assert WaitSet(objects).wait(timeout=5) == [subscriber, left]


def test_async_wait_and_bad_objects(names: Names, cleanup: Cleanup) -> None:
    topics = _topics(names, cleanup, 3)
    subscribers = [handle.subscribe(history=False) for handle in topics]
    with pytest.raises(TypeError, match="fileno"):
        wait([object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one"):
        wait([])

    async def main() -> list[object]:
        asyncio.get_running_loop().call_later(0.05, topics[1].publisher().publish, b"one")
        return await aio.wait(subscribers, timeout=30)

    assert asyncio.run(main()) == [subscribers[1]]
    assert subscribers[1].receive(timeout=0) == b"one"
    assert not subscribers[1].ready()


def test_a_wait_set_keeps_its_objects_in_order(names: Names, cleanup: Cleanup) -> None:
    topics = _topics(names, cleanup, 2)
    first, second = (handle.subscribe(history=False) for handle in topics)
    waiting = WaitSet([second])
    waiting.add(first)
    waiting.add(second)  # once only
    assert len(waiting) == 2
    assert first in waiting
    topics[0].publisher().publish(b"a")
    topics[1].publisher().publish(b"b")
    assert waiting.wait(timeout=5) == [second, first]
    waiting.remove(second)
    assert second not in waiting
    with pytest.raises(KeyError):
        waiting.remove(second)
    assert waiting.wait(timeout=0) == [first]
