"""unixipc channels, one adapter per URL scheme: how users choose between facilities.

``channel_pair(kind)`` for related processes (made before the fork), and
``listen(url)`` / ``connect(url)`` for the schemes with an address.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from typing import Any, ClassVar

import unixipc
from unixipc.channel import PairKind

from ...channels.sysvmq import token_base
from ..transport import AsyncLink, Link, Plan, Role, Test, Transport, Unsupported, buffer_capacity
from ._common import quietly, remove_paths, remove_shared_memory_names


def _channel_link(channel: Any, size: int, closers: tuple[Callable[[], Any], ...] = ()) -> Link:
    maximum = getattr(channel, "max_message_size", None)
    if maximum is not None and size > maximum:
        channel.close()
        raise Unsupported(f"messages larger than the channel's max_message_size {maximum}")
    buffer = bytearray(size)
    receive_into = channel.receive_into

    def receive() -> bytearray:
        receive_into(buffer)
        return buffer

    link = Link()
    link.send = channel.send  # type: ignore[method-assign]
    link.receive = receive  # type: ignore[method-assign]

    def close() -> None:
        channel.close()
        for closer in closers:
            closer()

    link.close = close  # type: ignore[method-assign]
    return link


class _AsyncChannelLink(AsyncLink):
    """A channel driven with ``unixipc.aio.AsyncChannel`` (``receive_into`` a buffer)."""

    def __init__(self, channel: Any, size: int, closers: tuple[Callable[[], Any], ...]) -> None:
        from unixipc import aio

        self._channel = channel
        self._closers = closers
        self._buffer = bytearray(size)
        self._async = aio.AsyncChannel(channel)
        self.asend = self._async.send  # type: ignore[method-assign]

    async def areceive(self) -> bytearray:
        await self._async.receive_into(self._buffer)
        return self._buffer

    def close(self) -> None:
        self._channel.close()
        for closer in self._closers:
            closer()


def _open_and_unlink(queue_type: Any, name: object) -> None:
    with queue_type.open(name) as queue:
        queue.unlink()


class _ChannelTransport(Transport):
    family = "unixipc"

    def options(self, plan: Plan) -> dict[str, Any]:
        """Options for listen/connect/channel_pair (the defaults, unless overridden)."""
        return {}

    def unavailable(self) -> str | None:
        missing = [
            name for name in ("listen", "connect", "channel_pair") if not hasattr(unixipc, name)
        ]
        if missing:
            return f"unixipc {unixipc.__version__} has no channels yet ({', '.join(missing)})"
        return None


class _PairTransport(_ChannelTransport):
    kind: ClassVar[PairKind] = "pipe"

    def setup(self, plan: Plan) -> None:
        self._pair = unixipc.channel_pair(self.kind, **self.options(plan))

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        mine, theirs = self._pair if role == "driver" else self._pair[::-1]
        theirs.close()
        return _channel_link(mine, plan.size)

    def cleanup(self, plan: Plan) -> None:
        pass  # a pair has no name; its objects go with the processes


class ChannelPipeTransport(_PairTransport):
    name = "ch-pipe"
    kind = "pipe"
    summary = "unixipc.channel_pair('pipe')"


class ChannelSocketpairTransport(_PairTransport):
    name = "ch-socketpair"
    kind = "socketpair"
    summary = "unixipc.channel_pair('socketpair')"


class ChannelShmTransport(_PairTransport):
    name = "ch-shm"
    kind = "shm"
    summary = "unixipc.channel_pair('shm') (a ring each way)"

    def options(self, plan: Plan) -> dict[str, Any]:
        return {"capacity": buffer_capacity(plan.size)}  # the same room as the others


class _UrlTransport(_ChannelTransport):
    def url(self, plan: Plan) -> str:
        raise NotImplementedError

    def listen_options(self, plan: Plan) -> dict[str, Any]:
        return self.options(plan)

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        listener = unixipc.listen(self.url(plan), **self.listen_options(plan))
        announce(str(getattr(listener, "url", self.url(plan))))
        channel = listener.accept()
        return _channel_link(channel, plan.size, (listener.close,))

    def connect(self, plan: Plan, address: str) -> Link:
        return _channel_link(unixipc.connect(address, **self.options(plan)), plan.size)

    def cleanup(self, plan: Plan) -> None:
        remove_paths(plan)


class ChannelFifoTransport(_UrlTransport):
    name = "ch-fifo"
    summary = "unixipc channel fifo:///path (server FIFO, a reply FIFO per client)"

    def url(self, plan: Plan) -> str:
        return f"fifo://{plan.path('fifo')}"


class ChannelUnixTransport(_UrlTransport):
    name = "ch-unix"
    summary = "unixipc channel unix:///path (stream socket, length-prefixed frames)"

    def url(self, plan: Plan) -> str:
        return f"unix://{plan.path('sock')}"


class ChannelTcpTransport(_UrlTransport):
    name = "ch-tcp"
    summary = "unixipc channel tcp://127.0.0.1 (length-prefixed frames)"

    def url(self, plan: Plan) -> str:
        return "tcp://127.0.0.1:0"


class ChannelMqTransport(_UrlTransport):
    name = "ch-mq"
    summary = "unixipc channel mq:///name (request queue, a reply queue per client)"

    def url(self, plan: Plan) -> str:
        return f"mq://{plan.posix_name('chmq')}"

    def cleanup(self, plan: Plan) -> None:
        queue_type = getattr(unixipc, "PosixMessageQueue", None)
        if queue_type is not None:
            quietly(_open_and_unlink, queue_type, plan.posix_name("chmq"))
        remove_shared_memory_names(plan.posix_name("chmq") + ".")


class ChannelSysvMqTransport(_UrlTransport):
    name = "ch-sysvmq"
    summary = "unixipc channel sysvmq://KEY (one queue, message type per client)"

    def url(self, plan: Plan) -> str:
        return f"sysvmq://{plan.sysv_key:#x}"

    def cleanup(self, plan: Plan) -> None:
        queue_type = getattr(unixipc, "SysVMessageQueue", None)
        if queue_type is not None:
            quietly(_open_and_unlink, queue_type, plan.sysv_key)
        remove_shared_memory_names(token_base(plan.sysv_key) + ".")


class ChannelShmUrlTransport(_UrlTransport):
    name = "ch-shm-url"
    summary = "unixipc channel shm://name (a ring each way, connected through a request ring)"

    def url(self, plan: Plan) -> str:
        return f"shm://{plan.prefix}_chshm"

    def options(self, plan: Plan) -> dict[str, Any]:
        return {"capacity": buffer_capacity(plan.size)}  # the client makes the rings

    def listen_options(self, plan: Plan) -> dict[str, Any]:
        return {}

    def cleanup(self, plan: Plan) -> None:
        for path in glob.glob(f"/dev/shm/{glob.escape(plan.prefix)}_chshm*"):
            quietly(os.unlink, path)


# asyncio on both sides (unixipc.aio): round trips only.


class _AsyncUrlTransport(_UrlTransport):
    tests: ClassVar[tuple[Test, ...]] = ("latency",)

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        listener = unixipc.listen(self.url(plan), **self.listen_options(plan))
        announce(str(getattr(listener, "url", self.url(plan))))
        return _AsyncChannelLink(listener.accept(), plan.size, (listener.close,))

    def connect(self, plan: Plan, address: str) -> Link:
        return _AsyncChannelLink(unixipc.connect(address, **self.options(plan)), plan.size, ())


class AioShmTransport(_AsyncUrlTransport, ChannelShmUrlTransport):
    name = "aio-shm"
    summary = "unixipc.aio over shm://name, asyncio on both sides (doorbells, no threads)"


class AioMqTransport(_AsyncUrlTransport, ChannelMqTransport):
    name = "aio-mq"
    summary = "unixipc.aio over mq:///name, asyncio on both sides (queue descriptors)"


class AioUnixTransport(_AsyncUrlTransport, ChannelUnixTransport):
    name = "aio-unix"
    summary = "unixipc.aio over unix:///path, asyncio on both sides"
