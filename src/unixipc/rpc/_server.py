"""The RPC server's engine, shared by the threaded and the asyncio server (private).

Threads: ``serve_forever`` accepts; each connection has one *reader* thread at
a time, which receives requests and runs a plain function's call itself (no
hand-over to another thread, the fast path). A watchdog thread notices a call
that has run for a millisecond or more and makes another thread the reader, so
slow calls of one connection run concurrently, up to ``max_concurrency``; the
thread of the slow call ends when the call does. ``async def`` handlers run on
an event loop (the server's own loop thread, or the asyncio server's loop) and
send their replies from there without ever blocking it.

Readers and senders block on the channel without a timeout (a timed call costs
a ring about 0.1 us more): ``close()`` closes the channel, which wakes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import types
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from .._thread_lock import ThreadLock
from ..channel import Channel, Listener, listen
from ..errors import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    MessageTooLarge,
    PeerDied,
    TimeoutExpired,
    WouldBlock,
)
from ._codec import Codec, check_codec_allowed, make_codec
from ._outbox import Outbox
from ._protocol import (
    BAD_REQUEST,
    BYE,
    CALL,
    CANCEL,
    CANCELLED,
    CREDIT,
    DEADLINE_PASSED,
    END,
    ERROR,
    ITEM,
    LIST,
    MAX_NAME,
    MAX_WINDOW,
    NOT_FOUND,
    RESULT,
    STREAM,
    TOO_MANY_CALLS,
    WINDOW,
    error_message,
    parse_hello,
    refusal,
    welcome,
)
from ._registry import ASYNC, ASYNC_STREAM, Method, Registry
from ._slices import SLICE as _SLICE

logger = logging.getLogger("unixipc.rpc")

# A client has this long to introduce itself after connecting.
_HANDSHAKE_TIMEOUT = 10.0
# The watchdog's period, and how many idle periods before it sleeps.
_TICK = 0.001
_IDLE_TICKS = 200
# How long close() waits for connections to finish their running calls.
_CLOSE_WAIT = 5.0
# Timeouts from this far on are refused as nonsense.
_FAR = 1e9
# A stream on the event loop waits while more items than this wait for room.
_QUEUED_ITEMS = 4
# The largest max_concurrency.
MAX_CONCURRENCY = 4096

_deadline: ContextVar[float | None] = ContextVar("unixipc_rpc_deadline", default=None)


def current_deadline() -> float | None:
    """The deadline of the call being handled, on the ``time.monotonic()`` clock.

    Inside a handler (a thread or a task of the server), this is when the
    calling client stops waiting: the client's ``timeout`` counted from when
    the request arrived. ``None`` when the client gave no timeout, or outside
    a handler. Work past it is wasted: the client has already raised
    ``TimeoutExpired``.
    """
    return _deadline.get()


class _Drop(Exception):
    """The client broke the protocol: its connection is dropped."""


# What sending a message did.
FAILED, SENT, REPLACED = 0, 1, 2


def _bad_request(message: list[Any], why: str) -> list[Any]:
    return [ERROR, message[1], BAD_REQUEST, why, ""]


def _call_fields(message: list[Any]) -> list[Any]:
    """A CALL message in its full form (see _protocol for the short one)."""
    return [*message, None, None, WINDOW] if len(message) == 4 else message


def _check_call(message: list[Any]) -> str | None:
    """Why a CALL message is malformed, or None."""
    if len(message) not in (4, 7):
        return "a call has 7 fields (or 4)"
    _, _, name, args, kwargs, timeout, window = _call_fields(message)
    if type(name) is not str or not 0 < len(name) <= MAX_NAME:
        return "the method name is not a str of 1 to 256 characters"
    if type(args) is not list and type(args) is not tuple:  # pickle keeps the client's tuple
        return "the arguments are not a list"
    if kwargs is not None and (
        type(kwargs) is not dict or any(type(key) is not str for key in kwargs)
    ):
        return "the keyword arguments are not a dict with str keys"
    if timeout is not None and (
        type(timeout) not in (int, float) or not 0 <= timeout < float("inf")
    ):
        return "the timeout is not a number of seconds >= 0"
    if type(window) is not int or not 0 < window <= MAX_WINDOW:
        return f"the stream window is not an int from 1 to {MAX_WINDOW}"
    return None


# Stands for a call running in a thread that cannot be cancelled (no _Task needed).
_INLINE: Any = object()
# What the fast path's decoding gives for bytes that are not a message.
_UNDECODABLE: Any = object()
_GENERATOR = types.GeneratorType


class _Task:
    """One call in progress on a connection that can be cancelled or streams."""

    __slots__ = ("cancelled", "condition", "credit", "deadline", "future", "id", "wakeup")

    def __init__(self, call_id: int, deadline: float | None, window: int) -> None:
        self.id = call_id
        self.deadline = deadline
        self.credit = window
        self.cancelled = False
        self.condition: threading.Condition | None = None  # a stream in a thread
        self.future: Any = None  # a call on the event loop (concurrent.futures.Future)
        self.wakeup: asyncio.Future[None] | None = None  # a stream on the loop waits here


class Connection:
    """One client: its channel, its calls in progress, and who reads."""

    def __init__(self, core: ServerCore, channel: Channel) -> None:
        self.core = core
        self.channel = channel
        self.codec = make_codec(core.codec_name)  # encodes under send_lock
        self.loop_codec = make_codec(core.codec_name)  # encodes on the event loop
        # Locks of the reader's hot path (two pairs a call): see unixipc._thread_lock.
        self.send_lock = ThreadLock()
        self.lock = ThreadLock()  # the fields below
        self.tasks: dict[int, _Task] = {}
        # The reader is the thread started for the current generation.
        self.generation = 0
        # The request of the call the reader runs itself (inline), or None. The
        # watchdog finds the same request object there at two ticks in a row when
        # a call has run for a whole tick (one store per call: this is the hot path).
        self.running: list[Any] | None = None
        self.watched: list[Any] | None = None
        self.stopping = False
        self.outbox = Outbox(channel, self.send_lock, lambda: self.stopping)
        self.done = threading.Event()
        self.greeted = False  # the handshake is done: BYE may be sent

    def start(self) -> None:
        self._thread(self._first)

    def _thread(self, target: Callable[..., None], *args: Any) -> None:
        threading.Thread(target=target, args=args, name="unixipc-rpc", daemon=True).start()

    # The reader.

    def _first(self) -> None:
        try:
            if self._handshake():
                self._read(0)
                return
        except Exception:  # never let one client end the server
            logger.exception("RPC connection on %s failed", self.core.url)
        self._finish()

    def _handshake(self) -> bool:
        deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
        try:
            data = self.channel.receive(timeout=_HANDSHAKE_TIMEOUT)  # stop() wakes it
        except IPCError:
            return False
        codec = parse_hello(data)
        if codec is None:
            logger.info("dropped a client of %s that does not speak unixipc RPC", self.core.url)
            return False
        answer = welcome(self.core.max_concurrency)
        if codec != self.core.codec_name:
            answer = refusal(f"this server speaks {self.core.codec_name}, not {codec}")
        else:
            try:
                check_codec_allowed(self.codec, self.channel)
            except ValueError as error:
                answer = refusal(str(error))
        self.greeted = answer.startswith(welcome(1)[:-1])
        return self._send_bytes(answer, deadline) and self.greeted

    def _read(self, generation: int) -> None:
        """Receive and handle requests while this thread is the reader."""
        try:
            self._read_loop(generation)
        except (IPCError, _Drop) as error:
            if not self.stopping and not isinstance(error, ClosedResourceError):
                logger.debug("RPC connection on %s ends: %s", self.core.url, error)
        except Exception:
            logger.exception("RPC connection on %s failed", self.core.url)
        else:
            if not self.stopping:
                return  # another thread reads now; this one ran a slow call
        self._finish()

    def _read_loop(self, generation: int) -> None:
        # The hot path of the server: a plain function's call is run and answered
        # here, with as little as possible in between. It is not entered in `tasks`
        # unless it is handed over (see handoff).
        # The channel's direct calls where it has them (see Channel._direct); their
        # limits are fixed once the channel is established.
        channel = self.channel
        receive = channel.receive
        send = channel.send
        direct_receive = getattr(channel, "_direct_receive", receive)
        direct_send = getattr(channel, "_direct_send", send)
        fast_receive = channel._fast_receive
        fast_send = channel._fast_send
        unpack = self.codec.unpack
        pack = self.codec.pack
        methods = self.core.registry._methods
        tasks = self.tasks
        limit = self.core.max_concurrency
        largest = self.channel.max_message_size
        lock = self.lock
        send_lock = self.send_lock
        watchdog = self.core.watchdog
        monotonic = time.monotonic
        while not self.stopping:
            # stop() closes the channel to wake this.
            if channel._direct:
                try:
                    data = direct_receive()
                except Exception:
                    data = receive()
                else:
                    if len(data) > fast_receive:
                        data = channel._receive_rest(data)
            else:
                data = receive()
            try:
                message = unpack(data)
            except Exception:
                message = _UNDECODABLE
            fields = len(message) if message.__class__ is list else 0
            if fields == 4:  # the short form: no keywords, no deadline, the default window
                kind, call_id, name, args = message
                timeout = None
                window = WINDOW
                plain = True
            elif fields == 7:
                kind, call_id, name, args, keywords, timeout, window = message
                plain = (
                    keywords is None
                    and window.__class__ is int
                    and 0 < window <= MAX_WINDOW
                    and (timeout is None or (timeout.__class__ is float and 0 < timeout < _FAR))
                )
            else:
                plain = False
            if plain:
                method = methods.get(name) if name.__class__ is str else None
                if (
                    kind == CALL
                    and method is not None
                    and method.inline
                    and call_id.__class__ is int
                    and args.__class__ is list
                    and (not tasks or (call_id not in tasks and len(tasks) < limit))
                ):
                    self.running = message
                    if watchdog.sleeping:
                        watchdog.wake()
                    token = None if timeout is None else _deadline.set(monotonic() + timeout)
                    reply: list[Any] | None
                    try:
                        result = method.function(*args)
                    except Exception as error:
                        reply = error_message(call_id, error)
                    else:
                        reply = [RESULT, call_id, result]
                        if result.__class__ is _GENERATOR:
                            task = _Task(call_id, _deadline.get(), window)
                            tasks[call_id] = task
                            self._stream(task, result, generation)  # sends its final message
                            reply = None
                    if token is not None:
                        _deadline.reset(token)
                    lock.acquire()
                    mine = self.generation == generation
                    if mine:
                        self.running = None
                    elif reply is not None and tasks.get(call_id) is _INLINE:
                        del tasks[call_id]  # handed over: it counted until now (see _end)
                    lock.release()
                    if reply is not None:
                        packed: bytes | None
                        send_lock.acquire()  # the packer too: a handed-over call packs
                        try:
                            packed = pack(reply)
                        except Exception:
                            packed = None
                        if packed is None or len(packed) > largest:
                            send_lock.release()
                            self._send(reply)
                        else:
                            try:
                                if channel._direct and len(packed) <= fast_send:
                                    try:
                                        direct_send(packed)
                                    except Exception:
                                        send(packed)
                                else:
                                    send(packed)
                            except IPCError:
                                pass  # the client is gone: the next receive says so
                            finally:
                                send_lock.release()
                    if not mine:
                        return
                    continue
            if message is _UNDECODABLE:
                raise _Drop(f"undecodable request: {self._why_undecodable(data)}")
            if not self._dispatch(message, generation):
                return

    def _why_undecodable(self, data: bytes) -> str:
        try:
            self.codec.decode(data)
        except ValueError as error:
            return str(error)
        return "?"

    def _finish(self) -> None:
        with self.lock:
            self.stopping = True
            tasks = list(self.tasks.values())
        for task in tasks:
            self._cancel(task)
        self.channel.close()  # wakes a thread blocked sending
        self.core.forget(self)
        self.done.set()

    def stop(self) -> None:
        """Say BYE and close the channel, which wakes the reader and any thread
        blocked sending (calls still running finish unanswered: BYE said so)."""
        with self.lock:
            self.stopping = True
            tasks = list(self.tasks.values())
        for task in tasks:
            self._cancel(task)
        # Not held for long unless a send waits for room, where BYE would not fit.
        if self.send_lock.acquire(timeout=_SLICE):
            try:
                if self.greeted and not self.channel.closed:
                    with contextlib.suppress(IPCError):  # no room, or the client is gone
                        self.channel.send(self.codec.encode([BYE, 0]), timeout=0)
            finally:
                self.send_lock.release()
        self.channel.close()

    def handoff(self, generation: int | None = None, running: list[Any] | None = None) -> None:
        """Make a new thread the reader: the current one is busy with a call.

        With ``running`` (the watchdog), only if the reader still runs that same
        request; with ``generation``, only if the caller is still the reader.
        """
        with self.lock:
            current = self.running
            if self.stopping or (running is not None and current is not running):
                return
            if generation is not None and generation != self.generation:
                return
            if current is not None:
                if running is not None:
                    method = self.core.registry._methods.get(current[2])
                    if method is not None:
                        method.set_slow(True)
                if current[1] not in self.tasks:
                    self.tasks[current[1]] = _INLINE  # counts in flight until it ends
            self.generation += 1
            self.running = None
            generation = self.generation
        self._thread(self._read, generation)

    def _dispatch(self, message: Any, generation: int) -> bool:
        """Handle one request; False if this thread is no longer the reader."""
        if type(message) is not list or len(message) < 2 or type(message[1]) is not int:
            raise _Drop("a request is not a list starting with a kind and an id")
        kind = message[0]
        if kind == CALL:
            return self._call(message, generation)
        if kind == CANCEL:
            task = self.tasks.get(message[1])
            if task is not None:
                self._cancel(task)
        elif kind == CREDIT:
            if len(message) != 3 or type(message[2]) is not int or message[2] <= 0:
                raise _Drop("malformed credit")
            self._credit(message[1], message[2])
        elif kind == LIST:
            self._send([RESULT, message[1], self.core.registry._listing()])
        else:
            raise _Drop(f"unknown request kind {kind!r}")
        return True

    def _call(self, message: list[Any], generation: int) -> bool:
        received = time.monotonic()
        call_id = message[1]
        why = _check_call(message)
        if why is not None:
            self._send(_bad_request(message, why))
            return True
        _, _, name, args, kwargs, timeout, window = _call_fields(message)
        method = self.core.registry._methods.get(name)
        if method is None:
            self._send([NOT_FOUND, call_id, name])
            return True
        deadline = None if timeout is None else received + timeout
        if method.mode < ASYNC:
            return self._run_inline(message, deadline, method, generation)
        task = _Task(call_id, deadline, window)
        if not self._admit(call_id, task):
            return True
        if timeout == 0:
            self._end(task, [ERROR, call_id, DEADLINE_PASSED, "the call's deadline passed", ""])
            return True
        loop = self.core.handler_loop()
        task.future = asyncio.run_coroutine_threadsafe(
            self._run_async(task, method, args, kwargs), loop
        )
        return True

    def _admit(self, call_id: int, task: _Task | None) -> bool:
        """Count a new call in flight (``task`` None: an inline call); False if refused."""
        with self.lock:
            if call_id in self.tasks:
                raise _Drop(f"call id {call_id} reused while in progress")
            busy = len(self.tasks) >= self.core.max_concurrency
            if not busy:
                self.tasks[call_id] = task or _INLINE
        if busy:
            limit = self.core.max_concurrency
            self._send([ERROR, call_id, TOO_MANY_CALLS, f"more than {limit} calls in flight", ""])
        return not busy

    # Calls in threads.

    def _run_inline(
        self,
        request: list[Any],
        deadline: float | None,
        method: Method,
        generation: int,
    ) -> bool:
        """Run a plain function's call (a checked ``request``) in this thread (the
        reader), and reply.

        The watchdog may make another thread the reader meanwhile: then this
        returns False and the thread ends after replying.
        """
        _, call_id, _, args, kwargs, _, window = _call_fields(request)
        if not self._admit(call_id, None):
            return True
        reply: list[Any] | None
        started = None
        if deadline is not None and deadline <= time.monotonic():
            reply = [ERROR, call_id, DEADLINE_PASSED, "the call's deadline passed", ""]
        else:
            if method.slow:  # do not wait for the watchdog: another thread reads now
                self.handoff(generation=generation)
                started = time.monotonic()
            else:
                self.running = request
                if self.core.watchdog.sleeping:
                    self.core.watchdog.wake()
            token = None if deadline is None else _deadline.set(deadline)
            try:
                function = method.function
                result = function(*args, **kwargs) if kwargs else function(*args)
            except Exception as error:
                reply = error_message(call_id, error)
            else:
                reply = [RESULT, call_id, result]
                if type(result) is types.GeneratorType:
                    task = _Task(call_id, deadline, window)
                    with self.lock:
                        self.tasks[call_id] = task
                    self._stream(task, result, generation)  # sends its own final message
                    reply = None
            finally:
                if token is not None:
                    _deadline.reset(token)
            if started is not None and time.monotonic() - started < _TICK:
                method.set_slow(False)
        with self.lock:
            if reply is not None:
                self.tasks.pop(call_id, None)  # before the reply: see _end
            mine = self.generation == generation
            if mine:
                self.running = None
        if reply is not None:
            self._send(reply)
        return mine

    def _stream(
        self, task: _Task, items: types.GeneratorType[Any, None, None], generation: int
    ) -> None:
        """Send a generator's items as the client's credit allows."""
        task.condition = threading.Condition(self.lock)  # type: ignore[arg-type]
        final: list[Any] | None = [END, task.id]
        try:
            if self._send([STREAM, task.id]) != SENT:
                final = None
                return
            while True:
                final = self._wait_credit(task, generation)
                if final is not None:
                    return
                try:
                    item = next(items)
                except StopIteration:
                    final = [END, task.id]
                    return
                except Exception as error:
                    final = error_message(task.id, error)
                    return
                task.credit -= 1
                if self._send([ITEM, task.id, item]) != SENT:
                    return  # the connection is gone, or an ERROR ended the call
        finally:
            try:
                items.close()  # an early stop runs the generator's finally blocks
            finally:
                self._end(task, final)

    def _wait_credit(self, task: _Task, generation: int) -> list[Any] | None:
        """Wait until the stream may send an item; else the final message to send."""
        if (
            task.credit > 0
            and not task.cancelled
            and (task.deadline is None or time.monotonic() < task.deadline)
        ):
            return None
        self.handoff(generation=generation)  # credit comes through the reader
        assert task.condition is not None
        with task.condition:
            while True:
                if task.cancelled or self.stopping:
                    return [ERROR, task.id, CANCELLED, "the call was cancelled", ""]
                left = None if task.deadline is None else task.deadline - time.monotonic()
                if left is not None and left <= 0:
                    return [ERROR, task.id, DEADLINE_PASSED, "the call's deadline passed", ""]
                if task.credit > 0:
                    return None
                task.condition.wait(_SLICE if left is None else min(_SLICE, left))

    def _credit(self, call_id: int, items: int) -> None:
        with self.lock:
            task = self.tasks.get(call_id)
            if task is None:
                return  # the stream ended meanwhile
            task.credit = min(task.credit + items, MAX_WINDOW)
            if task.condition is not None:
                task.condition.notify()
            wakeup = task.wakeup
        if wakeup is not None:
            wakeup.get_loop().call_soon_threadsafe(_set_result, wakeup)

    def _cancel(self, task: _Task) -> None:
        if task is _INLINE:
            return  # a plain function's call cannot be interrupted
        task.cancelled = True
        if task.future is not None:
            task.future.cancel()
        if task.condition is not None:
            with task.condition:
                task.condition.notify()

    def _end(self, task: _Task, final: list[Any] | None) -> None:
        """Forget the call, then send its final message (so that the client, once it
        has it, may start another call without going over the limit)."""
        with self.lock:
            self.tasks.pop(task.id, None)
        if final is not None:
            self._send(final)

    def _encode(self, codec: Codec, message: list[Any]) -> tuple[bytes, bool]:
        """Encode a message; if it cannot travel (a value the codec cannot carry, or
        too large), an ERROR for its call instead. Returns (bytes, replaced)."""
        limit = self.channel.max_message_size
        try:
            data = codec.encode(message)
        except TypeError as error:
            if message[0] == ERROR:
                raise
            return self._encode(codec, error_message(message[1], error))[0], True
        if len(data) <= limit:
            return data, False
        if message[0] != ERROR:
            too_large = MessageTooLarge(
                f"the reply has {len(data)} bytes, more than the channel's "
                f"max_message_size ({limit})"
            )
            return self._encode(codec, error_message(message[1], too_large))[0], True
        # An error too large to report whole: its type and the start of its text.
        short = [ERROR, message[1], message[2], str(message[3])[: limit // 8], ""]
        return codec.encode(short), False

    def _send(self, message: list[Any]) -> int:
        """Encode and send from a thread: SENT, REPLACED (by an ERROR ending the
        call, see _encode) or FAILED (the connection is gone)."""
        with self.send_lock:
            try:
                data = self.codec.encode(message)
                replaced = len(data) > self.channel.max_message_size
            except TypeError:
                replaced = True
            if replaced:
                data, replaced = self._encode(self.codec, message)
            if not self._send_locked(data, None):
                return FAILED
        return REPLACED if replaced else SENT

    def _send_bytes(self, data: bytes, deadline: float | None = None) -> bool:
        with self.send_lock:
            return self._send_locked(data, deadline)

    def _send_locked(self, data: bytes, deadline: float | None) -> bool:
        """Send, waiting for room until ``deadline`` (monotonic; None: until the
        channel closes); False if not sent."""
        try:
            if deadline is None:
                self.channel.send(data)
            else:
                self.channel.send(data, timeout=max(0.0, deadline - time.monotonic()))
            return True
        except IPCError:  # no room in time, the client is gone, or the channel closed
            return False

    # Calls on the event loop.

    async def _run_async(
        self, task: _Task, method: Method, args: list[Any], kwargs: dict[str, Any] | None
    ) -> None:
        _deadline.set(task.deadline)  # this task's own context
        final: list[Any] | None
        try:
            if task.deadline is not None and time.monotonic() >= task.deadline:
                final = [ERROR, task.id, DEADLINE_PASSED, "the call's deadline passed", ""]
            elif method.mode == ASYNC_STREAM:
                final = await self._stream_async(task, method.function(*args, **(kwargs or {})))
            else:
                result = await _until(task.deadline, method.function(*args, **(kwargs or {})))
                final = [RESULT, task.id, result]
        except asyncio.CancelledError:
            if self.stopping:
                raise
            final = [ERROR, task.id, CANCELLED, "the call was cancelled", ""]
        except _DeadlinePassed:
            final = [ERROR, task.id, DEADLINE_PASSED, "the call's deadline passed", ""]
        except Exception as error:
            final = error_message(task.id, error)
        with self.lock:
            self.tasks.pop(task.id, None)
        if final is not None:
            self._send_from_loop(final)

    async def _stream_async(self, task: _Task, items: Any) -> list[Any] | None:
        try:
            if self._send_from_loop([STREAM, task.id]) != SENT:
                return None
            while True:
                await _until(task.deadline, self._credit_async(task))
                try:
                    item = await _until(task.deadline, items.__anext__())
                except StopAsyncIteration:
                    return [END, task.id]
                task.credit -= 1
                if self._send_from_loop([ITEM, task.id, item]) != SENT:
                    return None
                while self.outbox.queued() > _QUEUED_ITEMS:  # the client reads slowly
                    await asyncio.sleep(_TICK)
        finally:
            await items.aclose()

    async def _credit_async(self, task: _Task) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with self.lock:
                if task.credit > 0:
                    task.wakeup = None
                    return
                task.wakeup = loop.create_future()
            await task.wakeup

    def _send_from_loop(self, message: list[Any]) -> int:
        """Send from the event loop without blocking it. Returns as :meth:`_send`
        (SENT once queued)."""
        data, replaced = self._encode(self.loop_codec, message)
        if not self.outbox.send(data):
            return FAILED
        return REPLACED if replaced else SENT


class _DeadlinePassed(Exception):
    pass


async def _until(deadline: float | None, awaitable: Any) -> Any:
    """Await ``awaitable``, cancelling it at ``deadline`` (monotonic) if there is one."""
    if deadline is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        raise _DeadlinePassed from None


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Watchdog:
    """Finds calls that have run inline for a whole tick and hands reading over."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.sleeping = True
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = False

    def wake(self) -> None:
        if self._thread is None:
            with self.core.lock:
                if self._thread is None and not self._stop:
                    self._thread = threading.Thread(
                        target=self._run, name="unixipc-rpc-watchdog", daemon=True
                    )
                    self.sleeping = False
                    self._thread.start()
            return
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def _busy(self) -> bool:
        busy = False
        with self.core.lock:
            connections = list(self.core.connections)
        for connection in connections:
            running = connection.running
            if running is not None:
                busy = True
                if running is connection.watched:
                    connection.handoff(running=running)
            connection.watched = running
        return busy

    def _run(self) -> None:
        idle = 0
        while not self._stop:
            time.sleep(_TICK)
            if self._busy():
                idle = 0
                continue
            idle += 1
            if idle < _IDLE_TICKS:
                continue
            # Sleep until a call starts inline. A reader sets `running` and then looks
            # at `sleeping`: one of the two sides always sees the other's write.
            self._wake.clear()
            self.sleeping = True
            if not self._busy():
                self._wake.wait()
            self.sleeping = False
            idle = 0


class ServerCore:
    """The listener, the methods, the connections: everything but the event loop."""

    def __init__(
        self,
        registry: Registry,
        url: str,
        codec: str,
        max_concurrency: int,
        options: dict[str, Any],
        loop: Callable[[], asyncio.AbstractEventLoop],
    ) -> None:
        self.registry = registry
        self.handler_loop = loop  # the event loop that runs ``async def`` handlers
        self.codec_name = make_codec(codec).name
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise TypeError(f"max_concurrency must be an int, not {type(max_concurrency).__name__}")
        if not 0 < max_concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"max_concurrency must be from 1 to {MAX_CONCURRENCY}")
        self.max_concurrency = max_concurrency
        self.lock = threading.Lock()
        self.connections: set[Connection] = set()
        self.watchdog = Watchdog(self)
        self.closing = False
        self.accepting = False
        self._accept_done = threading.Event()
        self._accept_thread: int | None = None
        self.listener: Listener = listen(url, **options)
        self.url = self.listener.url

    def forget(self, connection: Connection) -> None:
        with self.lock:
            self.connections.discard(connection)

    def serve(self) -> None:
        """Accept clients until closed (the body of ``serve_forever``)."""
        with self.lock:
            if self.closing:
                raise ClosedResourceError(f"RPC server {self.url!r} is closed")
            if self.accepting:
                raise RuntimeError(f"RPC server {self.url!r} is already serving")
            self.accepting = True
            self._accept_thread = threading.get_ident()
        try:
            while not self.closing:
                try:
                    channel = self.listener.accept(timeout=_SLICE)
                except (TimeoutExpired, WouldBlock):
                    continue
                except (ClosedResourceError, EndOfChannel, PeerDied) as error:
                    if not self.closing:  # the listener itself is unusable
                        logger.error("RPC server %s stops: %s", self.url, error)
                    break
                except IPCError as error:  # one client's failed connection, or no resources
                    logger.warning("RPC server %s: accept failed: %s", self.url, error)
                    time.sleep(_SLICE)
                    continue
                connection = Connection(self, channel)
                with self.lock:
                    if self.closing:
                        channel.close()
                        break
                    self.connections.add(connection)
                connection.start()
        finally:
            self.listener.close()
            self._accept_done.set()

    def shutdown(self) -> None:
        """Stop accepting, cancel the calls on the loop, tell every connection to end
        (each does once its running calls in threads have returned). Never waits."""
        with self.lock:
            if self.closing:
                return
            self.closing = True
            accepting = self.accepting
            connections = list(self.connections)
        if not accepting:
            self.listener.close()
        for connection in connections:
            connection.stop()
        self.watchdog.stop()

    def wait(self, timeout: float = _CLOSE_WAIT) -> None:
        """Wait until the listener is closed, and for the connections to end (at most
        ``timeout`` seconds); not in a thread the server runs a call in."""
        if threading.current_thread().name.startswith("unixipc-rpc"):
            return
        if self.accepting and self._accept_thread != threading.get_ident():
            self._accept_done.wait()
        until = time.monotonic() + timeout
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            connection.done.wait(max(0.0, until - time.monotonic()))


class _LoopThread:
    """The threaded server's own event loop for ``async def`` handlers, started on
    first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._stopped:
                raise ClosedResourceError("the RPC server is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="unixipc-rpc-loop", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def finish() -> None:
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        loop.call_soon_threadsafe(loop.create_task, finish())
        if thread is not threading.current_thread():
            thread.join()
            loop.close()


class ServerBase(Registry):
    """What the threaded and the asyncio server share."""

    _core: ServerCore

    @property
    def url(self) -> str:
        """The URL clients connect to (for ``tcp://host:0``, the port actually bound)."""
        return self._core.url

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._core.closing

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        kind = f"{type(self).__module__}.{type(self).__name__}".replace("._server", "")
        return f"<{kind} {self.url!r} {state}, {len(self._methods)} methods>"


class Server(ServerBase):
    """An RPC server: clients call the functions it offers, over any channel URL.

    ::

        server = unixipc.rpc.Server("unix:///tmp/calc.sock")

        @server.function
        def add(a, b):
            return a + b

        server.serve_forever()          # until server.close() (from any thread)

    The listener is made at once (``url`` and ``channel_options`` as
    :func:`unixipc.listen`: ``max_message_size``, ``permissions``, ...), so
    clients may connect as soon as the constructor returns; they are served
    once :meth:`serve_forever` runs.

    Each client's calls may run concurrently, at most ``max_concurrency`` at a
    time (the client is told the limit and waits for a free slot). A plain
    function runs in one of the server's threads; a quick call runs in the
    thread that read it, so a call costs no hand-over between threads. An
    ``async def`` function runs on the server's event loop (a thread it starts
    on first use). A generator function streams what it yields; the client
    may stop early, which closes the generator (its ``finally`` blocks run).

    ``codec`` is "msgpack" (the default) or "json", which clients must use too;
    "pickle" works only on an authenticated channel (its peer could otherwise
    run any code in this process): give the server and its clients the same
    ``secret=`` (a channel option), or check clients with ``allowed_uids=`` or
    TLS client certificates.

    Raises:
        TypeError, ValueError: a bad codec, limit or channel option.
        ResourceExistsError, IPCOSError: as :func:`unixipc.listen`.
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
        self._loop = _LoopThread()
        self._core = ServerCore(self, url, codec, max_concurrency, channel_options, self._loop.get)

    def serve_forever(self) -> None:
        """Accept clients and serve them until :meth:`close` is called.

        Raises:
            ClosedResourceError: the server is closed.
            RuntimeError: another thread is already serving.
        """
        self._core.serve()

    def close(self) -> None:
        """Stop serving: stop accepting (the listener's name is removed), cancel the
        running ``async def`` calls, and end every connection (clients get
        :class:`EndOfChannel`) once its running calls in threads returned, waiting
        for them a few seconds at most. Idempotent."""
        self._core.shutdown()
        self._core.wait()
        self._loop.stop()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
