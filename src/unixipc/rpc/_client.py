"""The threaded RPC client: many calls in flight on one channel (private).

No thread of its own: a thread waiting for a reply reads the channel itself
(it is the *leader*) and hands other threads' replies to them; when it has its
own, it wakes one of the others to read on. A lone call therefore goes from
send to reply in the calling thread, with no hand-over between threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from .._deadline import Deadline, check_timeout
from .._thread_lock import ThreadLock
from ..channel import Channel
from ..channel import connect as channel_connect
from ..errors import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    MessageTooLarge,
    TimeoutExpired,
    WouldBlock,
)
from ._codec import Codec, check_codec_allowed, make_codec
from ._protocol import (
    BYE,
    CALL,
    CANCEL,
    CREDIT,
    DEADLINE_PASSED,
    END,
    ERROR,
    FINAL,
    ITEM,
    LIST,
    NOT_FOUND,
    RESULT,
    STREAM,
    WINDOW,
    MethodInfo,
    check_name,
    hello,
    parse_welcome,
    remote_error,
)

# Fields of each kind of reply.
_LENGTHS = {RESULT: 3, ERROR: 5, NOT_FOUND: 3, STREAM: 2, ITEM: 3, END: 2, BYE: 2}
# Method names already checked (bounded: names come from the program).
_KNOWN_NAMES: set[str] = set()


def _check_method(name: object) -> str:
    if type(name) is str and name in _KNOWN_NAMES:
        return name
    checked = check_name(name)
    if len(_KNOWN_NAMES) < 4096:
        _KNOWN_NAMES.add(checked)
    return checked


def _left(deadline: Deadline | None) -> float | None:
    return None if deadline is None else deadline.remaining()


class _Call:
    """One call: its replies as they arrive, and how its thread sleeps."""

    __slots__ = ("abandoned", "finished", "granted", "id", "inbox", "sleeping", "wake")

    def __init__(self) -> None:
        self.id = 0
        self.inbox: deque[list[Any]] = deque()
        self.finished = False  # the final message arrived
        self.abandoned = False  # the caller gave up: its messages are dropped
        self.granted = False  # it holds one of the server's slots
        self.sleeping = False
        self.wake: Any = None  # a lock held while the thread sleeps on it


class ClientBase:
    """What the threaded and the asyncio client share."""

    _channel: Channel
    _broken: tuple[type[IPCError], str] | None = None  # every later call raises this
    _closed = False
    #: The largest number of calls in flight the server accepts (its max_concurrency).
    max_concurrency: int

    @property
    def url(self) -> str:
        """The server's URL."""
        return self._channel.url

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._closed

    @property
    def api(self) -> Any:
        """Call methods as attributes: ``client.api.add(1, 2)`` is
        ``client.call("add", 1, 2)``; ``client.api.math.sqrt(2)`` calls "math.sqrt"."""
        return Proxy(self, "")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__module__}.{type(self).__name__} {self.url!r} {state}>"

    def _break(self, error: IPCError) -> None:
        raise NotImplementedError

    def _broke(self, what: str) -> IPCError:
        """The server broke the protocol: the connection is unusable from now on."""
        error = IPCError(f"the RPC server at {self.url!r} sent {what}; the connection is closed")
        self._break(error)
        self._closed = True
        return error

    def _said_bye(self) -> IPCError:
        """The server is closing: every call from now on raises EndOfChannel."""
        self._break(EndOfChannel(f"the RPC server at {self.url!r} closed the connection"))
        return self._error()

    def _error(self) -> IPCError:
        assert self._broken is not None
        error_type, text = self._broken
        return error_type(text)

    def _failure(self, message: list[Any], deadline: Deadline | None = None) -> IPCError:
        """The exception for a reply that is not the expected one."""
        if message[0] == ERROR and message[2] == DEADLINE_PASSED and deadline is not None:
            # The server's deadline is this one counted from later: ours has passed too.
            return deadline.error(f"waiting for {self.url!r}")
        if message[0] in (ERROR, NOT_FOUND):
            return remote_error(message)
        return self._broke(f"an unexpected reply of kind {message[0]!r}")


class Client(ClientBase):
    """A connection to an RPC server; made by :func:`unixipc.rpc.connect`.

    Any number of threads may call at the same time: each call has an id, and
    replies are matched to calls in whatever order they come. At most the
    server's ``max_concurrency`` calls are in flight; more wait for a slot
    (their ``timeout`` counts meanwhile).

    A client never reconnects by itself: once the server is gone, every call
    raises :class:`PeerDied` (or :class:`EndOfChannel` if it closed); connect
    again to reach a restarted server.
    """

    def __init__(self, channel: Channel, codec: Codec, limit: int) -> None:
        self._channel = channel
        self._broken = None  # instance attributes: the fast path reads them on every call
        self._closed = False
        self._codec = codec
        self._pack = codec.pack
        self._unpack = codec.unpack
        # Locks of the hot path: threading.Lock's semantics at less than half the cost
        # (a call takes three pairs; see unixipc._thread_lock).
        self._lock = ThreadLock()
        self._send_lock = ThreadLock()
        self._pending: dict[int, _Call] = {}  # sent, final reply not yet received
        self._queue: deque[_Call] = deque()  # waiting for a slot
        self._free = limit
        self._next_id = 1
        self._reading = False
        self._sleepers: dict[int, _Call] = {}
        self._cancel_later: list[int] = []  # ids of calls given up without sending CANCEL
        self.max_concurrency = limit

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, name: str, /, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Call the server's method ``name`` with ``args`` and ``kwargs``; return its result.

        If the method streams (a generator on the server), this returns a
        :class:`Stream` at once: iterate over it for the items, or close it to
        stop the generator early. ``timeout`` covers the whole call (with a
        stream, every item); it travels with the request, so the server knows
        when the caller stops waiting (:func:`unixipc.rpc.current_deadline`).

        Raises:
            RemoteError: the method raised; the error names its type and message.
            MethodNotFound: the server has no method ``name``.
            TypeError: an argument the codec cannot carry (nothing is sent).
            MessageTooLarge: the request is larger than the channel's limit.
            WouldBlock, TimeoutExpired: no answer within ``timeout`` seconds (the
                server is asked to cancel the call).
            EndOfChannel, PeerDied: the server closed the connection or died.
            ClosedResourceError: the client is closed.
        """
        if not kwargs and name.__class__ is str and name in _KNOWN_NAMES:
            # The fast path: no other call in flight, so this thread reads at once.
            deadline = None if timeout is None else Deadline(timeout)
            lock = self._lock
            lock.acquire()
            if (
                self._reading
                or self._free <= 0
                or self._queue
                or self._broken is not None
                or self._cancel_later
            ):
                lock.release()
            else:
                call_id = self._next_id
                self._next_id = call_id + 1
                self._free -= 1
                self._reading = True
                lock.release()
                if deadline is not None:
                    request = [CALL, call_id, name, args, None, deadline.remaining(), WINDOW]
                    return self._solo(call_id, request, deadline)
                # The same as _solo without a deadline, written out: the hottest path.
                # It uses the channel's direct calls where it has them (a shm://
                # channel: see Channel._direct).
                request = [CALL, call_id, name, args]  # the short form
                channel = self._channel
                # No timeouts: close() closes the channel, which wakes these.
                send_lock = self._send_lock
                send_lock.acquire()
                try:
                    data = self._pack(request)
                    if channel._direct and len(data) <= channel._fast_send:
                        try:
                            channel._direct_send(data)
                        except Exception:
                            channel.send(data)
                    else:
                        channel.send(data)
                except BaseException as error:
                    send_lock.release()
                    self._solo_send_failed(request, error, None)
                else:
                    send_lock.release()
                try:
                    if channel._direct:
                        try:
                            data = channel._direct_receive()
                        except Exception:
                            data = channel.receive()
                        else:
                            if len(data) > channel._fast_receive:
                                data = channel._receive_rest(data)
                    else:
                        data = channel.receive()
                    message = self._unpack(data)
                except BaseException as error:
                    message = self._solo_receive_failed(call_id, error)
                if (
                    message.__class__ is list
                    and len(message) == 3
                    and message[0] == RESULT
                    and message[1] == call_id
                ):
                    lock.acquire()
                    if self._queue or self._sleepers or self._closed:
                        lock.release()
                        self._solo_done()
                    else:
                        self._free += 1
                        self._reading = False
                        lock.release()
                    return message[2]
                return self._solo_other(call_id, message, None)
        _check_method(name)
        deadline = None if timeout is None else Deadline(timeout)
        call = self._begin(deadline)
        left = _left(deadline)
        self._send_first(call, [CALL, call.id, name, args, kwargs or None, left, WINDOW], deadline)
        return self._outcome(call, self._next(call, deadline), deadline)

    def _outcome(self, call: _Call, message: list[Any], deadline: Deadline | None) -> Any:
        """What call() returns for the call's first reply."""
        kind = message[0]
        if kind == RESULT:
            return message[2]
        if kind == STREAM:
            return Stream(self, call, deadline)
        raise self._failure(message, deadline)

    def _solo(self, call_id: int, request: list[Any], deadline: Deadline | None) -> Any:
        """A call while no other is in flight: this thread already holds a slot and
        the reading role, and most often the next message is its result."""
        try:
            with self._send_lock:
                self._channel.send(self._pack(request), timeout=_left(deadline))
        except BaseException as error:
            self._solo_send_failed(request, error, deadline)
        try:
            message = self._unpack(self._channel.receive(timeout=_left(deadline)))
        except BaseException as error:
            message = self._solo_receive_failed(call_id, error)
        if (
            message.__class__ is list
            and len(message) == 3
            and message[0] == RESULT
            and message[1] == call_id
        ):
            self._solo_done()
            return message[2]
        return self._solo_other(call_id, message, deadline)

    def _solo_done(self) -> None:
        """A lone call has its result: give back its slot and the reading role."""
        with self._lock:
            self._slot_freed_locked()
        self._stop_reading()

    def _solo_other(self, call_id: int, message: Any, deadline: Deadline | None) -> Any:
        """A lone call's first message was not its result (or none came yet): it
        becomes an ordinary call."""
        call = _Call()
        call.id = call_id
        call.granted = True
        with self._lock:
            self._pending[call_id] = call
        try:
            if message is not None:
                self._route_message(message, call, False)
        finally:
            self._stop_reading()
        return self._outcome(call, self._next(call, deadline), deadline)

    def _solo_send_failed(
        self, request: list[Any], error: BaseException, deadline: Deadline | None
    ) -> None:
        """The fast path's send failed: finish sending if nothing went out for lack
        of room; else give the slot and the reading role back and raise."""
        try:
            if isinstance(error, (TimeoutExpired, WouldBlock)):
                self._send(request, deadline)
                return
            if not isinstance(error, IPCError):
                self._codec.encode(request)  # a value the codec cannot carry: say which
            elif not isinstance(error, MessageTooLarge):
                raise self._gone(error, True) from None
            raise error
        except BaseException:
            with self._lock:
                self._slot_freed_locked()
            self._stop_reading()
            raise

    def _solo_receive_failed(self, call_id: int, error: BaseException) -> Any:
        """The fast path's receive failed: None to keep reading on (no message
        yet), the decoding error to report, or raise."""
        if isinstance(error, (TimeoutExpired, WouldBlock)):
            return None
        if isinstance(error, Exception) and not isinstance(error, IPCError):
            return ValueError(f"undecodable bytes ({error})")  # _route_message reports it
        call = _Call()
        call.id = call_id
        with self._lock:
            self._pending[call_id] = call  # its reply must find it (and be dropped)
        if isinstance(error, IPCError):
            self._break(error)  # unless close() came first: then it names the client
        self._stop_reading()
        self._abandon(call)
        if isinstance(error, IPCError):
            raise self._error() from None
        raise error

    def methods(self, *, timeout: float | None = None) -> list[MethodInfo]:
        """The server's methods: names, signatures, docstrings, whether they stream.

        Raises:
            WouldBlock, TimeoutExpired, EndOfChannel, PeerDied, ClosedResourceError:
                as :meth:`call`.
        """
        deadline = None if timeout is None else Deadline(timeout)
        call = self._begin(deadline)
        self._send_first(call, [LIST, call.id], deadline)
        message = self._next(call, deadline)
        if message[0] != RESULT:
            raise self._failure(message)
        return parse_methods(message[2], self.url)

    def close(self) -> None:
        """Close the connection: calls waiting in other threads raise
        :class:`ClosedResourceError`, the server cancels what this client started.
        Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._broken is None:
                self._broken = (ClosedResourceError, f"the RPC client of {self.url!r} is closed")
            for call in list(self._sleepers.values()):
                self._wake_locked(call)
        self._channel.close()  # wakes the threads blocked reading or sending

    # Slots and ids.

    def _begin(self, deadline: Deadline | None) -> _Call:
        """A new call holding a slot (waiting for one if all are taken)."""
        call = _Call()
        with self._lock:
            if self._broken is not None:
                raise self._error()
            if self._free > 0 and not self._queue:
                self._free -= 1
                call.granted = True
            else:
                self._queue.append(call)
        if not call.granted:
            try:
                self._wait(call, deadline, True)
            except BaseException:
                with self._lock:
                    if call.granted:
                        self._slot_freed_locked()
                    else:
                        self._queue.remove(call)
                raise
        with self._lock:
            call.id = self._next_id
            self._next_id += 1
            self._pending[call.id] = call
        return call

    def _slot_freed_locked(self) -> None:
        if self._queue:
            call = self._queue.popleft()
            call.granted = True
            self._wake_locked(call)
        else:
            self._free += 1

    # Sending.

    def _send_first(self, call: _Call, message: list[Any], deadline: Deadline | None) -> None:
        """Send a call's request; if nothing was sent, give its slot back."""
        try:
            self._send(message, deadline)
        except BaseException:
            with self._lock:
                if self._pending.pop(call.id, None) is not None:
                    self._slot_freed_locked()
            raise

    def _send(self, message: list[Any], deadline: Deadline | None) -> None:
        with self._send_lock:
            if self._cancel_later:
                self._flush_cancels(deadline)
            self._send_locked(self._codec.encode(message), deadline)

    def _send_locked(self, data: bytes, deadline: Deadline | None) -> None:
        try:
            self._channel.send(data, timeout=_left(deadline))  # close() wakes it
        except (TimeoutExpired, WouldBlock):  # nothing was sent
            assert deadline is not None
            raise deadline.error(f"sending to {self.url!r}") from None
        except MessageTooLarge:
            raise
        except IPCError as error:
            raise self._gone(error, False) from None

    def _flush_cancels(self, deadline: Deadline | None) -> None:
        while self._cancel_later:
            call_id = self._cancel_later.pop()
            self._send_locked(self._codec.encode([CANCEL, call_id]), deadline)

    def _abandon(self, call: _Call) -> None:
        """Give up on a call: drop its replies, and ask the server to cancel it."""
        with self._lock:
            call.inbox.clear()
            if call.finished:
                return
            call.abandoned = True
        self._cancel_later.append(call.id)
        if self._send_lock.acquire(blocking=False):  # else the next send says it
            try:
                while self._cancel_later:
                    call_id = self._cancel_later.pop()
                    try:
                        self._channel.send(self._codec.encode([CANCEL, call_id]), timeout=0)
                    except WouldBlock:
                        self._cancel_later.append(call_id)
                        break
            except IPCError:
                pass  # the connection is gone: nothing to cancel
            finally:
                self._send_lock.release()

    def _credit(self, call: _Call, items: int, deadline: Deadline | None) -> None:
        self._send([CREDIT, call.id, items], deadline)

    # Receiving.

    def _next(self, call: _Call, deadline: Deadline | None) -> list[Any]:
        """The call's next message; on a timeout the call is abandoned."""
        try:
            self._wait(call, deadline, False)
        except (TimeoutExpired, WouldBlock, KeyboardInterrupt):
            self._abandon(call)
            raise
        return call.inbox.popleft()

    def _wait(self, call: _Call, deadline: Deadline | None, slot: bool) -> None:
        """Wait until the call holds a slot (``slot``) or has a message, reading the
        channel meanwhile if no other thread does."""
        while True:
            with self._lock:
                if call.granted if slot else call.inbox:
                    return
                if self._broken is not None:
                    raise self._error()
                lead = not self._reading
                if lead:
                    self._reading = True
                else:
                    if call.wake is None:
                        call.wake = threading.Lock()
                        call.wake.acquire()
                    call.sleeping = True
                    self._sleepers[id(call)] = call
            if lead:
                self._read_until(call, deadline, slot)
                continue
            left = _left(deadline)
            if call.wake.acquire(timeout=-1 if left is None else left):
                continue
            with self._lock:
                if call.sleeping:
                    call.sleeping = False
                    del self._sleepers[id(call)]
                else:
                    call.wake.acquire()  # woken just as the time ran out: take the wake-up
                if call.granted if slot else call.inbox:
                    return
                if not self._reading:
                    self._promote_locked()  # pass on a promotion this thread will not use
            assert deadline is not None
            raise deadline.error(f"waiting for {self.url!r}")

    def _read_until(self, call: _Call, deadline: Deadline | None, slot: bool) -> None:
        """Read the channel (this thread holds the reading role) until ``call`` is
        ready; then let another thread read."""
        receive = self._channel.receive
        try:
            while True:
                if self._closed:
                    raise self._error()
                try:
                    data = receive(timeout=_left(deadline))  # close() wakes it
                except (TimeoutExpired, WouldBlock):
                    assert deadline is not None
                    raise deadline.error(f"waiting for {self.url!r}") from None
                except IPCError as error:
                    self._break(error)
                    raise self._error() from None
                try:
                    message = self._codec.decode(data)
                except ValueError as error:
                    message = error
                if self._route_message(message, call, slot):
                    return
        finally:
            self._stop_reading()

    def _gone(self, error: IPCError, reading: bool) -> IPCError:
        """A send failed because the server is gone; if it said BYE before it went
        (unread yet), it closed on purpose: EndOfChannel. ``reading``: this thread
        holds the reading role (else it takes it if free, to look)."""
        if not reading:
            with self._lock:
                free = not self._reading
                if free:
                    self._reading = True
            if not free:
                self._break(error)
                return self._error()  # the reading thread finds the BYE, if any
            try:
                return self._gone(error, True)
            finally:
                self._stop_reading()
        try:
            while True:
                message = self._codec.decode(self._channel.receive(timeout=0))
                if type(message) is list and message and message[0] == BYE:
                    return self._said_bye()
        except (IPCError, ValueError):
            pass  # nothing more to read: no BYE
        self._break(error)
        return self._error()

    def _stop_reading(self) -> None:
        """Give up the reading role: wake a sleeping caller to take it."""
        with self._lock:
            self._reading = False
            if not self._closed and self._sleepers:
                self._promote_locked()

    def _route_message(self, message: Any, call: _Call, slot: bool) -> bool:
        """Hand a reply to its call; True if ``call`` is now ready."""
        try:
            if isinstance(message, ValueError):
                raise message
            check_reply(message)
        except ValueError as error:
            raise self._broke(str(error)) from None
        kind = message[0]
        if kind == BYE:
            raise self._said_bye()
        with self._lock:
            target = self._pending.get(message[1])
            if target is not None and kind in FINAL:
                del self._pending[target.id]
                target.finished = True
                self._slot_freed_locked()
            if target is not None and not target.abandoned:
                target.inbox.append(message)
                if target is not call:
                    self._wake_locked(target)
            ready = call.granted if slot else bool(call.inbox)
        if target is None:
            raise self._broke(f"a reply to no call in flight (id {message[1]!r})")
        return ready

    def _wake_locked(self, call: _Call) -> None:
        if call.sleeping:
            call.sleeping = False
            del self._sleepers[id(call)]
            call.wake.release()

    def _promote_locked(self) -> None:
        """Wake a sleeping caller to read the channel (nobody reads now)."""
        for call in self._sleepers.values():
            self._wake_locked(call)
            return

    def _break(self, error: IPCError) -> None:
        """The connection is unusable: every waiting and later call raises ``error``."""
        with self._lock:
            if self._broken is None:
                self._broken = (type(error), str(error))
            for call in list(self._sleepers.values()):
                self._wake_locked(call)


def check_reply(message: Any) -> list[Any]:
    """``message`` if it is a well-formed reply, else ValueError."""
    if (
        type(message) is not list
        or len(message) < 2
        or type(message[1]) is not int
        or _LENGTHS.get(message[0]) != len(message)
    ):
        raise ValueError("a malformed reply")
    return message


def parse_methods(listing: Any, url: str) -> list[MethodInfo]:
    """The methods in a LIST answer (checked: it comes from the server)."""
    methods = []
    if type(listing) is list:
        for entry in listing:
            if (
                type(entry) is list
                and len(entry) == 4
                and all(type(field) is str for field in entry[:3])
                and type(entry[3]) is bool
            ):
                methods.append(MethodInfo(*entry))
            else:
                break
        else:
            return methods
    raise IPCError(f"the RPC server at {url!r} sent a malformed method list")


class StreamFinished(Exception):
    """A stream's END arrived."""


class StreamBase:
    """What the iterator and the async iterator over a stream share."""

    def __init__(self, client: Any, call: Any, deadline: Deadline | None) -> None:
        self._client = client
        self._call = call
        self._deadline = deadline
        self._consumed = 0
        self._done = False

    def _take(self, message: list[Any]) -> tuple[Any, int]:
        """The item ``message`` carries, and the credit to give back now (0: none yet).

        Raises StreamFinished at the end of the stream, or what the generator raised.
        """
        if message[0] == ITEM:
            self._consumed += 1
            credit = 0
            if self._consumed >= WINDOW // 2:
                self._consumed, credit = 0, self._consumed
            return message[2], credit
        self._done = True
        if message[0] == END:
            raise StreamFinished
        raise self._client._failure(message, self._deadline)


class Stream(StreamBase, Iterator[Any]):
    """The items a streaming method yields, as they come (an iterator).

    The server sends a window of items ahead and more as they are consumed.
    ``close()`` (or leaving a ``with`` block, or dropping the stream) stops the
    generator on the server.
    """

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Any:
        """The next item.

        Raises:
            StopIteration: the generator finished.
            RemoteError: the generator raised.
            WouldBlock, TimeoutExpired: the call's ``timeout`` ran out (the
                stream is closed).
            EndOfChannel, PeerDied, ClosedResourceError: as :meth:`Client.call`.
        """
        if self._done:
            raise StopIteration
        try:
            message = self._client._next(self._call, self._deadline)
        except BaseException:
            self._done = True
            raise
        try:
            item, credit = self._take(message)
        except StreamFinished:
            raise StopIteration from None
        if credit:
            self._client._credit(self._call, credit, self._deadline)
        return item

    def close(self) -> None:
        """Stop the stream: the server closes the generator. Idempotent."""
        if not self._done:
            self._done = True
            self._client._abandon(self._call)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # No locks here (this may run inside any code): the next send says CANCEL.
        if not getattr(self, "_done", True):
            self._call.abandoned = True
            self._client._cancel_later.append(self._call.id)


class Proxy:
    """``client.api.name(...)``: attribute access builds the method name."""

    __slots__ = ("_client", "_name")

    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self._name = name

    def __getattr__(self, name: str) -> Proxy:
        if name.startswith("_"):
            raise AttributeError(name)
        return Proxy(self._client, f"{self._name}.{name}" if self._name else name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._client.call(self._name, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<RPC method {self._name!r} of {self._client.url!r}>"


def connect(
    url: str, *, timeout: float | None = None, codec: str = "msgpack", **channel_options: Any
) -> Client:
    """Connect to the RPC server at ``url`` (any channel URL) and return a client.

    ``timeout`` covers connecting and the handshake; ``channel_options`` go to
    :func:`unixipc.connect` (``max_message_size``, ``capacity``, ...). ``codec``
    must be the server's: "msgpack" (default), "json", or "pickle" (only on an
    authenticated channel, e.g. with the server's ``secret=``).

    Raises:
        TypeError, ValueError: bad arguments; pickle on an unauthenticated channel.
        IPCError: the server refused (another codec) or is not an RPC server.
        ResourceNotFoundError, IPCOSError, WouldBlock, TimeoutExpired: as
            :func:`unixipc.connect`.
    """
    check_timeout(timeout)
    the_codec = make_codec(codec)
    deadline = Deadline(timeout)
    channel = channel_connect(url, timeout=timeout, **channel_options)
    try:
        check_codec_allowed(the_codec, channel)
        channel.send(hello(the_codec.name), timeout=deadline.remaining())
        limit = parse_welcome(channel.receive(timeout=deadline.remaining()), url)
    except BaseException:
        channel.close()
        raise
    return Client(channel, the_codec, limit)
