"""unixipc's facilities used through their own APIs (not through channels).

Facilities that are not part of this build of unixipc yet are skipped with the
reason; each adapter names the public API it relies on.
"""

from __future__ import annotations

from collections.abc import Callable
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
from ._common import FixedSizeReceiver, SplitLink, quietly, read_limit, remove_paths


def _api(*names: str) -> str | None:
    """Why the public names are missing from this unixipc, or None if all are there."""
    missing = [name for name in names if not hasattr(unixipc, name)]
    if missing:
        return f"unixipc {unixipc.__version__} has no {', '.join(missing)} (not built yet)"
    return None


def _stream_link(send_end: Any, receive_end: Any, size: int) -> Link:
    receiver = FixedSizeReceiver(receive_end.receive_into, size)
    return SplitLink(send_end.send_all, receiver.receive, (send_end.close, receive_end.close))


class PipeTransport(Transport):
    name = "pipe"
    family = "unixipc"
    summary = "unixipc.Pipe.create(), one pipe each way: send_all / receive_into"

    def setup(self, plan: Plan) -> None:
        self._forth = unixipc.Pipe.create()
        self._back = unixipc.Pipe.create()

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        (forth_r, forth_w), (back_r, back_w) = self._forth, self._back
        send_end: Any
        receive_end: Any
        unused: tuple[Any, Any]
        if role == "driver":
            send_end, receive_end, unused = forth_w, back_r, (forth_r, back_w)
        else:
            send_end, receive_end, unused = back_w, forth_r, (forth_w, back_r)
        for end in unused:
            end.close()
        return _stream_link(send_end, receive_end, plan.size)


class FifoTransport(Transport):
    name = "fifo"
    family = "unixipc"
    summary = "unixipc.Fifo, one FIFO each way: send_all / receive_into"

    def setup(self, plan: Plan) -> None:
        unixipc.fifo.mkfifo(plan.path("forth"))
        unixipc.fifo.mkfifo(plan.path("back"))

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        announce("")
        receive_end = unixipc.Fifo.open(plan.path("forth"), "r")
        send_end = unixipc.Fifo.open(plan.path("back"), "w")
        return _stream_link(send_end, receive_end, plan.size)

    def connect(self, plan: Plan, address: str) -> Link:
        send_end = unixipc.Fifo.open(plan.path("forth"), "w")
        receive_end = unixipc.Fifo.open(plan.path("back"), "r")
        return _stream_link(send_end, receive_end, plan.size)

    def cleanup(self, plan: Plan) -> None:
        remove_paths(plan)


def _directions(plan: Plan) -> tuple[str, ...]:
    """The directions a test needs: streaming only goes from the peer to the driver."""
    return ("forth", "back") if plan.test == "latency" else ("back",)


class PosixMqTransport(Transport):
    name = "posix-mq"
    family = "unixipc"
    summary = "unixipc.PosixMessageQueue, one queue each way: send / receive_into"

    def unavailable(self) -> str | None:
        return _api("PosixMessageQueue")

    def max_size(self) -> int | None:
        return read_limit("/proc/sys/fs/mqueue/msgsize_max", 8192)

    def setup(self, plan: Plan) -> None:
        depth = messages_in_flight(plan.size, read_limit("/proc/sys/fs/mqueue/msg_max", 10))
        self._queues = {
            direction: unixipc.PosixMessageQueue.create(
                plan.posix_name(direction), max_messages=depth, max_message_size=plan.size
            )
            for direction in _directions(plan)
        }

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        sending = "forth" if role == "driver" else "back"
        receiving = "back" if role == "driver" else "forth"
        send_queue = self._queues.get(sending)
        receive_queue = self._queues.get(receiving)
        buffer = bytearray(plan.size)

        def receive() -> bytearray:
            assert receive_queue is not None
            receive_queue.receive_into(buffer)
            return buffer

        send = send_queue.send if send_queue is not None else _no_send
        return SplitLink(send, receive, tuple(q.close for q in self._queues.values()))

    def cleanup(self, plan: Plan) -> None:
        for direction in ("forth", "back"):
            quietly(unixipc.posix_mq.unlink, plan.posix_name(direction))


def _no_send(data: Any) -> None:
    raise RuntimeError("this direction is not used by the test")


class SysVMqTransport(Transport):
    name = "sysv-mq"
    family = "unixipc"
    summary = "unixipc.SysVMessageQueue, one queue, message type per direction"

    def unavailable(self) -> str | None:
        return _api("SysVMessageQueue")

    def max_size(self) -> int | None:
        return read_limit("/proc/sys/kernel/msgmax", 8192)

    def setup(self, plan: Plan) -> None:
        self._queue = unixipc.SysVMessageQueue.create(plan.sysv_key)

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        queue = self._queue
        send_type, receive_type = (1, 2) if role == "driver" else (2, 1)

        def send(data: Any) -> None:
            queue.send(data, type=send_type)

        buffer = bytearray(plan.size)

        def receive() -> bytearray:
            queue.receive_into(buffer, type=receive_type)
            return buffer

        return SplitLink(send, receive, (queue.close,))

    def cleanup(self, plan: Plan) -> None:
        quietly(unixipc.sysv_mq.unlink, plan.sysv_key)


class RingTransport(Transport):
    name = "shm-ring"
    family = "unixipc"
    summary = "unixipc.Ring, one ring each way: send / receive_into"

    def unavailable(self) -> str | None:
        return _api("Ring")

    def setup(self, plan: Plan) -> None:
        self._rings = {
            direction: unixipc.Ring.create(plan.posix_name(direction), buffer_capacity(plan.size))
            for direction in _directions(plan)
        }

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        sending = self._rings.get("forth" if role == "driver" else "back")
        receiving = self._rings.get("back" if role == "driver" else "forth")
        buffer = bytearray(plan.size)
        closers = tuple(ring.close for ring in self._rings.values())
        return self._link(sending, receiving, buffer, closers)

    def _link(
        self, sending: Any, receiving: Any, buffer: bytearray, closers: tuple[Any, ...]
    ) -> Link:
        def receive() -> bytearray:
            receiving.receive_into(buffer)
            return buffer

        return SplitLink(sending.send if sending else _no_send, receive, closers)

    def cleanup(self, plan: Plan) -> None:
        for direction in ("forth", "back"):
            quietly(unixipc.ring.unlink, plan.posix_name(direction))


class _RingBatchLink(Link):
    def __init__(self, sending: Any, receiving: Any, closers: tuple[Any, ...]) -> None:
        self._sending = sending
        self._receiving = receiving
        self._closers = closers

    def send(self, data: Any) -> None:
        self._sending.send(data)

    def receive(self) -> Any:
        return self._receiving.receive()

    def send_batch(self, data: bytes, count: int) -> None:
        self._sending.send_many([data] * count)

    def receive_batch(self) -> list[bytes]:
        messages: list[bytes] = self._receiving.receive_many(1024)
        return messages

    def close(self) -> None:
        for close in self._closers:
            close()


class RingBatchTransport(RingTransport):
    name = "shm-ring-batch"
    summary = "unixipc.Ring: send_many / receive_many"
    tests = ("throughput",)
    batch = True

    def _link(
        self, sending: Any, receiving: Any, buffer: bytearray, closers: tuple[Any, ...]
    ) -> Link:
        return _RingBatchLink(sending, receiving, closers)


class ShmSemaphoreTransport(Transport):
    """The textbook pattern: a shared buffer per direction with 'full' and 'empty' semaphores."""

    name = "shm-sem"
    family = "unixipc"
    summary = "unixipc.PosixSharedMemory + PosixSemaphore.in_buffer, one slot each way"

    def unavailable(self) -> str | None:
        return _api("PosixSemaphore")

    @staticmethod
    def _layout(size: int) -> tuple[int, int]:
        """(bytes per semaphore, bytes per direction): full, empty, then the message."""
        semaphore = unixipc.PosixSemaphore
        room = -(-semaphore.SIZE // semaphore.ALIGNMENT) * semaphore.ALIGNMENT
        slot = -(-(2 * room + size) // semaphore.ALIGNMENT) * semaphore.ALIGNMENT
        return room, slot

    def setup(self, plan: Plan) -> None:
        room, slot = self._layout(plan.size)
        self._memory = unixipc.PosixSharedMemory.create(plan.posix_name("sem"), 2 * slot)
        for base in (0, slot):
            for offset, value in ((base, 0), (base + room, 1)):  # full = 0, empty = 1
                unixipc.PosixSemaphore.in_buffer(self._memory, offset, value=value).close()

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        room, slot = self._layout(plan.size)
        memory = self._memory

        def direction(index: int) -> tuple[Any, Any, memoryview]:
            base = index * slot
            full = unixipc.PosixSemaphore.in_buffer(memory, base)
            empty = unixipc.PosixSemaphore.in_buffer(memory, base + room)
            return full, empty, memory.buf[base + 2 * room : base + 2 * room + plan.size]

        out_full, out_empty, out_data = direction(0 if role == "driver" else 1)
        in_full, in_empty, in_data = direction(1 if role == "driver" else 0)
        received = bytearray(plan.size)

        def send(data: Any) -> None:
            out_empty.acquire()
            out_data[:] = data
            out_full.release()

        def receive() -> bytearray:
            in_full.acquire()
            received[:] = in_data
            in_empty.release()
            return received

        def close() -> None:
            for semaphore in (out_full, out_empty, in_full, in_empty):
                semaphore.close()
            out_data.release()
            in_data.release()
            memory.close()

        return SplitLink(send, receive, (close,))

    def cleanup(self, plan: Plan) -> None:
        quietly(unixipc.posix_shm.unlink, plan.posix_name("sem"))


def _framed_socket_link(sock: Any, size: int, closers: tuple[Any, ...] = ()) -> Link:
    sockets = unixipc.sockets
    buffer = bytearray(size)

    def send(data: Any) -> None:
        sockets.send_message(sock, data)

    def receive() -> bytearray:
        sockets.receive_message_into(sock, buffer)
        return buffer

    return SplitLink(send, receive, (sock.close, *closers))


class UnixSocketTransport(Transport):
    name = "unix"
    family = "unixipc"
    summary = "unixipc.sockets.unix_listen/unix_connect: send_message / receive_message_into"

    def unavailable(self) -> str | None:
        return _api("sockets")

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        listener = unixipc.sockets.unix_listen(plan.path("sock"))
        announce("")
        connection, _ = listener.accept()
        return _framed_socket_link(connection, plan.size, (listener.close,))

    def connect(self, plan: Plan, address: str) -> Link:
        return _framed_socket_link(unixipc.sockets.unix_connect(plan.path("sock")), plan.size)

    def cleanup(self, plan: Plan) -> None:
        remove_paths(plan)


class TcpSocketTransport(Transport):
    name = "tcp"
    family = "unixipc"
    summary = "unixipc.sockets.tcp_listen/tcp_connect on 127.0.0.1 (TCP_NODELAY), framed"

    def unavailable(self) -> str | None:
        return _api("sockets")

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        listener = unixipc.sockets.tcp_listen("127.0.0.1", 0)
        announce(str(listener.address[1]))
        connection, _ = listener.accept()
        return _framed_socket_link(connection, plan.size, (listener.close,))

    def connect(self, plan: Plan, address: str) -> Link:
        sock = unixipc.sockets.tcp_connect("127.0.0.1", int(address))
        return _framed_socket_link(sock, plan.size)
