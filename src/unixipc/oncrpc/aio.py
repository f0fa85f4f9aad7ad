"""Sun RPC for asyncio: a client that multiplexes calls, services with ``async def``.

::

    client = await calc.CALC_V1_AsyncClient.open("localhost", protocol="udp")
    async with client:
        total = await client.add(calc.pair(2, 3))

    class Calc(calc.CALC_V1_AsyncService):
        async def add(self, pair, call):
            return pair.a + pair.b

    async with AsyncServer(Calc()) as server:     # registered with rpcbind
        await server.serve_forever()

:class:`AsyncClient` has the behaviour of :class:`~unixipc.oncrpc.Client`
(rpcbind lookup, UDP retransmission, matching by transaction id, deadlines),
except that many calls may be in flight at once on one connection: replies
are handed to their callers by transaction id. :class:`AsyncServer` runs each
call of a UDP datagram in its own task and the calls of one TCP connection in
order; ``async def`` procedures are awaited, plain ones are called on the
event loop (keep them short). rpcbind is asked and told from a helper thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Sequence
from types import TracebackType
from typing import Any, ClassVar, TypeVar, cast

from .._deadline import Deadline
from ..errors import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    MessageTooLarge,
    PeerDied,
    TimeoutExpired,
    WouldBlock,
    from_os_error,
)
from . import xdr
from ._client import (
    CLIENT_TIMEOUT,
    DEFAULT_RETRANSMIT,
    DEFAULT_TIMEOUT,
    ClientBase,
    lookup_port,
)
from ._message import (
    CallInfo,
    reply_xid,
)
from ._server import ServerBase, ServiceBase, bind_sockets, fit_datagram, log
from ._transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    LAST_FRAGMENT,
    MAX_FRAGMENT,
    resolve,
    where,
)

__all__ = ("AsyncClient", "AsyncServer", "AsyncService")

_C = TypeVar("_C", bound="AsyncClient")
_S = TypeVar("_S", bound="AsyncServer")
_U32 = struct.Struct(">I")
_MAX_RETRANSMIT = 4.0
#: Calls of one TCP connection that an AsyncServer runs at once.
_CALLS_PER_CONNECTION = 64


async def read_record(reader: asyncio.StreamReader, limit: int, name: str) -> bytes:
    """One record-marked message from ``reader``.

    Raises:
        EndOfChannel: the stream ended between messages.
        PeerDied: it ended inside one.
        MessageTooLarge: the fragments exceed ``limit``.
    """
    pieces: list[bytes] = []
    total = 0
    while True:
        try:
            header = await reader.readexactly(4)
        except asyncio.IncompleteReadError as error:
            if not error.partial and not pieces:
                raise EndOfChannel(f"{name} closed the connection") from None
            raise PeerDied(f"{name} closed the connection in the middle of a message") from None
        word = _U32.unpack(header)[0]
        length = word & MAX_FRAGMENT
        total += length
        if total > limit:
            raise MessageTooLarge(f"{name}: a message of more than {limit} bytes")
        try:
            pieces.append(await reader.readexactly(length))
        except asyncio.IncompleteReadError:
            raise PeerDied(f"{name} closed the connection in the middle of a message") from None
        if word & LAST_FRAGMENT:
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def record(message: bytes) -> bytes:
    """``message`` as one record (a single last fragment)."""
    return _U32.pack(LAST_FRAGMENT | len(message)) + message


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client._deliver(data)

    def error_received(self, exc: Exception) -> None:
        self.client._fail_all(
            from_os_error(exc, "Sun RPC server", self.client._where)
            if isinstance(exc, OSError)
            else exc
        )


class AsyncClient(ClientBase):
    """An asyncio client of one program version (see :class:`unixipc.oncrpc.Client`).

    Make one with ``await AsyncClient.open(host, program, version, ...)``;
    classes generated from a ``.x`` file set ``program`` and ``version`` and
    add one coroutine method per procedure. Calls from many tasks share the
    connection.
    """

    program: int
    version: int

    def __init__(
        self,
        host: str,
        program: int | None = None,
        version: int | None = None,
        *,
        protocol: str = "tcp",
        port: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        auth: Any = None,
        retransmit: float = DEFAULT_RETRANSMIT,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._configure(
            host, program, version, protocol, port, timeout, auth, retransmit, max_message_size
        )
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._closed = False
        self._started = False
        self._address: Any = None
        self._reader_task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(
        cls: type[_C],
        host: str,
        program: int | None = None,
        version: int | None = None,
        *,
        protocol: str = "tcp",
        port: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        auth: Any = None,
        retransmit: float = DEFAULT_RETRANSMIT,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> _C:
        """Make a client and connect it (the arguments are the synchronous
        :class:`~unixipc.oncrpc.Client`'s). A client made with the constructor
        connects on its first call instead.

        Raises:
            ProgramNotRegistered: rpcbind has no such program version.
            TimeoutExpired: rpcbind or the connection did not answer in time.
        """
        self = cls(
            host,
            program,
            version,
            protocol=protocol,
            port=port,
            timeout=timeout,
            auth=auth,
            retransmit=retransmit,
            max_message_size=max_message_size,
        )
        await self._start(Deadline(self.timeout))
        return self

    async def _start(self, deadline: Deadline) -> None:
        """Ask rpcbind for the port if needed, then connect (or make the UDP endpoint)."""
        if self.port is None:
            self.port = await asyncio.to_thread(
                lookup_port, self.host, self.program, self.version, self.protocol, deadline
            )
        self._where = where(self.host, self.port, self.protocol)
        self._label = f"Sun RPC server {self._where}"
        family, self._address = resolve(self.host, self.port, self.protocol)
        if self.protocol == "tcp":
            await self._connect(deadline)
        else:
            loop = asyncio.get_running_loop()
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Datagrams(self), remote_addr=self._address, family=family
                )
            except OSError as error:
                raise from_os_error(error, "Sun RPC server", self._where) from None
            self._transport = transport
        self._started = True

    async def _connect(self, deadline: Deadline) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*self._address[:2]), deadline.remaining()
            )
        except asyncio.TimeoutError:
            raise deadline.error(f"connecting to {self._label}") from None
        except OSError as error:
            raise from_os_error(error, "Sun RPC server", self._where) from None
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._writer = writer
        self._reader_task = asyncio.get_running_loop().create_task(self._read_replies(reader))

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                self._deliver(await read_record(reader, self.max_message_size, self._label))
        except (IPCError, OSError) as error:
            self._fail_all(error)
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def _deliver(self, reply: bytes) -> None:
        future = self._pending.get(reply_xid(reply) or -1) if len(reply) >= 12 else None
        if future is not None and not future.done():
            future.set_result(reply)

    def _fail_all(self, error: BaseException) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` (or :meth:`close`) was called."""
        return self._closed

    async def null(self, *, timeout: float | None = CLIENT_TIMEOUT) -> None:
        """Call procedure 0 (a ping). Raises as :meth:`call`."""
        await self.call(0, b"", timeout=timeout)

    async def call(
        self, procedure: int, arguments: Any = b"", *, timeout: float | None = CLIENT_TIMEOUT
    ) -> bytes:
        """Call ``procedure`` with XDR-encoded ``arguments``; return the encoded results.

        Raises:
            as :meth:`unixipc.oncrpc.Client.call`.
        """
        reply, offset = await self._invoke(procedure, arguments, timeout)
        return reply[offset:]

    async def _call_typed(
        self,
        procedure: int,
        argument_types: Sequence[xdr.Type[Any]],
        arguments: Sequence[Any],
        result_type: xdr.Type[Any],
    ) -> Any:
        encoded = self._encode_arguments(argument_types, arguments)
        reply, offset = await self._invoke(procedure, encoded, CLIENT_TIMEOUT)
        return self._decode_result(reply, offset, result_type)

    async def _invoke(self, procedure: int, arguments: Any, timeout: Any) -> tuple[bytes, int]:
        deadline = Deadline(self.timeout if timeout is CLIENT_TIMEOUT else timeout)
        if self._closed:
            raise ClosedResourceError(f"{self.describe()} is closed")
        xid, message = self._call_message(procedure, arguments)
        if not self._started:
            await self._start(deadline)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[xid] = future
        try:
            if self.protocol == "tcp":
                reply = await self._exchange_stream(message, future, deadline)
            else:
                reply = await self._exchange_datagram(message, future, deadline)
        finally:
            del self._pending[xid]
        return reply, self._results_offset(reply, procedure)

    async def _exchange_stream(
        self, message: bytes, future: asyncio.Future[bytes], deadline: Deadline
    ) -> bytes:
        if self._writer is None:  # the connection broke: make a new one
            await self._connect(deadline)
        writer = self._writer
        assert writer is not None
        writer.write(record(message))
        try:
            await asyncio.wait_for(writer.drain(), deadline.remaining())
        except asyncio.TimeoutError:
            writer.close()  # part of the call may have gone out: the stream is out of step
            raise deadline.error(f"sending to {self._label}") from None
        except OSError as error:
            raise from_os_error(error, "Sun RPC server", self._where) from None
        return await self._wait(future, deadline.remaining(), deadline)

    async def _exchange_datagram(
        self, message: bytes, future: asyncio.Future[bytes], deadline: Deadline
    ) -> bytes:
        assert self._transport is not None
        interval = self.retransmit
        while True:
            self._transport.sendto(message)
            left = deadline.remaining()
            wait = interval if left is None else min(interval, left)
            try:
                return await self._wait(future, wait, deadline)
            except (TimeoutExpired, WouldBlock):
                if deadline.expired() or deadline.timeout == 0:
                    raise
            interval = min(interval * 2, _MAX_RETRANSMIT)

    async def _wait(
        self, future: asyncio.Future[bytes], wait: float | None, deadline: Deadline
    ) -> bytes:
        if wait == 0 and not future.done():
            raise deadline.error(f"calling {self._label}")
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait)
        except asyncio.TimeoutError:
            raise deadline.error(f"calling {self._label}") from None

    def close(self) -> None:
        """Close the connection or socket; calls in flight raise ClosedResourceError."""
        if self._closed:
            return
        self._closed = True
        self._fail_all(ClosedResourceError(f"{self.describe()} was closed during the call"))
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def aclose(self) -> None:
        """Close, and wait until the connection is closed."""
        task = self._reader_task
        self.close()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncService(ServiceBase):
    """A service whose procedures may be ``async def`` (see :class:`unixipc.oncrpc.Service`)."""

    async def _dispatch(self, call: CallInfo, data: bytes, offset: int) -> bytes:
        prepared = self._prepare(call, data, offset)
        if isinstance(prepared, bytes):
            return prepared
        method, arguments, result_type = prepared
        try:
            result = method(*arguments)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
        except Exception as error:
            return self._failure(call, error)
        return self._result(call, result_type, result)


class _ServerDatagrams(asyncio.DatagramProtocol):
    def __init__(self, server: AsyncServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server._spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: Any) -> None:
        reply = await self.server._handle(data, "udp", addr)
        if reply is not None and self.transport is not None:
            self.transport.sendto(fit_datagram(reply), addr)


class AsyncServer(ServerBase):
    """Serves :class:`AsyncService` (or :class:`~unixipc.oncrpc.Service`) objects on
    asyncio, with the options of :class:`unixipc.oncrpc.Server`.

    ``async with AsyncServer(...) as server`` starts it (binds, registers with
    rpcbind) and closes it (unregisters); ``ports`` tells where it listens.
    """

    kind: ClassVar[str] = "Sun RPC server"

    def __init__(
        self,
        *services: ServiceBase,
        host: str = "127.0.0.1",
        port: int = 0,
        protocols: Sequence[str] = ("tcp", "udp"),
        register: bool = True,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_connections: int = 64,
        idle_timeout: float | None = None,
    ) -> None:
        self._configure(
            services, ServiceBase, host, port, protocols, register,
            max_message_size, max_connections, idle_timeout,
        )  # fmt: skip
        self._tasks: set[asyncio.Task[Any]] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._connections = 0
        self._started = False
        self._closed = False
        self._done: asyncio.Event | None = None

    async def start(self: _S) -> _S:
        """Bind, listen and register; return the server.

        Raises:
            as the constructor of :class:`unixipc.oncrpc.Server`.
        """
        if self._closed:
            raise ClosedResourceError("the Sun RPC server is closed")
        if self._started:
            return self
        self._started = True
        self._done = asyncio.Event()
        loop = asyncio.get_running_loop()
        sockets = bind_sockets(self.host, self._port, self.protocols)
        try:
            for protocol, sock in sockets.items():
                self.ports[protocol] = sock.getsockname()[1]
                if protocol == "tcp":
                    self._servers.append(
                        await asyncio.start_server(self._serve_connection, sock=sock)
                    )
                else:
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: _ServerDatagrams(self), sock=sock
                    )
                    self._transports.append(transport)
            if self.register:
                await asyncio.to_thread(self._register)
        except BaseException:
            for sock in sockets.values():
                sock.close()
            await self.aclose()
            raise
        return self

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, data: bytes, protocol: str, peer: Any) -> bytes | None:
        routed = self._programs.route(data, protocol, peer)
        if routed is None or isinstance(routed, bytes):
            return routed
        service, call, offset = routed
        reply = service._dispatch(call, data, offset)
        if not isinstance(reply, bytes):
            reply = await reply
        assert isinstance(reply, bytes)
        return reply

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        if self._closed or self._connections >= self.max_connections:
            log.warning("refused a connection from %s", peer)
            writer.close()
            return
        self._connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        name = f"Sun RPC client {peer}"
        # Each call runs in a task of its own (an asyncio client may have many in
        # flight); each reply goes out in one write, so replies never interleave.
        in_flight = asyncio.Semaphore(_CALLS_PER_CONNECTION)
        calls: set[asyncio.Task[None]] = set()

        async def answer(message: bytes) -> None:
            try:
                reply = await self._handle(message, "tcp", peer)
                if reply is not None and not writer.is_closing():
                    writer.write(record(reply))
            finally:
                in_flight.release()

        try:
            while True:
                try:
                    message = await asyncio.wait_for(
                        read_record(reader, self.max_message_size, name), self.idle_timeout
                    )
                except (asyncio.TimeoutError, IPCError, OSError) as error:
                    log.debug("connection from %s ends: %r", peer, error)
                    return
                await in_flight.acquire()
                call = asyncio.get_running_loop().create_task(answer(message))
                calls.add(call)
                call.add_done_callback(calls.discard)
                try:
                    await asyncio.wait_for(writer.drain(), self.idle_timeout)
                except (asyncio.TimeoutError, OSError):
                    return
        finally:
            self._connections -= 1
            for call in calls:
                call.cancel()
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def serve_forever(self) -> None:
        """Start if needed, then serve until :meth:`aclose`."""
        await self.start()
        assert self._done is not None
        await self._done.wait()

    async def aclose(self) -> None:
        """Stop serving, unregister from rpcbind, close every connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._registrations:
            await asyncio.to_thread(self._unregister)
        for server in self._servers:
            server.close()
        for transport in self._transports:
            transport.close()
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        for server in self._servers:
            await server.wait_closed()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._done is not None:
            self._done.set()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closed

    async def __aenter__(self: _S) -> _S:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
