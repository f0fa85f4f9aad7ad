"""NATS connections for the ``nats://`` channels: one event-loop thread per process (private).

nats-py speaks NATS on asyncio only, so every process that uses ``nats://`` runs
one daemon thread, ``unixipc-nats``, with an event loop, and shares one NATS
connection per server list and credentials among all its channels (counted:
the last user closes it). Synchronous callers hand coroutines to that loop and
wait for them, and the loop hands messages back through the callers' own
queues and descriptors.

Two shortcuts keep a channel's latency near nats-py's own:

- *The parked loop.* The loop thread holds :attr:`Loop.lock` whenever it runs
  Python code and lets go of it only while it sleeps in epoll (its selector
  does that). A thread that takes the lock therefore has the loop to itself,
  parked, and may write to the connection's transport directly: a channel's
  ``send`` puts its message on the socket in the caller's thread, with no hop
  to the loop thread and no message left behind in a queue when ``send``
  returns (a process killed right after ``send`` has still sent it).
- *Direct dispatch.* Messages for the channels' own subscriptions go from
  nats-py's protocol parser straight to a handler (:class:`_Client`
  ``_process_msg``), without the per-subscription queue and task that nats-py
  uses for callbacks.

Both lean on internals of nats-py 2.x (``Client._process_msg`` and
``Client._transport``), and so does a fix: a PONG for a ``flush()`` that timed
out no longer ends nats-py's read loop (``_process_pong``). The tests exercise
all three on every run.

A fork leaves the child without the loop thread: the child starts its own on
first use, with connections of its own (the parent's belong to the parent).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import selectors
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import IPCError, TimeoutExpired, UnsupportedFeature, WouldBlock

_T = TypeVar("_T")

#: What a process needs for ``nats://``: the extra that installs nats-py (and the server).
EXTRA = "unixipc[nats]"

# How long a closing end waits for the server to confirm that it has everything
# written so far (a PING answered), and how long process exit waits for the
# connections to close.
FLUSH_WAIT = 2.0
_EXIT_WAIT = 2.0
# While connected, a lost server is replaced this often (another of the cluster).
_RECONNECT_WAIT = 0.25

# A handler of a subscription: (payload, reply subject, raw headers), in the loop thread.
Handler = Callable[[bytes, bytes, bytes], None]


def require() -> Any:
    """nats-py's client module, or UnsupportedFeature naming the extra that installs it."""
    try:
        import nats.aio.client
    except ImportError:
        raise UnsupportedFeature(
            f"nats:// needs the nats-py package: pip install '{EXTRA}'"
        ) from None
    return nats.aio.client


class _ParkingSelector(selectors.EpollSelector):
    """The loop's selector: lets go of the loop lock only while it sleeps in epoll."""

    def __init__(self, lock: threading.RLock) -> None:
        super().__init__()
        self._lock = lock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self._lock.release()
        try:
            return super().select(timeout)
        finally:
            self._lock.acquire()


class Loop:
    """The process's event-loop thread (see the module docstring)."""

    def __init__(self) -> None:
        #: Held by the loop thread except while it sleeps: take it to use the loop parked.
        self.lock = threading.RLock()
        self.loop = asyncio.SelectorEventLoop(_ParkingSelector(self.lock))
        self.thread = threading.Thread(target=self._run, name="unixipc-nats", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.lock:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_forever()
            finally:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.close()

    def in_loop(self) -> bool:
        return threading.current_thread() is self.thread

    def soon(self, function: Callable[..., object], *args: Any) -> None:
        """Run ``function(*args)`` in the loop thread soon (from any thread)."""
        with contextlib.suppress(RuntimeError):  # the loop closed at exit
            self.loop.call_soon_threadsafe(function, *args)

    def start(self, coroutine: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Run ``coroutine`` in the loop; its result as a future (from any thread).

        Once the loop has stopped (interpreter exit), the coroutine is dropped.
        """
        if not self.stopped:
            with contextlib.suppress(RuntimeError):
                return asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        coroutine.close()
        dropped: concurrent.futures.Future[_T] = concurrent.futures.Future()
        dropped.cancel()
        return dropped

    stopped = False

    def run(self, coroutine: Coroutine[Any, Any, _T], timeout: float | None, what: str) -> _T:
        """Run ``coroutine`` in the loop and wait up to ``timeout`` seconds for its result.

        Never call it with :attr:`lock` held (the loop could not run). Ctrl-C or
        the timeout cancel the coroutine.

        Raises:
            WouldBlock, TimeoutExpired: not done in time (``what`` names it).
        """
        assert not self.in_loop()
        future = self.start(coroutine)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            if timeout == 0:
                raise WouldBlock(f"{what}: not done at once") from None
            raise TimeoutExpired(f"{what}: not done within {timeout:g} s") from None
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        self.stopped = True
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)


_loop: Loop | None = None
_loop_guard = threading.Lock()


def loop() -> Loop:
    """The process's loop thread, started on first use."""
    global _loop
    running = _loop
    if running is not None:
        return running
    with _loop_guard:
        if _loop is None:
            _loop = Loop()
        return _loop


@dataclass(frozen=True)
class Tls:
    """TLS to the NATS server: the CAs to trust, our client certificate, the name to check."""

    ca_file: str | None = None
    certificate: str | None = None
    private_key: str | None = None
    server_hostname: str | None = None
    context: ssl.SSLContext | None = None  # the caller's own, instead of the files

    def make_context(self) -> ssl.SSLContext:
        if self.context is not None:
            return self.context
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.certificate is not None:
            context.load_cert_chain(self.certificate, self.private_key)
        return context


@dataclass(frozen=True)
class Server:
    """Where a connection goes and who it says it is (the key of a shared connection)."""

    urls: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials: str | None = None
    tls: Tls | None = None

    def describe(self) -> str:
        return ",".join(self.urls)


def _client_class() -> Any:
    """nats-py's client with direct dispatch for the channels' subscriptions."""
    global _Client
    if _Client is not None:
        return _Client
    client_module = require()

    class Client(client_module.Client):  # type: ignore[misc,name-defined]
        """A nats-py client whose registered subscriptions skip the callback task."""

        def __init__(self) -> None:
            super().__init__()
            #: Subscription id -> handler, for the channels' subscriptions.
            self.handlers: dict[int, Handler] = {}

        async def _process_msg(
            self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
        ) -> None:
            handler = self.handlers.get(sid)
            if handler is None:
                await super()._process_msg(sid, subject, reply, data, headers)
                return
            handler(data, reply, headers or b"")

        async def _process_pong(self) -> None:
            # nats-py resolves the oldest PING's future even when a flush() that
            # timed out cancelled it, and the InvalidStateError ends its read loop
            # (the connection then reads nothing more): skip cancelled ones.
            if self._pongs:
                future = self._pongs.pop(0)
                if not future.done():
                    future.set_result(True)
                self._pongs_received += 1
                self._pings_outstanding = 0

    _Client = Client
    return Client


_Client: Any = None


class Connection:
    """One NATS connection shared by the channels of a process (counted)."""

    def __init__(self, server: Server, client: Any, owner: Loop) -> None:
        self.server = server
        self.client = client
        self.owner = owner
        self.users = 0
        #: Called in the loop thread after a reconnection (the channels ask for
        #: what they may have missed) and when the connection is lost for good.
        self.on_reconnect: set[Callable[[], None]] = set()
        self.on_lost: set[Callable[[], None]] = set()

    @property
    def max_payload(self) -> int:
        return int(self.client.max_payload)

    def write(self, subject: bytes, parts: list[bytes], reply: bytes = b"") -> bool:
        """Publish the message made of ``parts`` at once, with :attr:`Loop.lock` held
        (the loop parked, or running in this thread).

        False when the connection is down (the channel retransmits later).
        """
        client = self.client
        if not client.is_connected:
            return False
        transport = client._transport
        writer = getattr(transport, "_io_writer", None)
        if transport is None or (writer is not None and writer.is_closing()):
            return False  # lost: nats-py is about to reconnect
        size = sum(map(len, parts))
        if reply:
            line = b"PUB %s %s %d\r\n" % (subject, reply, size)
        else:
            line = b"PUB %s %d\r\n" % (subject, size)
        transport.writelines([line, *parts, b"\r\n"])
        return True

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> Any:
        """Subscribe with direct dispatch to ``handler`` (in the loop)."""
        subscription = await self.client.subscribe(subject, queue=queue)
        self.client.handlers[subscription._id] = handler
        return subscription

    async def unsubscribe(self, subscription: Any) -> None:
        self.client.handlers.pop(subscription._id, None)
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()

    async def _reconnected(self) -> None:
        for callback in list(self.on_reconnect):
            callback()

    async def _closed(self) -> None:
        for callback in list(self.on_lost):
            callback()

    async def _error(self, error: Exception) -> None:
        # Kept to explain a failed first connection; later ones are handled by
        # the channels' heartbeats. A certificate refused while connecting the
        # first time ends the attempt at once (nats-py would retry forever). A
        # refusal of the credentials is kept over the reset that may follow it
        # (the server closes with our PING unread).
        if self.last_error is None or not _is_refusal(self.last_error):
            self.last_error = error
        if self.connecting and isinstance(error, ssl.SSLError):
            raise error

    connecting = True

    last_error: Exception | None = None


_pool: dict[Server, Connection] = {}
_pool_guard = threading.Lock()


def _is_refusal(error: BaseException) -> bool:
    """The server refused our certificate or credentials (not a transport failure)."""
    text = str(error).lower()
    return isinstance(error, ssl.SSLError) or "authorization" in text or "authentication" in text


def _refused(server: Server, error: BaseException) -> IPCError:
    import errno

    from .errors import IPCOSError, PermissionDeniedError

    text = str(error) or type(error).__name__
    if isinstance(error, ssl.SSLError):
        return PermissionDeniedError(
            errno.EACCES, f"TLS with the NATS server {server.describe()} failed: {text}"
        )
    if _is_refusal(error):
        return PermissionDeniedError(
            errno.EACCES, f"NATS server {server.describe()} refused the credentials: {text}"
        )
    return IPCOSError(
        errno.ECONNREFUSED, f"cannot reach a NATS server at {server.describe()}: {text}"
    )


async def _connect(connection: Connection, timeout: float) -> None:
    server = connection.server
    client = connection.client
    options: dict[str, Any] = {
        "servers": list(server.urls),
        "name": "unixipc",
        "connect_timeout": max(1, int(timeout + 0.999)),
        "reconnect_time_wait": _RECONNECT_WAIT,
        "max_reconnect_attempts": 1,  # for the first connection; forever afterwards
        "ping_interval": 30,
        "error_cb": connection._error,
        "reconnected_cb": connection._reconnected,
        "closed_cb": connection._closed,
    }
    if server.user is not None:
        options["user"] = server.user
        options["password"] = server.password or ""
    if server.token is not None:
        options["token"] = server.token
    if server.credentials is not None:
        options["user_credentials"] = server.credentials
    if server.tls is not None:
        options["tls"] = server.tls.make_context()
        if server.tls.server_hostname is not None:
            options["tls_hostname"] = server.tls.server_hostname
    await client.connect(**options)
    client.options["max_reconnect_attempts"] = -1
    connection.connecting = False


def acquire(server: Server, timeout: float | None) -> Connection:
    """A connection to ``server`` for one more user (made if this process has none).

    Raises:
        UnsupportedFeature: nats-py is not installed.
        IPCOSError: no server answered (errno ECONNREFUSED).
        PermissionDeniedError: the server refused the credentials.
        WouldBlock, TimeoutExpired: not connected in time.
    """
    require()
    owner = loop()
    with _pool_guard:
        connection = _pool.get(server)
        if connection is not None and connection.owner is owner and not connection.client.is_closed:
            connection.users += 1
            return connection
    wait = 10.0 if timeout is None else timeout
    made = Connection(server, _client_class()(), owner)
    try:
        owner.run(_connect(made, max(wait, 0.5)), wait, f"connecting to {server.describe()}")
    except (WouldBlock, TimeoutExpired):
        owner.start(_close_quietly(made.client))
        raise
    except Exception as error:
        owner.start(_close_quietly(made.client))
        last = made.last_error
        raise _refused(server, error if last is None or _is_refusal(error) else last) from None
    with _pool_guard:
        current = _pool.get(server)
        if current is not None and current.owner is owner and not current.client.is_closed:
            current.users += 1  # another thread made one meanwhile: use it, drop ours
            spare: Connection | None = made
            made = current
        else:
            made.users = 1
            _pool[server] = made
            spare = None
    if spare is not None:
        owner.start(spare.client.close())
    return made


def share(connection: Connection) -> None:
    """One more user of a connection already held."""
    with _pool_guard:
        connection.users += 1


def release(connection: Connection) -> None:
    """One user fewer; the last one closes the connection (without waiting for it)."""
    with _pool_guard:
        connection.users -= 1
        if connection.users > 0:
            return
        if _pool.get(connection.server) is connection:
            del _pool[connection.server]
    if connection.owner is _loop:
        connection.owner.start(_close_quietly(connection.client))


async def _close_quietly(client: Any) -> None:
    # Bounded: after a refused TLS handshake nats-py's close() waits on a future
    # nothing resolves (the task was collected pending, with a warning at exit).
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), FLUSH_WAIT)


def _forget_after_fork() -> None:
    """In a forked child: the loop thread and the connections are the parent's."""
    global _loop, _loop_guard, _pool_guard
    _loop = None
    _loop_guard = threading.Lock()
    _pool_guard = threading.Lock()
    _pool.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _close_at_exit() -> None:
    """Close the connections gracefully at interpreter exit (nothing half-written)."""
    running = _loop
    if running is None or not running.thread.is_alive():
        return
    with _pool_guard:
        clients = [connection.client for connection in _pool.values()]
        _pool.clear()

    async def close_all() -> None:
        await asyncio.gather(*(_close_quietly(client) for client in clients))
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    with contextlib.suppress(Exception):
        running.run(close_all(), _EXIT_WAIT, "closing NATS connections")
    running.stop()
    running.thread.join(_EXIT_WAIT)


atexit.register(_close_at_exit)
