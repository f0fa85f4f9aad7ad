"""RPC for asyncio: ``await client.call(...)`` and an asyncio server, over every channel URL.

::

    async with await unixipc.aio.rpc.connect("shm://calc", timeout=10) as client:
        results = await asyncio.gather(*(client.call("add", i, 1) for i in range(100)))
        async for item in await client.call("numbers", 5):   # a streaming method
            print(item)

    server = unixipc.aio.rpc.Server("shm://calc")

    @server.function
    async def add(a, b):                      # runs on the loop that serves
        return a + b

    await server.serve_forever()              # until cancelled or server.close()

Many calls share one connection: each has an id and its reply is matched to
it, whatever the order. A helper thread per connection receives replies and
hands them to the loop (a channel of any scheme can be waited on that way);
requests go out from the loop at once when the channel has room, else in order
through a helper thread, so the loop never blocks. Cancelling a task that
awaits a call cancels the call on the server (an ``async def`` handler gets
``CancelledError``; a stream's generator is closed).

The protocol, codecs, limits and errors are those of :mod:`unixipc.rpc`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from .._deadline import Deadline, check_timeout
from ..channel import Channel
from ..errors import ClosedResourceError, IPCError, MessageTooLarge, TimeoutExpired, WouldBlock
from ..rpc._client import ClientBase, StreamBase, StreamFinished, check_reply, parse_methods
from ..rpc._codec import Codec, check_codec_allowed, make_codec
from ..rpc._outbox import Outbox
from ..rpc._protocol import (
    BYE,
    CALL,
    CANCEL,
    CREDIT,
    FINAL,
    LIST,
    RESULT,
    STREAM,
    WINDOW,
    MethodInfo,
    check_name,
    hello,
    parse_welcome,
)
from ..rpc._server import ServerBase, ServerCore
from ..rpc._slices import SLICE, receive_slice, socket_waker
from . import connect as channel_connect

__all__ = ("AsyncClient", "AsyncStream", "Server", "connect")

# The most replies the receiving thread hands to the loop in one go.
_BATCH = 64


class _Call:
    __slots__ = ("abandoned", "finished", "id", "inbox", "waiter")

    def __init__(self, call_id: int) -> None:
        self.id = call_id
        self.inbox: deque[list[Any]] = deque()
        self.finished = False
        self.abandoned = False
        self.waiter: asyncio.Future[None] | None = None


def _wake(future: asyncio.Future[None] | None, error: BaseException | None = None) -> None:
    if future is not None and not future.done():
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class AsyncClient(ClientBase):
    """A connection to an RPC server for asyncio; made by :func:`connect`.

    Any number of tasks may call at the same time. At most the server's
    ``max_concurrency`` calls are in flight; more wait for a slot (their
    ``timeout`` counts meanwhile).
    """

    def __init__(
        self, channel: Channel, codec: Codec, limit: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._channel = channel
        self._codec = codec
        self._loop = loop
        self._send_lock = threading.Lock()
        self._outbox = Outbox(channel, self._send_lock, lambda: self._closed)
        self._pending: dict[int, _Call] = {}
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._free = limit
        self._next_id = 1
        self._receiver_done: asyncio.Future[None] = loop.create_future()
        self._wake = socket_waker(channel)  # a socket: block, and close() wakes
        self.max_concurrency = limit
        threading.Thread(target=self._receive, name="unixipc-rpc-aio", daemon=True).start()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def close(self) -> None:
        """Close the client: waiting calls raise :class:`ClosedResourceError`; the
        channel is closed by the receiving thread within 0.1 s (``aclose`` waits for
        that). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._break(ClosedResourceError(f"the RPC client of {self.url!r} is closed"))
        if self._wake is not None:
            with self._send_lock:
                if not self._channel.closed:
                    self._wake()

    async def aclose(self) -> None:
        """Close the client and wait until its channel is closed."""
        self.close()
        await asyncio.shield(self._receiver_done)

    async def call(
        self, name: str, /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """Call the server's method ``name``; return its result, or an
        :class:`AsyncStream` if the method streams.

        Cancelling the awaiting task cancels the call on the server.

        Raises:
            as :meth:`unixipc.rpc.Client.call`.
        """
        check_name(name)
        deadline = None if timeout is None else Deadline(timeout)
        call = await self._begin(deadline)
        left = None if deadline is None else deadline.remaining()
        self._send_first(call, [CALL, call.id, name, args, kwargs or None, left, WINDOW])
        message = await self._next(call, deadline)
        kind = message[0]
        if kind == RESULT:
            return message[2]
        if kind == STREAM:
            return AsyncStream(self, call, deadline)
        raise self._failure(message, deadline)

    async def methods(self, *, timeout: float | None = None) -> list[MethodInfo]:
        """The server's methods (see :meth:`unixipc.rpc.Client.methods`).

        Raises:
            as :meth:`call`.
        """
        deadline = None if timeout is None else Deadline(timeout)
        call = await self._begin(deadline)
        self._send_first(call, [LIST, call.id])
        message = await self._next(call, deadline)
        if message[0] != RESULT:
            raise self._failure(message)
        return parse_methods(message[2], self.url)

    # Slots, sending.

    async def _begin(self, deadline: Deadline | None) -> _Call:
        if self._broken is not None:
            raise self._error()
        if self._free > 0 and not self._slot_waiters:
            self._free -= 1
        else:
            waiter = self._loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                await self._until(waiter, deadline)
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._slot_freed()  # granted just as we gave up: pass it on
                else:
                    with contextlib.suppress(ValueError):
                        self._slot_waiters.remove(waiter)
                raise
        call = _Call(self._next_id)
        self._next_id += 1
        self._pending[call.id] = call
        return call

    def _slot_freed(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _send_first(self, call: _Call, message: list[Any]) -> None:
        try:
            self._send(message)
        except BaseException:
            del self._pending[call.id]
            self._slot_freed()
            raise

    def _send(self, message: list[Any]) -> None:
        if self._broken is not None:
            raise self._error()
        data = self._codec.encode(message)
        if len(data) > self._channel.max_message_size:
            raise MessageTooLarge(
                f"the request has {len(data)} bytes, more than the channel's "
                f"max_message_size ({self._channel.max_message_size})"
            )
        if not self._outbox.send(data):
            raise (
                self._error()
                if self._broken is not None
                else ClosedResourceError(f"the RPC client of {self.url!r} is closed")
            )

    def _abandon(self, call: _Call) -> None:
        """Give up on a call: drop its replies, and ask the server to cancel it."""
        call.inbox.clear()
        if call.finished or call.abandoned:
            return
        call.abandoned = True
        with contextlib.suppress(IPCError):
            self._send([CANCEL, call.id])

    # Receiving.

    async def _until(self, future: asyncio.Future[None], deadline: Deadline | None) -> None:
        """Await ``future``, failing with the deadline's error when it passes."""
        if deadline is None:
            await future
            return
        left = deadline.remaining()
        assert left is not None
        handle = self._loop.call_later(
            left, _wake, future, deadline.error(f"waiting for {self.url!r}")
        )
        try:
            await future
        finally:
            handle.cancel()

    async def _next(self, call: _Call, deadline: Deadline | None) -> list[Any]:
        """The call's next message; a timeout or cancellation abandons the call."""
        if not call.inbox:
            if self._broken is not None:
                raise self._error()
            call.waiter = self._loop.create_future()
            try:
                await self._until(call.waiter, deadline)
            except (asyncio.CancelledError, TimeoutExpired, WouldBlock):
                self._abandon(call)
                raise
            finally:
                call.waiter = None
        return call.inbox.popleft()

    def _receive(self) -> None:
        """The receiving thread: hand replies to the loop in batches."""
        receive = self._channel.receive
        post = self._loop.call_soon_threadsafe
        try:
            while not self._closed:
                try:
                    batch = [receive() if self._wake else receive_slice(receive, SLICE)]
                except (TimeoutExpired, WouldBlock):
                    continue
                except IPCError as error:
                    post(self._break, error)
                    return
                try:
                    while len(batch) < _BATCH:
                        batch.append(receive(timeout=0))
                except (TimeoutExpired, WouldBlock):
                    pass
                except IPCError as error:
                    post(self._deliver, batch)
                    post(self._break, error)
                    return
                post(self._deliver, batch)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting
        finally:
            with self._send_lock:
                self._channel.close()
            with contextlib.suppress(RuntimeError):
                post(_wake, self._receiver_done)

    def _deliver(self, batch: list[bytes]) -> None:
        for data in batch:
            try:
                message = check_reply(self._codec.decode(data))
            except ValueError as error:
                self._broke(str(error))
                return
            if message[0] == BYE:
                self._said_bye()
                return
            target = self._pending.get(message[1])
            if target is None:
                self._broke(f"a reply to no call in flight (id {message[1]!r})")
                return
            if message[0] in FINAL:
                del self._pending[target.id]
                target.finished = True
                self._slot_freed()
            if not target.abandoned:
                target.inbox.append(message)
                _wake(target.waiter)

    def _break(self, error: IPCError) -> None:
        """The connection is unusable: every waiting and later call raises ``error``."""
        if self._broken is None:
            self._broken = (type(error), str(error))
        for call in self._pending.values():
            _wake(call.waiter, self._error())
        while self._slot_waiters:
            _wake(self._slot_waiters.popleft(), self._error())


class AsyncStream(StreamBase, AsyncIterator[Any]):
    """The items a streaming method yields, for ``async for``.

    ``await stream.aclose()`` (or leaving ``async with``, or dropping it) stops
    the generator on the server.
    """

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Any:
        """The next item.

        Raises:
            StopAsyncIteration: the generator finished.
            RemoteError: the generator raised.
            WouldBlock, TimeoutExpired, EndOfChannel, PeerDied, ClosedResourceError:
                as :meth:`AsyncClient.call`.
        """
        if self._done:
            raise StopAsyncIteration
        try:
            message = await self._client._next(self._call, self._deadline)
        except BaseException:
            self._done = True
            raise
        try:
            item, credit = self._take(message)
        except StreamFinished:
            raise StopAsyncIteration from None
        if credit:
            self._client._send([CREDIT, self._call.id, credit])
        return item

    async def aclose(self) -> None:
        """Stop the stream: the server closes the generator. Idempotent."""
        if not self._done:
            self._done = True
            self._client._abandon(self._call)

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._client._loop.call_soon_threadsafe(self._client._abandon, self._call)


async def connect(
    url: str, *, timeout: float | None = None, codec: str = "msgpack", **channel_options: Any
) -> AsyncClient:
    """Connect to the RPC server at ``url`` for asyncio (see :func:`unixipc.rpc.connect`).

    Raises:
        as :func:`unixipc.rpc.connect`.
    """
    check_timeout(timeout)
    the_codec = make_codec(codec)
    deadline = Deadline(timeout)
    connection = await channel_connect(url, timeout=timeout, **channel_options)
    try:
        check_codec_allowed(the_codec, connection.channel)
        await connection.send(hello(the_codec.name), timeout=deadline.remaining())
        answer = await connection.receive(timeout=deadline.remaining())
        limit = parse_welcome(answer, url)
    except BaseException:
        connection.close()
        raise
    return AsyncClient(connection.channel, the_codec, limit, asyncio.get_running_loop())


class Server(ServerBase):
    """An RPC server for asyncio: ``await server.serve_forever()``.

    The same as :class:`unixipc.rpc.Server` (same arguments, same
    ``@server.function`` and ``server.register(obj)``), except that ``async
    def`` handlers run on the event loop that awaits :meth:`serve_forever`, so
    they share it with the rest of the program. Plain functions still run in
    the server's threads (never blocking the loop).

    Raises:
        as :class:`unixipc.rpc.Server`.
    """

    def __init__(
        self,
        url: str,
        *,
        codec: str = "msgpack",
        max_concurrency: int = 16,
        **channel_options: Any,
    ) -> None:
        super().__init__()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._core = ServerCore(
            self, url, codec, max_concurrency, channel_options, self._handler_loop
        )

    def _handler_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise ClosedResourceError("the RPC server is not serving")
        return self._loop

    async def serve_forever(self) -> None:
        """Serve clients until :meth:`close` is called or this task is cancelled
        (which closes the server).

        Raises:
            ClosedResourceError: the server is closed.
            RuntimeError: it is already serving.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        done: asyncio.Future[None] = loop.create_future()

        def serve() -> None:
            error: BaseException | None = None
            try:
                self._core.serve()
            except BaseException as raised:
                error = raised
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, done, error)

        threading.Thread(target=serve, name="unixipc-rpc-accept", daemon=True).start()
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            await self.wait_closed()
            raise

    def close(self) -> None:
        """Stop serving (see :meth:`unixipc.rpc.Server.close`) without waiting;
        ``await wait_closed()`` waits. Idempotent."""
        self._core.shutdown()

    async def wait_closed(self) -> None:
        """Close the server and wait until it stopped accepting and its connections
        ended (a few seconds at most)."""
        self.close()
        await asyncio.get_running_loop().run_in_executor(None, self._core.wait)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.wait_closed()
