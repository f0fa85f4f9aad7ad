"""What a Python user would pick instead of unixipc, each used the way its docs show.

multiprocessing (Pipe, Queue, SimpleQueue), faster-fifo, pyzmq, posix_ipc, sysv_ipc,
iceoryx2 and a pure-Python shared-memory spin. Third-party modules are imported
only inside the adapters, so a missing one skips its rows with the reason.
Every bounded buffer gets the same capacity (:func:`buffer_capacity`).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import importlib
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

import unixipc

from ..transport import (
    Link,
    Plan,
    Role,
    Transport,
    buffer_capacity,
    messages_in_flight,
)
from ._common import SplitLink, quietly, read_limit, remove_paths

FOREVER = 1e6  # seconds: "block" for APIs whose timeout cannot be None


def _module(name: str) -> Any:
    return importlib.import_module(name)


def _ends(role: Role, pair: tuple[Any, Any]) -> tuple[Any, Any]:
    """(what this role sends on, what it receives on) given (forth, back)."""
    forth, back = pair
    return (forth, back) if role == "driver" else (back, forth)


class MpPipeTransport(Transport):
    name = "mp-pipe"
    summary = "multiprocessing.Pipe(): send_bytes / recv_bytes"

    def setup(self, plan: Plan) -> None:
        self._pair = multiprocessing.get_context("fork").Pipe(duplex=True)

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        mine, theirs = self._pair if role == "driver" else self._pair[::-1]
        theirs.close()
        return SplitLink(mine.send_bytes, mine.recv_bytes, (mine.close,))


class MpQueueTransport(Transport):
    name = "mp-queue"
    summary = "multiprocessing.Queue(maxsize): put / get, one queue each way"

    def setup(self, plan: Plan) -> None:
        context = multiprocessing.get_context("fork")
        depth = messages_in_flight(plan.size, 1024)
        self._queues = (context.Queue(depth), context.Queue(depth))

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        sending, receiving = _ends(role, self._queues)

        def close() -> None:
            for queue in self._queues:
                queue.close()
                queue.join_thread()  # everything put is flushed into the pipe

        return SplitLink(sending.put, receiving.get, (close,))


class MpSimpleQueueTransport(Transport):
    name = "mp-simplequeue"
    summary = "multiprocessing.SimpleQueue: put / get, one queue each way"

    def setup(self, plan: Plan) -> None:
        context = multiprocessing.get_context("fork")
        self._queues = (context.SimpleQueue(), context.SimpleQueue())

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        sending, receiving = _ends(role, self._queues)
        return SplitLink(sending.put, receiving.get, (sending.close, receiving.close))


class _FasterFifoLink(Link):
    def __init__(self, sending: Any, receiving: Any) -> None:
        self._sending = sending
        self._receiving = receiving

    def send(self, data: Any) -> None:
        self._sending.put(data, timeout=FOREVER)

    def receive(self) -> Any:
        return self._receiving.get(timeout=FOREVER)

    def send_batch(self, data: bytes, count: int) -> None:
        self._sending.put_many([data] * count, timeout=FOREVER)

    def receive_batch(self) -> Sequence[Any]:
        messages: list[Any] = self._receiving.get_many(timeout=FOREVER)
        return messages


class FasterFifoTransport(Transport):
    name = "faster-fifo"
    summary = "faster_fifo.Queue: put / get, one queue each way"
    requires = ("faster_fifo",)

    def setup(self, plan: Plan) -> None:
        queue = _module("faster_fifo").Queue
        # Room for the capacity plus the pickle framing of every message in it.
        room = buffer_capacity(plan.size) + 64 * messages_in_flight(plan.size)
        self._queues = (queue(max_size_bytes=room), queue(max_size_bytes=room))

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        return _FasterFifoLink(*_ends(role, self._queues))


class FasterFifoBatchTransport(FasterFifoTransport):
    name = "faster-fifo-batch"
    summary = "faster_fifo.Queue: put_many / get_many"
    tests = ("throughput",)
    batch = True


class _ZmqTransport(Transport):
    requires = ("zmq",)
    scheme = ""

    def _socket(self, plan: Plan) -> tuple[Any, Any]:
        zmq = _module("zmq")
        context = zmq.Context()
        socket = context.socket(zmq.PAIR)
        depth = messages_in_flight(plan.size, 1000)
        socket.setsockopt(zmq.SNDHWM, depth)
        socket.setsockopt(zmq.RCVHWM, depth)
        socket.setsockopt(zmq.LINGER, 10_000)
        return context, socket

    def _endpoint(self, plan: Plan) -> str:
        raise NotImplementedError

    def _link(self, plan: Plan, context: Any, socket: Any) -> Link:
        copy = plan.size < 65536  # pyzmq's advice: zero-copy only pays for large messages

        def send(data: Any) -> None:
            socket.send(data, copy=copy)

        def close() -> None:
            socket.close()
            context.term()

        return SplitLink(send, socket.recv, (close,))

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        context, socket = self._socket(plan)
        socket.bind(self._endpoint(plan))
        announce(socket.getsockopt_string(_module("zmq").LAST_ENDPOINT))
        return self._link(plan, context, socket)

    def connect(self, plan: Plan, address: str) -> Link:
        context, socket = self._socket(plan)
        socket.connect(address)
        return self._link(plan, context, socket)


class ZmqIpcTransport(_ZmqTransport):
    name = "zmq-ipc"
    summary = "pyzmq PAIR sockets over ipc:// (UNIX domain sockets)"

    def _endpoint(self, plan: Plan) -> str:
        return f"ipc://{plan.path('zmq')}"

    def cleanup(self, plan: Plan) -> None:
        remove_paths(plan)


class ZmqTcpTransport(_ZmqTransport):
    name = "zmq-tcp"
    summary = "pyzmq PAIR sockets over tcp://127.0.0.1"

    def _endpoint(self, plan: Plan) -> str:
        return "tcp://127.0.0.1:*"


class PosixIpcTransport(Transport):
    name = "posix_ipc"
    summary = "posix_ipc.MessageQueue (POSIX queues), one queue each way: send / receive"
    requires = ("posix_ipc",)

    def max_size(self) -> int | None:
        return read_limit("/proc/sys/fs/mqueue/msgsize_max", 8192)

    def setup(self, plan: Plan) -> None:
        posix_ipc = _module("posix_ipc")
        depth = messages_in_flight(plan.size, read_limit("/proc/sys/fs/mqueue/msg_max", 10))
        directions = ("forth", "back") if plan.test == "latency" else ("back",)
        self._queues = {
            direction: posix_ipc.MessageQueue(
                plan.posix_name(direction),
                posix_ipc.O_CREX,
                mode=0o600,
                max_messages=depth,
                max_message_size=plan.size,
            )
            for direction in directions
        }

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        queues = self._queues
        sending, receiving = ("forth", "back") if role == "driver" else ("back", "forth")

        def send(data: Any) -> None:
            queues[sending].send(data)

        def receive() -> bytes:
            data: bytes = queues[receiving].receive()[0]
            return data

        return SplitLink(send, receive, tuple(q.close for q in queues.values()))

    def cleanup(self, plan: Plan) -> None:
        posix_ipc = _module("posix_ipc")
        for direction in ("forth", "back"):
            quietly(posix_ipc.unlink_message_queue, plan.posix_name(direction))


class SysvIpcTransport(Transport):
    name = "sysv_ipc"
    summary = "sysv_ipc.MessageQueue (System V), one queue, message type per direction"
    requires = ("sysv_ipc",)

    def max_size(self) -> int | None:
        return read_limit("/proc/sys/kernel/msgmax", 8192)

    def setup(self, plan: Plan) -> None:
        sysv_ipc = _module("sysv_ipc")
        self._queue = sysv_ipc.MessageQueue(
            plan.sysv_key, sysv_ipc.IPC_CREX, mode=0o600, max_message_size=plan.size
        )

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        queue = self._queue
        send_type, receive_type = (1, 2) if role == "driver" else (2, 1)

        def send(data: Any) -> None:
            queue.send(data, type=send_type)

        def receive() -> bytes:
            data: bytes = queue.receive(type=receive_type)[0]
            return data

        return SplitLink(send, receive)

    def cleanup(self, plan: Plan) -> None:
        sysv_ipc = _module("sysv_ipc")
        quietly(lambda: sysv_ipc.MessageQueue(plan.sysv_key).remove())


class _IceoryxLink(Link):
    """Publish-subscribe services of byte slices, one each way; receivers poll."""

    def __init__(self, iox: Any, node: Any, publisher: Any, subscriber: Any, size: int) -> None:
        self._node = node
        self._publisher = publisher
        self._subscriber = subscriber
        self._size = size

    def send(self, data: Any) -> None:
        sample = self._publisher.loan_slice_uninit(self._size)
        ctypes.memmove(sample.payload().as_ptr(), bytes(data), self._size)
        sample.assume_init().send()

    def receive(self) -> bytes:
        receive = self._subscriber.receive
        while True:
            sample = receive()
            if sample is not None:
                break
        data = ctypes.string_at(sample.payload().as_ptr(), self._size)
        sample.delete()
        return data

    def close(self) -> None:
        for port in (self._publisher, self._subscriber):
            if port is not None:
                port.delete()


class IceoryxTransport(Transport):
    name = "iceoryx2"
    summary = "iceoryx2 publish-subscribe (Slice[c_uint8]), polling receive"
    requires = ("iceoryx2",)

    def _node(self, plan: Plan) -> tuple[Any, Any]:
        iox = _module("iceoryx2")
        iox.set_log_level(iox.LogLevel.Error)
        config = iox.config.default()
        # Our prefix and directory: everything it creates can be found and removed.
        config.global_cfg.prefix = iox.FileName.new(f"{plan.prefix}_")
        config.global_cfg.root_path = iox.Path.new(f"{plan.path('iox')}/")
        node = (
            iox.NodeBuilder.new()
            .config(config)
            .signal_handling_mode(iox.SignalHandlingMode.Disabled)
            .create(iox.ServiceType.Ipc)
        )
        return iox, node

    def _service(self, iox: Any, node: Any, name: str, depth: int) -> Any:
        return (
            node.service_builder(iox.ServiceName.new(name))
            .publish_subscribe(iox.Slice[ctypes.c_uint8])
            .enable_safe_overflow(False)  # block the publisher rather than drop
            .subscriber_max_buffer_size(depth)
            .open_or_create()
        )

    def setup(self, plan: Plan) -> None:
        os.makedirs(plan.path("iox"), exist_ok=True)

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        iox, node = self._node(plan)
        depth = messages_in_flight(plan.size, 256)
        services = {name: self._service(iox, node, name, depth) for name in ("forth", "back")}
        sending, receiving = _ends(role, (services["forth"], services["back"]))
        publisher = (
            sending.publisher_builder()
            .initial_max_slice_len(plan.size)
            .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered)
            .create()
        )
        subscriber = receiving.subscriber_builder().buffer_size(depth).create()
        return _IceoryxLink(iox, node, publisher, subscriber, plan.size)

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        link = self.open(plan, "peer", "")
        announce("")  # its subscriber exists: nothing the driver sends is lost
        return link

    def cleanup(self, plan: Plan) -> None:
        shutil.rmtree(plan.path("iox"), ignore_errors=True)
        for path in glob.glob(f"/dev/shm/{glob.escape(plan.prefix)}_*"):
            with contextlib.suppress(OSError):
                os.unlink(path)


class _SpinRing:
    """A single-producer single-consumer ring in shared memory, in pure Python.

    Counters are 8-byte words read and written whole; the data is written before
    the counter that publishes it. That is enough on x86-64 (stores are not
    reordered with stores, nor loads with loads) and is what a hand-written
    Python spin relies on; portable code needs the C atomics of unixipc.Ring.
    """

    HEADER = 128  # head and tail on separate cache lines

    def __init__(self, memory: memoryview, size: int) -> None:
        self.size = size
        self.slots = (len(memory) - self.HEADER) // size
        self.counters = memory[: self.HEADER].cast("Q")  # [0] head, [8] tail
        self.data = memory[self.HEADER :]
        self.buffer = bytearray(size)
        self.position = 0

    @classmethod
    def bytes_needed(cls, size: int, slots: int) -> int:
        return cls.HEADER + size * slots

    def send(self, message: Any) -> None:
        counters, position = self.counters, self.position
        while position - counters[8] >= self.slots:
            pass
        start = (position % self.slots) * self.size
        self.data[start : start + self.size] = message
        self.position = counters[0] = position + 1

    def receive(self) -> bytearray:
        counters, position = self.counters, self.position
        while counters[0] == position:
            pass
        start = (position % self.slots) * self.size
        self.buffer[:] = self.data[start : start + self.size]
        self.position = counters[8] = position + 1
        return self.buffer

    def release(self) -> None:
        self.counters.release()
        self.data.release()


class PySpinTransport(Transport):
    name = "py-shm-spin"
    summary = "unixipc.PosixSharedMemory + a pure-Python spinning ring, one each way"

    def setup(self, plan: Plan) -> None:
        slots = messages_in_flight(plan.size)
        ring_bytes = _SpinRing.bytes_needed(plan.size, slots)
        self._ring_bytes = ring_bytes
        self._memory = unixipc.PosixSharedMemory.create(plan.posix_name("spin"), 2 * ring_bytes)

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        buf = self._memory.buf
        forth = _SpinRing(buf[: self._ring_bytes], plan.size)
        back = _SpinRing(buf[self._ring_bytes :], plan.size)
        sending, receiving = _ends(role, (forth, back))

        def close() -> None:
            forth.release()
            back.release()
            self._memory.close()

        return SplitLink(sending.send, receiving.receive, (close,))

    def cleanup(self, plan: Plan) -> None:
        quietly(unixipc.posix_shm.unlink, plan.posix_name("spin"))
