"""unixipc topics (publish/subscribe over shared memory) as a two-process transport,
and pyzmq's publish/subscribe as the peer to compare the round trip with.

Latency: the driver publishes on topic "forth", the peer's subscriber takes it
and publishes the reply on topic "back". Throughput: the peer publishes on
"back". Subscribers block publishers (``overflow="block"``), so nothing is lost;
each one exists before anything it must see is published (the driver's is made
in ``setup``, before the fork).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ... import topic as topics
from ...topic import Subscriber, Topic
from ..transport import Link, Plan, Role, Transport, messages_in_flight
from ._common import SplitLink, quietly, remove_paths


def _directions(plan: Plan) -> tuple[str, ...]:
    return ("forth", "back") if plan.test == "latency" else ("back",)


class TopicTransport(Transport):
    name = "topic"
    family = "unixipc"
    summary = "unixipc.Topic, one topic each way: publish / receive_into"

    def setup(self, plan: Plan) -> None:
        capacity = max(2, messages_in_flight(plan.size, 1 << 16))
        self._topics = {
            direction: Topic.create(
                plan.posix_name(f"topic_{direction}"),
                capacity=capacity,
                max_message_size=plan.size,
            )
            for direction in _directions(plan)
        }
        # The driver's subscriber exists before the peer can publish anything.
        self._driver_subscriber = self._topics["back"].subscribe(history=False)

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        link = self.open(plan, "peer", "")
        announce("")  # its subscriber exists: nothing the driver publishes is missed
        return link

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        subscriber: Subscriber | None
        if role == "driver":
            sending = self._topics.get("forth")
            subscriber = self._driver_subscriber
        else:
            sending = self._topics["back"]
            subscriber = (
                self._topics["forth"].subscribe(history=False) if "forth" in self._topics else None
            )
        publisher = sending.publisher() if sending is not None else None
        closers = tuple(handle.close for handle in self._topics.values())
        return self._link(publisher, subscriber, bytearray(plan.size), closers)

    def _link(
        self, publisher: Any, subscriber: Any, buffer: bytearray, closers: tuple[Any, ...]
    ) -> Link:
        def receive() -> bytearray:
            subscriber.receive_into(buffer)
            return buffer

        return SplitLink(publisher.publish if publisher else _no_send, receive, closers)

    def cleanup(self, plan: Plan) -> None:
        for direction in ("forth", "back"):
            quietly(topics.unlink, plan.posix_name(f"topic_{direction}"))


def _no_send(data: Any) -> None:
    raise RuntimeError("this side only receives")


class _TopicBatchLink(Link):
    def __init__(self, publisher: Any, subscriber: Any, closers: tuple[Any, ...]) -> None:
        self._publisher = publisher
        self._subscriber = subscriber
        self._closers = closers

    def send(self, data: Any) -> None:
        self._publisher.publish(data)

    def receive(self) -> Any:
        return self._subscriber.receive()

    def receive_batch(self) -> list[bytes]:
        messages: list[bytes] = self._subscriber.receive_many(1024)
        return messages

    def close(self) -> None:
        for close in self._closers:
            close()


class TopicBatchTransport(TopicTransport):
    name = "topic-batch"
    summary = "unixipc.Topic: publish / receive_many"
    tests = ("throughput",)
    batch = True

    def _link(
        self, publisher: Any, subscriber: Any, buffer: bytearray, closers: tuple[Any, ...]
    ) -> Link:
        return _TopicBatchLink(publisher, subscriber, closers)


class ZmqPubSubTransport(Transport):
    """The round trip over pyzmq publish-subscribe: what a pub/sub user picks instead.

    XPUB reports each subscription, so each side starts publishing only once the
    other's SUB is subscribed (PUB/SUB drops what is sent before: the slow joiner).
    Latency only: PUB/SUB drops what a slow subscriber cannot take, so a stream's
    count would not be exact.
    """

    name = "zmq-pubsub"
    family = "peer"
    summary = "pyzmq XPUB/SUB over ipc://, one topic each way"
    requires = ("zmq",)
    tests = ("latency",)

    def _sockets(self, plan: Plan, role: Role) -> tuple[Any, Any, Any]:
        zmq: Any = importlib.import_module("zmq")
        context = zmq.Context()
        publishing = context.socket(zmq.XPUB)
        publishing.bind(f"ipc://{plan.path('forth' if role == 'driver' else 'back')}")
        subscribing = context.socket(zmq.SUB)
        subscribing.setsockopt(zmq.SUBSCRIBE, b"")
        subscribing.connect(f"ipc://{plan.path('back' if role == 'driver' else 'forth')}")
        return context, publishing, subscribing

    def _link(self, context: Any, publishing: Any, subscribing: Any) -> Link:
        publishing.recv()  # the other side's subscription: from now on nothing is dropped

        def close() -> None:
            publishing.close(linger=0)
            subscribing.close(linger=0)
            context.term()

        return SplitLink(publishing.send, subscribing.recv, (close,))

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        sockets = self._sockets(plan, "peer")
        announce("")
        return self._link(*sockets)

    def connect(self, plan: Plan, address: str) -> Link:
        return self._link(*self._sockets(plan, "driver"))

    def cleanup(self, plan: Plan) -> None:
        remove_paths(plan)
