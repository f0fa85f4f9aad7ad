"""Topics: publish/subscribe over shared memory, with history and zero-copy loans.

``Topic.create(name, capacity=..., max_message_size=...)`` makes a POSIX shared
memory object holding ``capacity`` message slots; any process ``Topic.open``\\ s it.
``topic.publisher()`` gives a :class:`Publisher` (``publish(data)``, or
``with pub.loan(size) as buf:`` to write a message in place), and
``topic.subscribe()`` a :class:`Subscriber` (``receive``, ``receive_into``,
``receive_many``, ``receive_view``). Every subscriber gets every message
published after it subscribed, plus up to ``history`` earlier ones, in the order
each publisher published them.

Slow subscribers: ``overflow="block"`` (the default) makes publishers wait while
this subscriber is a whole ``capacity`` behind; ``overflow="drop"`` never holds
publishers back: when they overtake it, its next receive raises
:class:`~unixipc.errors.MessagesMissed` with the exact count it lost, and it goes
on with the oldest message still there (copies are validated after the fact, so
a message is never torn or stale).

Every publisher and subscriber has ``fileno()``: a doorbell descriptor that
becomes readable when a receive (or publish) that found nothing (no room) may
succeed now, so ``selectors``, asyncio (:mod:`unixipc.aio`) and
:func:`unixipc.wait` wait on topics without helper threads; ``ready()`` arms it
and tells whether the call would succeed at once. The fast paths make no system
call: a doorbell rings only for a peer that said it is going to sleep.

Crash safety: each publisher and subscriber holds a lock byte of the object
that the kernel releases when its process dies. A dead subscriber stops holding
publishers back (noticed within about 0.2 s); a publisher killed while writing
(or in the middle of a loan) loses only that message, which subscribers skip.

Persistence: kernel, like the POSIX shared memory object it lives in: the topic
and its recent messages stay until ``unlink()`` (or a reboot).

Portability: Linux (open file description locks, abstract UNIX sockets,
/proc/self/fd).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from . import _native
from ._doorbell import Doorbell
from ._names import check_int, check_permissions, check_posix_name
from ._resource import Resource
from .errors import IPCError, IPCOSError, ResourceLimitError, from_os_error
from .posix_shm import PosixSharedMemory, names_starting_with, starts_with, unlink_as

__all__ = ("Publisher", "Subscriber", "Topic", "TopicInfo", "exists", "list_names", "unlink")

KIND = "topic"

#: The most message slots and the largest message a topic can have.
MAX_CAPACITY: int = _native.TOPIC_MAX_CAPACITY
MAX_MESSAGE_SIZE: int = _native.TOPIC_MAX_MESSAGE
#: Publishers and subscribers of one topic at a time, over every process.
MAX_HANDLES: int = _native.TOPIC_MAX_HANDLES

_MAGIC = (0x4349504F54585855).to_bytes(8, "little")
_TEST_STOP_POINTS = {"loan-writing": 1, "subscriber-copying": 2, "publisher-claimed": 3}

_open_topics: weakref.WeakSet[Topic] = weakref.WeakSet()


@dataclass(frozen=True)
class TopicInfo:
    """What ``Topic.info()`` reports: a snapshot, which peers may change at once."""

    name: str
    capacity: int
    max_message_size: int
    history: int
    published: int  # messages published since creation
    publishers: int  # live ones, over every process
    subscribers: int


def exists(name: str) -> bool:
    """True if a topic called ``name`` exists (a shared memory object with its magic)."""
    return starts_with(name, _MAGIC)


def list_names() -> list[str]:
    """The names of the topics in /dev/shm that this user can read, sorted."""
    return names_starting_with(_MAGIC)


def unlink(name: str) -> None:
    """Remove the topic's name; processes that have it open keep using it.

    Raises:
        ResourceNotFoundError: no object called ``name``.
        PermissionDeniedError: not allowed to remove it.
    """
    unlink_as(name, KIND)


# --- For the inspector (unixipc.inspect): a topic read through a descriptor, never
# attached. These mirror struct topic_header and struct topic_handle in topic.c.
_LAYOUT = struct.Struct("<8sIIQQQQQII")  # magic, version, header bytes, capacity, stride,
# max message, history, data offset, handle count, handle bytes
_TAIL_AT = 64
_HANDLES_USED_AT = 320
_HANDLE = struct.Struct("<III")  # state, role, pid
_HANDLE_ATTACHED = 1
_HANDLE_BYTES = 64
_F_OFD_GETLK = 36
_FLOCK = struct.Struct("hhqqi4x")


def _inspect(fd: int) -> dict[str, object] | None:
    """What a topic open on ``fd`` (read-only is enough) holds, or None if it is no topic.

    Reads with pread and asks the kernel (F_OFD_GETLK) which handles live; takes
    no lock and writes nothing. A topic with no live handle is idle, never stale:
    it is meant to outlive its publishers and subscribers.
    """
    header = os.pread(fd, _LAYOUT.size, 0)
    if len(header) < _LAYOUT.size or header[:8] != _MAGIC:
        return None
    _, version, header_bytes, capacity, _, max_message, history, _, count, size = _LAYOUT.unpack(
        header
    )
    if version != 1 or size != _HANDLE_BYTES or not 0 < count <= 1024 or capacity < 2:
        return {"layout": "unknown", "version": version}
    (tail,) = struct.unpack("<Q", os.pread(fd, 8, _TAIL_AT))
    (used,) = struct.unpack("<I", os.pread(fd, 4, _HANDLES_USED_AT))
    table = os.pread(fd, min(used, count) * size, header_bytes)
    publishers: list[int] = []
    subscribers: list[int] = []
    dead = 0
    for index in range(len(table) // size):
        state, role, pid = _HANDLE.unpack_from(table, index * size)
        if state != _HANDLE_ATTACHED:
            continue
        request = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, index, 1, 0)
        try:
            alive = _FLOCK.unpack(fcntl.fcntl(fd, _F_OFD_GETLK, request))[0] != fcntl.F_UNLCK
        except OSError:
            alive = True
        if not alive:
            dead += 1
        elif role & _native.TOPIC_ROLE_PUBLISHER:
            publishers.append(pid)
        else:
            subscribers.append(pid)
    return {
        "capacity": capacity,
        "max_message_size": max_message,
        "history": history,
        "published": max(0, tail - capacity),
        "publishers": publishers,
        "subscribers": subscribers,
        "dead_ends": dead,
    }


def _stop_at(point: str | None) -> None:
    """Tests only: make this process SIGSTOP itself at ``point`` (None: never)."""
    _native.topic_test_stop(0 if point is None else _TEST_STOP_POINTS[point])


def _after_fork_in_child() -> None:
    for topic in list(_open_topics):
        topic._forget_parent()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Topic(Resource):
    """A handle on a topic: makes publishers and subscribers, reports ``info()``.

    ``close()`` closes the publishers and subscribers made from this handle
    (they live until then unless closed themselves). Pickling a Topic (as
    multiprocessing's spawn does) reopens it by name.
    """

    kind = KIND
    _factories = ("create", "open")

    def __init__(self, memory: PosixSharedMemory) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self.name = memory.name
        self._memory = memory
        # Kept until closed: a subscriber stays subscribed while its topic handle is
        # open, even if the program dropped it (then close() of the topic ends it).
        self._ends: set[_End] = set()
        capacity, max_message, history, _, _, _ = _native.topic_snapshot(
            memory.buf, memory.fileno()
        )
        self._capacity: int = capacity
        self._max_message_size: int = max_message
        self._history: int = history
        self._opened(memory.name)
        _open_topics.add(self)

    @classmethod
    def create(
        cls,
        name: str,
        *,
        capacity: int,
        max_message_size: int,
        history: int = 0,
        permissions: int = 0o600,
        allow_world_writable: bool = False,
    ) -> Topic:
        """Create the topic ``name`` and open it; it appears whole or not at all.

        ``capacity`` is the number of message slots (at least 2); a blocking
        subscriber may fall that many messages behind before publishers wait.
        ``history`` (less than ``capacity``) is how many earlier messages a new
        subscriber may still receive. Shared memory used: about ``capacity``
        times ``max_message_size`` rounded up to 64 bytes, plus 16 bytes each,
        plus 12 KiB, all reserved at once.

        Raises:
            ResourceExistsError: ``name`` exists already.
            ResourceLimitError: no room in /dev/shm for the topic.
        """
        name = check_posix_name(name)
        capacity = check_int(capacity, "capacity", minimum=2)
        if capacity > MAX_CAPACITY:
            raise ValueError(f"capacity must be <= {MAX_CAPACITY}, got {capacity}")
        max_message_size = check_int(max_message_size, "max_message_size", minimum=0)
        if max_message_size > MAX_MESSAGE_SIZE:
            raise ValueError(
                f"max_message_size must be <= {MAX_MESSAGE_SIZE}, got {max_message_size}"
            )
        history = check_int(history, "history", minimum=0)
        if history >= capacity:
            raise ValueError(f"history must be less than capacity ({capacity}), got {history}")
        permissions = check_permissions(permissions, allow_world_writable=allow_world_writable)
        size = _native.topic_size(capacity, max_message_size)
        # PosixSharedMemory.create prepares the object without a name (exact
        # permissions, pages reserved), lets us lay the topic out, and only then
        # gives it its name: nobody opens a half-made topic, and a failure (or a
        # creator killed on the way) leaves nothing.
        try:
            memory = PosixSharedMemory.create(
                name,
                size,
                permissions=permissions,
                allow_world_writable=allow_world_writable,
                initialize=lambda buffer: _native.topic_initialize(
                    buffer, capacity, max_message_size, history
                ),
            )
        except IPCOSError as error:
            if isinstance(error, ResourceLimitError):
                raise
            raise from_os_error(error, KIND, name) from None
        try:
            return cls._make(memory)
        except BaseException:
            memory.close()
            with contextlib.suppress(OSError):
                _native.shm_unlink(name)
            raise

    @classmethod
    def open(cls, name: str) -> Topic:
        """Open the existing topic ``name``.

        Raises:
            ResourceNotFoundError: no object called ``name``.
            PermissionDeniedError: its permissions forbid reading and writing.
            IPCError: the object is not a topic (or is damaged); the message says how.
        """
        name = check_posix_name(name)
        try:
            memory = PosixSharedMemory.open(name)
        except IPCOSError as error:
            raise from_os_error(error, KIND, name) from None
        try:
            return cls._make(memory)
        except IPCError as error:
            memory.close()
            raise IPCError(f"{KIND} {name!r}: {error}") from None
        except BaseException:
            memory.close()
            raise

    @property
    def capacity(self) -> int:
        """Message slots in the topic."""
        return self._capacity

    @property
    def max_message_size(self) -> int:
        """The largest message, in bytes."""
        return self._max_message_size

    @property
    def history(self) -> int:
        """How many earlier messages a new subscriber may receive."""
        return self._history

    def publisher(self) -> Publisher:
        """A new publisher on this topic (one thread at a time uses it).

        Raises:
            ResourceLimitError: the topic has 128 publishers and subscribers already.
        """
        self._check_open()
        return Publisher(self)

    def subscribe(
        self, *, history: bool | int = True, overflow: Literal["block", "drop"] = "block"
    ) -> Subscriber:
        """A new subscriber: it gets every message published from now on.

        ``history=True`` also gives it up to the topic's ``history`` messages
        published before (an int asks for at most that many; False for none).
        ``overflow`` says what happens when publishers are a whole capacity ahead
        of it: ``"block"`` makes them wait, ``"drop"`` lets them overwrite, and
        its next receive raises ``MessagesMissed`` with the count.

        Raises:
            ResourceLimitError: the topic has 128 publishers and subscribers already.
        """
        if isinstance(history, bool):
            wanted = self._history if history else 0
        else:
            wanted = min(check_int(history, "history", minimum=0), self._history)
        if overflow not in ("block", "drop"):
            raise ValueError(f"overflow must be 'block' or 'drop', got {overflow!r}")
        self._check_open()
        return Subscriber(self, wanted, overflow)

    def info(self) -> TopicInfo:
        """Capacity, limits, messages published so far, live publishers and subscribers."""
        self._check_open()
        capacity, max_message, history, published, publishers, subscribers = _native.topic_snapshot(
            self._memory.buf, self._memory.fileno()
        )
        return TopicInfo(
            self.name, capacity, max_message, history, published, publishers, subscribers
        )

    def unlink(self) -> None:
        """Remove the topic's name (open handles keep working until closed).

        Raises:
            ResourceNotFoundError: already removed.
        """
        unlink(self.name)

    def close(self) -> None:
        """Close this handle's publishers and subscribers, then unmap. Idempotent.

        Raises:
            IPCError: a loan or a ``receive_view()`` is still open (nothing closed
                after it; the topic stays usable).
        """
        if self._closed:
            return
        for end in list(self._ends):
            end.close()
        super().close()

    def _release(self) -> None:
        _open_topics.discard(self)
        self._memory.close()

    def __reduce__(self) -> tuple[object, tuple[str]]:
        # A handle means nothing in another process: the other process opens the name.
        return (type(self).open, (self.name,))

    def _new_lock_description(self) -> int:
        """An open file description of the object of our own, for a liveness byte."""
        try:
            return os.open(f"/proc/self/fd/{self._memory.fileno()}", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return _native.shm_open(self.name, os.O_RDWR, 0)

    def _forget_parent(self) -> None:
        """In a child after fork: the publishers and subscribers are the parent's."""
        for end in list(self._ends):
            end._forget_parent()


class _End(Resource):
    """What publishers and subscribers share: a handle slot, a liveness lock, a doorbell."""

    kind = "topic end"
    _topic: Topic
    _bell: Doorbell
    _lock_fd: int = -1

    def _join(self, topic: Topic, role: int) -> None:
        self.name = topic.name
        self._topic = topic
        self._name = topic.name
        self._bell = Doorbell()
        try:
            self._lock_fd = topic._new_lock_description()
            slot = self._attach(  # type: ignore[attr-defined]
                topic._memory.buf,
                self._lock_fd,
                self._bell.fileno(),
                self._bell.id,
                self.describe(),
                role,
            )
            if slot < 0:
                raise from_os_error(
                    OSError(errno.EUSERS, os.strerror(errno.EUSERS)),
                    KIND,
                    topic.name,
                    limit=f"at most {MAX_HANDLES} publishers and subscribers per topic",
                )
        except BaseException:
            self._drop_handles()
            raise
        self._opened(topic.name)
        topic._ends.add(self)

    def fileno(self) -> int:
        """The doorbell: readable when a call that found nothing to do may succeed now."""
        self._check_open()
        return self._bell.fileno()

    def close(self) -> None:
        """Leave the topic. Idempotent; other threads waiting here get ClosedResourceError."""
        if self._closed:
            return
        self._check_closable()
        if self._begin_close():  # type: ignore[attr-defined]
            deadline = time.monotonic() + 10
            while self._busy():  # type: ignore[attr-defined]
                if time.monotonic() > deadline:
                    raise IPCError(f"cannot close {self.describe()}: calls are still running")
                time.sleep(0.0005)
        super().close()

    def _check_closable(self) -> None:
        """Raise IPCError while a loan or view is open."""

    def _release(self) -> None:
        self._topic._ends.discard(self)
        self._drop_handles()

    def _drop_handles(self) -> None:
        self._detach()  # type: ignore[attr-defined]
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        self._bell.close()

    def _forget_parent(self) -> None:
        # The slot, the lock and the doorbell are the parent's: let go of our copies
        # (closing a copy releases nothing of the parent's).
        self._forked()  # type: ignore[attr-defined]
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        self._bell.close()

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError(
            f"a {type(self).__name__} cannot be sent to another process: "
            "send the Topic (or its name) and make a new one there"
        )


class Publisher(_End, _native.TopicPublisherCore):
    """Publishes messages to every subscriber of a topic.

    ``publish`` and ``ready`` come from the native core (see their docstrings).
    Messages of one publisher arrive in the order it published them. One thread
    at a time uses a publisher (make one per thread).
    """

    kind = "topic publisher"

    def __init__(self, topic: Topic) -> None:
        """Use :meth:`Topic.publisher`."""
        self._loaned: memoryview | None = None
        self._join(topic, _native.TOPIC_ROLE_PUBLISHER)

    @contextlib.contextmanager
    def loan(self, size: int, *, timeout: float | None = None) -> Iterator[memoryview]:
        """Lend ``size`` bytes of the topic to fill in place; publish them on exit.

        Nothing is copied: the block writes straight into the message slot that
        subscribers read (it holds old bytes: write all of it). An exception
        inside the block publishes nothing (the slot is given back). Keep no
        views derived from the buffer (NumPy arrays) beyond the block.
        Subscribers wait for this message until the block ends, so keep loans
        short.

        Raises:
            MessageTooLarge: ``size`` is larger than ``max_message_size``.
            WouldBlock, TimeoutExpired: as ``publish()``.
            IPCError: a view derived from the buffer outlived the block (nothing
                was published).
        """
        size = check_int(size, "size", minimum=0)
        offset = self._loan_take(size, timeout=timeout)
        try:
            lease = _native.BufferLease(self._topic._memory.buf, offset, size, False)
            self._loaned = memoryview(lease)  # type: ignore[arg-type]  # exports a buffer
        except BaseException:
            self._loan_finish(False)
            raise
        publish = False
        try:
            yield self._loaned
            publish = True
        finally:
            self._loaned.release()
            self._loaned = None
            outlived = not lease.revoke()
            self._loan_finish(publish and not outlived)
        if outlived:
            raise IPCError(
                f"{self.describe()}: a view derived from the loan outlived its with block; "
                "nothing was published"
            )

    def _check_closable(self) -> None:
        if self._loaned is not None:
            raise IPCError(f"cannot close {self.describe()}: a loan is still open")


class Subscriber(_End, _native.TopicSubscriberCore):
    """Receives every message published to a topic after it subscribed.

    ``receive``, ``receive_into``, ``receive_many``, ``ready`` and ``missed``
    come from the native core (see their docstrings). One thread at a time uses
    a subscriber (make one per thread).
    """

    kind = "topic subscriber"

    def __init__(self, topic: Topic, history: int, overflow: str) -> None:
        """Use :meth:`Topic.subscribe`."""
        self.overflow = overflow
        self._view: memoryview | None = None
        role = _native.TOPIC_ROLE_SUBSCRIBER
        if overflow == "drop":
            role |= _native.TOPIC_ROLE_DROP
        self._join(topic, role)
        try:
            self._place(history)
            if self.ready():
                self._bell.ring()  # history is waiting: a selector must see it at once
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def receive_view(self, *, timeout: float | None = None) -> Iterator[memoryview]:
        """Yield the next message as a read-only memoryview inside the topic: no copy.

        The message is held until the ``with`` block ends: publishers wait for it
        (a blocking subscriber holds them anyway; a dropping one holds this one
        message). Keep no views derived from it beyond the block.

        Raises:
            MessagesMissed, WouldBlock, TimeoutExpired: as ``receive()``.
            IPCError: a view of this subscriber is already open, or a view derived
                from this one outlived the block (the message is let go anyway).
        """
        offset, length = self._view_take(timeout=timeout)
        try:
            lease = _native.BufferLease(self._topic._memory.buf, offset, length, True)
            self._view = memoryview(lease)  # type: ignore[arg-type]  # exports a buffer
        except BaseException:
            self._view_release()
            raise
        try:
            yield self._view
        finally:
            self._view.release()
            self._view = None
            outlived = not lease.revoke()
            self._view_release()
        if outlived:
            raise IPCError(
                f"{self.describe()}: a view derived from receive_view() outlived its with "
                "block; the message may be overwritten under it"
            )

    def _check_closable(self) -> None:
        if self._view is not None:
            raise IPCError(f"cannot close {self.describe()}: a receive_view() is still open")
