"""The Sun RPC server: services and the threads that serve them (private)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import functools
import logging
import select
import socket
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from .._deadline import Deadline, check_timeout
from .._resource import Resource
from ..errors import IPCError, from_os_error
from . import xdr
from ._errors import AuthError, GarbageArguments, ProcedureUnavailable
from ._message import (
    AUTH_ERROR,
    GARBAGE_ARGS,
    PROC_UNAVAIL,
    PROG_MISMATCH,
    PROG_UNAVAIL,
    SUCCESS,
    SYSTEM_ERR,
    CallInfo,
    Denied,
    accepted_reply,
    denied_reply,
    parse_call,
)
from ._transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_DATAGRAM,
    RecordStream,
    check_host,
    check_port,
    check_protocol,
    check_size,
    resolve,
)

log = logging.getLogger("unixipc.oncrpc")

_TWO = struct.Struct(">II")


@dataclasses.dataclass(frozen=True)
class Procedure:
    """One procedure of a service: the method that runs it and its XDR types.

    ``arguments`` lists one XDR type per argument (empty for ``void``); types
    may be :class:`~unixipc.oncrpc.xdr.Type` objects, Struct/Union classes or
    IntEnum classes.
    """

    name: str
    arguments: tuple[Any, ...] = ()
    result: Any = xdr.VOID


class ServiceBase:
    """What synchronous and asynchronous services share: procedures and replies."""

    program: ClassVar[int]
    version: ClassVar[int]
    procedures: ClassVar[Mapping[int, Procedure]] = {}

    def _procedure(
        self, number: int
    ) -> tuple[Callable[..., Any], list[xdr.Type[Any]], xdr.Type[Any]] | None:
        cache: dict[int, Any] = self.__dict__.setdefault("_resolved", {})
        found = cache.get(number)
        if found is None:
            spec = self.procedures.get(number)
            if spec is None:
                return None
            found = cache[number] = (
                getattr(self, spec.name),
                [xdr.as_type(t) for t in spec.arguments],
                xdr.as_type(spec.result),
            )
        return found

    def _prepare(
        self, call: CallInfo, data: bytes, offset: int
    ) -> tuple[Callable[..., Any], list[Any], xdr.Type[Any]] | bytes:
        """The method, decoded arguments and result type; or the reply when there is none."""
        found = self._procedure(call.procedure)
        if found is None:
            if call.procedure == 0:
                return accepted_reply(call.xid, SUCCESS)
            return accepted_reply(call.xid, PROC_UNAVAIL)
        method, argument_types, result_type = found
        arguments = []
        try:
            for argument_type in argument_types:
                value, offset = argument_type.decode_from(data, offset)
                arguments.append(value)
        except xdr.XdrError as error:
            log.debug("garbage arguments from %s: %s", call.peer, error)
            return accepted_reply(call.xid, GARBAGE_ARGS)
        if offset != len(data):
            return accepted_reply(call.xid, GARBAGE_ARGS)
        arguments.append(call)
        return method, arguments, result_type

    @staticmethod
    def _result(call: CallInfo, result_type: xdr.Type[Any], result: Any) -> bytes:
        try:
            return accepted_reply(call.xid, SUCCESS, result_type.encode(result))
        except (TypeError, ValueError) as error:
            log.error(
                "procedure %d returned a value that is not a %s: %s",
                call.procedure,
                result_type.name,
                error,
            )
            return accepted_reply(call.xid, SYSTEM_ERR)

    @staticmethod
    def _failure(call: CallInfo, error: BaseException) -> bytes:
        if isinstance(error, AuthError):
            return denied_reply(call.xid, AUTH_ERROR, int(error.status))
        if isinstance(error, (NotImplementedError, ProcedureUnavailable)):
            return accepted_reply(call.xid, PROC_UNAVAIL)
        if isinstance(error, GarbageArguments):
            return accepted_reply(call.xid, GARBAGE_ARGS)
        log.error(
            "program %d version %d procedure %d failed",
            call.program,
            call.version,
            call.procedure,
            exc_info=error,
        )
        return accepted_reply(call.xid, SYSTEM_ERR)

    def _dispatch(self, call: CallInfo, data: bytes, offset: int) -> Any:
        """The reply to a call routed here (bytes, or an awaitable of them)."""
        raise NotImplementedError


class Service(ServiceBase):
    """One version of one program, served by a :class:`Server`.

    Subclass the class generated from a ``.x`` file (it sets ``program``,
    ``version`` and ``procedures`` and declares one method per procedure), and
    override the methods. A method gets the decoded arguments and then a
    :class:`CallInfo` (the caller's credentials and address), and returns the
    result. Raising :class:`AuthError` refuses the caller (MSG_DENIED),
    ``NotImplementedError`` or :class:`ProcedureUnavailable` answers
    PROC_UNAVAIL, :class:`GarbageArguments` answers GARBAGE_ARGS, and any other
    exception answers SYSTEM_ERR (and is logged on ``unixipc.oncrpc``).
    Procedure 0 (NULL) is answered with nothing unless ``procedures`` has it.
    """

    def _dispatch(self, call: CallInfo, data: bytes, offset: int) -> bytes:
        prepared = self._prepare(call, data, offset)
        if isinstance(prepared, bytes):
            return prepared
        method, arguments, result_type = prepared
        try:
            result = method(*arguments)
        except Exception as error:
            return self._failure(call, error)
        return self._result(call, result_type, result)


class Programs:
    """Which service answers which (program, version); the replies for the others."""

    def __init__(self, services: Sequence[ServiceBase], base: type) -> None:
        self.services: dict[tuple[int, int], ServiceBase] = {}
        for service in services:
            if not isinstance(service, base):
                raise TypeError(f"services must be {base.__name__} instances, not {service!r}")
            for attribute in ("program", "version"):
                if not isinstance(getattr(service, attribute, None), int):
                    raise TypeError(f"{type(service).__name__} has no {attribute} number")
            key = (service.program, service.version)
            if key in self.services:
                raise ValueError(f"two services for program {key[0]} version {key[1]}")
            self.services[key] = service
        if not self.services:
            raise TypeError("a server needs at least one service")
        self.versions: dict[int, tuple[int, int]] = {}
        for program, version in self.services:
            low, high = self.versions.get(program, (version, version))
            self.versions[program] = (min(low, version), max(high, version))

    def route(
        self, data: bytes, protocol: str, peer: Any
    ) -> tuple[ServiceBase, CallInfo, int] | bytes | None:
        """The service and decoded call; else the reply to send, or None for garbage."""
        try:
            call, offset = parse_call(data, protocol, peer)
        except xdr.XdrError as error:
            log.debug("dropped a message from %s that is not a call: %s", peer, error)
            return None
        except Denied as denied:
            return denied.reply
        service = self.services.get((call.program, call.version))
        if service is not None:
            return service, call, offset
        versions = self.versions.get(call.program)
        if versions is None:
            return accepted_reply(call.xid, PROG_UNAVAIL)
        return accepted_reply(call.xid, PROG_MISMATCH, _TWO.pack(*versions))


def fit_datagram(reply: bytes) -> bytes:
    """A reply too large for one datagram becomes SYSTEM_ERR (logged)."""
    if len(reply) <= MAX_DATAGRAM:
        return reply
    log.error("a reply of %d bytes does not fit in a UDP datagram", len(reply))
    return accepted_reply(_TWO.unpack_from(reply, 0)[0], SYSTEM_ERR)


def bind_sockets(host: str, port: int, protocols: Sequence[str]) -> dict[str, socket.socket]:
    """Listening TCP and bound UDP sockets, on one port number when it is free for both."""
    bound: dict[str, socket.socket] = {}
    try:
        for protocol in protocols:
            family, address = resolve(host, port, protocol)
            if port == 0 and bound:  # try the port the first protocol got
                address = (address[0], next(iter(bound.values())).getsockname()[1], *address[2:])
            kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
            sock = socket.socket(family, kind)
            bound[protocol] = sock
            if protocol == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as error:
                if error.errno != errno.EADDRINUSE or port != 0:
                    raise from_os_error(error, "Sun RPC server address", f"{host}:{port}") from None
                sock.bind((address[0], 0, *address[2:]))
            if protocol == "tcp":
                sock.listen(64)
            sock.setblocking(False)
    except BaseException:
        for sock in bound.values():
            sock.close()
        raise
    return bound


def check_protocols(protocols: object) -> tuple[str, ...]:
    if isinstance(protocols, str):
        protocols = (protocols,)
    if not isinstance(protocols, (tuple, list)) or not protocols:
        raise TypeError("protocols must be a non-empty sequence of 'tcp' and 'udp'")
    checked = tuple(dict.fromkeys(check_protocol(p, "protocols[]") for p in protocols))
    return checked


class ServerBase:
    """What the threaded and the asyncio servers share: options, routing, rpcbind."""

    def _configure(
        self,
        services: Sequence[ServiceBase],
        service_class: type,
        host: str,
        port: int,
        protocols: Sequence[str],
        register: bool,
        max_message_size: int,
        max_connections: int,
        idle_timeout: float | None,
    ) -> None:
        """Check every argument (before any system call) and keep them."""
        self._programs = Programs(services, service_class)
        self.host = check_host(host)
        self._port = check_port(port, allow_zero=True)
        self.protocols = check_protocols(protocols)
        if not isinstance(register, bool):
            raise TypeError("register must be a bool")
        self.register = register
        self.max_message_size = check_size(max_message_size, "max_message_size", 64, 1 << 31)
        self.max_connections = check_size(max_connections, "max_connections", 1, 1 << 16)
        self.idle_timeout = check_timeout(idle_timeout, "idle_timeout")
        self.ports: dict[str, int] = {}
        self._registrations: list[Any] = []

    @property
    def services(self) -> list[ServiceBase]:
        """The services this server runs."""
        return list(self._programs.services.values())

    def _register(self) -> None:
        """Register every (program, version, protocol) with this machine's rpcbind."""
        from . import rpcbind

        for program, version in self._programs.services:
            for protocol, port in self.ports.items():
                self._registrations.append(
                    rpcbind.register(program, version, protocol, port, host=self.host)
                )

    def _unregister(self) -> None:
        """Undo :meth:`_register` (a failure is logged: closing goes on)."""
        for registration in reversed(self._registrations):
            try:
                registration.unregister()
            except (IPCError, OSError) as error:
                log.warning("could not unregister from rpcbind: %s", error)
        self._registrations.clear()


class Server(ServerBase, Resource):
    """Serves :class:`Service` objects over TCP and UDP, registered with rpcbind.

    ::

        with oncrpc.Server(Calc(), port=0) as server:   # Calc: a Service subclass
            server.serve_forever()                      # or server.start()

    Each TCP connection gets a thread (at most ``max_connections`` at once;
    more are closed at once), which runs its calls one after another; UDP calls
    run on a pool of ``workers`` threads (datagrams beyond what the pool can
    queue are dropped: the client retransmits). ``host`` defaults to the
    loopback address: give ``"0.0.0.0"`` to be reachable from other hosts.
    With ``register=True`` each (program, version, protocol) is registered
    with the rpcbind on this machine (a registration left by a server that no
    longer answers is replaced; a live server's is not) and unregistered by
    :meth:`close`. ``idle_timeout`` closes TCP connections that stay silent
    that long (None: never). Messages over ``max_message_size`` bytes close
    their connection.

    Raises (constructor):
        ResourceExistsError: the port is taken, or a live server already has the
            registration.
        IPCError: rpcbind is not running or refused the registration.
    """

    kind: ClassVar[str] = "Sun RPC server"

    def __init__(
        self,
        *services: Service,
        host: str = "127.0.0.1",
        port: int = 0,
        protocols: Sequence[str] = ("tcp", "udp"),
        register: bool = True,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_connections: int = 64,
        idle_timeout: float | None = None,
        workers: int = 8,
    ) -> None:
        self._configure(
            services, Service, host, port, protocols, register,
            max_message_size, max_connections, idle_timeout,
        )  # fmt: skip
        self.workers = check_size(workers, "workers", 1, 1024)
        self._sockets = bind_sockets(self.host, port, self.protocols)
        self.ports = {p: s.getsockname()[1] for p, s in self._sockets.items()}
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._stopping = False
        self._serving: int | None = None  # the thread running serve_forever
        self._loop_done = threading.Event()
        self._loop_done.set()
        self._queue_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._queued = 0
        self._opened(f"{self.host}:{','.join(f'{p}/{n}' for p, n in self.ports.items())}")
        if register:
            try:
                self._register()
            except BaseException:
                self.close()
                raise

    # Serving

    def start(self) -> Server:
        """Serve in a background (daemon) thread; return the server."""
        self._check_open()
        self._claim_loop()
        thread = threading.Thread(target=self._run_loop, name="oncrpc-server", daemon=True)
        thread.start()
        return self

    def _claim_loop(self) -> None:
        with self._connections_lock:
            if self._serving is not None:
                raise IPCError(f"{self.describe()} is already serving")
            self._serving = -1
            self._loop_done.clear()

    def serve_forever(self) -> None:
        """Serve until :meth:`close` (from another thread or a signal handler).

        Raises:
            ClosedResourceError: the server is closed.
        """
        self._check_open()
        self._claim_loop()
        self._run_loop()

    def _run_loop(self) -> None:
        self._serving = threading.get_ident()
        try:
            self._loop()
        finally:
            self._loop_done.set()

    def _loop(self) -> None:
        poller = select.poll()
        handlers: dict[int, Callable[[], None]] = {self._wake_reader.fileno(): self._drain_wake}
        for protocol, sock in self._sockets.items():
            serve = self._accept if protocol == "tcp" else self._receive
            handlers[sock.fileno()] = functools.partial(serve, sock)
        for fd in handlers:
            poller.register(fd, select.POLLIN)
        while not self._stopping:
            for fd, _ in poller.poll(500):  # a close from a signal handler is seen within 0.5 s
                if self._stopping:
                    break
                handlers[fd]()

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_reader.recv(64)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("accept failed: %s", error)
                return
            with self._connections_lock:
                if self._stopping or len(self._connections) >= self.max_connections:
                    log.warning(
                        "refused a connection from %s: %d open", peer, len(self._connections)
                    )
                    sock.close()
                    continue
                thread = threading.Thread(
                    target=self._serve_connection,
                    args=(sock, peer),
                    name="oncrpc-connection",
                    daemon=True,
                )
                self._connections[sock] = thread
            thread.start()

    def _serve_connection(self, sock: socket.socket, peer: Any) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = RecordStream(sock, f"Sun RPC client {peer}", self.max_message_size)
        try:
            while not self._stopping:
                try:
                    message = stream.receive(Deadline(self.idle_timeout))
                except (IPCError, OSError) as error:
                    log.debug("connection from %s ends: %s", peer, error)
                    return
                reply = self._handle(message, "tcp", peer)
                if reply is not None:
                    try:
                        stream.send(reply, Deadline(self.idle_timeout))
                    except (IPCError, OSError) as error:
                        log.debug("connection from %s ends: %s", peer, error)
                        return
        finally:
            with self._connections_lock:
                self._connections.pop(sock, None)
                sock.close()

    def _receive(self, sock: socket.socket) -> None:
        while True:
            try:
                data, peer = sock.recvfrom(MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # e.g. ECONNREFUSED left by an earlier reply
                log.debug("UDP receive: %s", error)
                continue
            with self._queue_lock:
                if self._queued >= self.workers * 16:
                    log.warning("dropped a UDP call from %s: %d calls queued", peer, self._queued)
                    continue
                self._queued += 1
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.workers, thread_name_prefix="oncrpc-udp"
                )
            try:
                self._pool.submit(self._serve_datagram, sock, data, peer)
            except RuntimeError:  # shut down meanwhile
                return

    def _serve_datagram(self, sock: socket.socket, data: bytes, peer: Any) -> None:
        try:
            reply = self._handle(data, "udp", peer)
            if reply is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(fit_datagram(reply), peer)
        finally:
            with self._queue_lock:
                self._queued -= 1

    def _handle(self, data: bytes, protocol: str, peer: Any) -> bytes | None:
        routed = self._programs.route(data, protocol, peer)
        if routed is None or isinstance(routed, bytes):
            return routed
        service, call, offset = routed
        reply: bytes = service._dispatch(call, data, offset)
        return reply

    # Closing

    def _release(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")
        current = threading.current_thread()
        if self._serving != threading.get_ident():  # not below us (a signal handler)
            self._loop_done.wait()
        self._unregister()
        for sock in self._sockets.values():
            sock.close()
        with self._connections_lock:
            connections = list(self._connections.items())
            for sock, _ in connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for _, thread in connections:
            if thread is not current:
                thread.join(10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._wake_reader.close()
        self._wake_writer.close()
