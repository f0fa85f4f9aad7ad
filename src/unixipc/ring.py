"""A shared-memory ring: variable-length messages between any number of processes.

``Ring.create(name, capacity)`` makes a POSIX shared memory object holding a ring
of ``capacity`` bytes; any process ``Ring.open(name)``\\ s it and calls ``send``
and ``receive`` (or ``send_many``/``receive_many`` for batches, ``receive_into``
to fill a buffer, ``receive_view()`` to read a message in place). Many producers
and many consumers may share one ring: every message is delivered exactly once,
in the order each producer sent them.

Waiting spins briefly, then sleeps on a futex in the shared memory; an idle
receiver costs no CPU. Crash safety: a process killed while writing never shows
a torn message to readers (its unfinished record becomes padding), messages it
committed are still delivered, and the space it held comes back; a receiver
whose every producer is gone gets ``EndOfChannel`` if the last one closed the
ring and ``PeerDied`` if one died (noticed within about 0.2 s). A message that
a killed consumer had taken but not finished is lost with it.

Persistence: kernel, like the POSIX shared memory object it lives in: the ring
and its messages stay until ``unlink()`` (or a reboot), and a ring left behind
by crashed processes can be opened and used again.

Portability: Linux (futex, open file description locks, /proc/self/fd).
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

from . import _native
from ._doorbell import Doorbell
from ._names import check_int, check_permissions, check_posix_name
from ._resource import Resource, all_or_nothing
from .errors import (
    IPCError,
    IPCOSError,
    ResourceExistsError,
    ResourceLimitError,
    from_os_error,
)
from .posix_shm import PosixSharedMemory, names_starting_with, starts_with, unlink_as

__all__ = ("Ring", "RingInfo", "exists", "list_names", "unlink")

KIND = "shared-memory ring"

#: The smallest and largest ``capacity`` a ring can have, in bytes.
MIN_CAPACITY: int = _native.RING_MIN_CAPACITY
MAX_CAPACITY: int = _native.RING_MAX_CAPACITY

_MAGIC = (0x31474E4952585855).to_bytes(8, "little")
_PRODUCER = 1
_CONSUMER = 2
#: Points where a test can make this process stop itself (SIGSTOP), to kill it there.
_TEST_STOP_POINTS = {
    "producer-claimed": 1,
    "producer-half-written": 2,
    "producer-written": 3,
    "consumer-claimed": 4,
    "consumer-copied": 5,
    "consumer-woken": 6,
}

_open_rings: weakref.WeakSet[Ring] = weakref.WeakSet()
# Slots a handle reserves for forked children at most; later children take a
# slot on first use (the ring has 128 for every handle of every process).
_MAX_CHILD_SLOTS = 8


@dataclass(frozen=True)
class RingInfo:
    """What ``Ring.info()`` reports: a snapshot, which peers may change at once."""

    name: str
    capacity: int
    max_message_size: int
    used_bytes: int
    messages: int
    producers: int
    consumers: int
    attached: int


def exists(name: str) -> bool:
    """True if a ring called ``name`` exists (a shared memory object with the ring's magic)."""
    return starts_with(name, _MAGIC)


def list_names() -> list[str]:
    """The names of the rings in /dev/shm that this user can read, sorted."""
    return names_starting_with(_MAGIC)


def unlink(name: str) -> None:
    """Remove the ring's name; processes that have it open keep using it.

    Raises:
        ResourceNotFoundError: no object called ``name``.
        PermissionDeniedError: not allowed to remove it.
    """
    unlink_as(name, KIND)


# --- For the inspector (unixipc.inspect): a ring read through a descriptor, never attached.
# These mirror struct ring_header and struct ring_slot in src/native/ring_core.h;
# tests/test_inspect.py checks them against Ring.info() of a live ring.
_LAYOUT = struct.Struct("<8sIIQQIIQQ")  # magic, version, header/capacity/data/slots, key, max
_POSITIONS = struct.Struct("<Q56xQ56xQ")  # tail, head, free: one cache line each
_POSITIONS_AT = 64
_SLOT = struct.Struct("<IIIIQQQQQQ")  # state, roles, pid, waiting, claim, read, view ranges
_SLOT_ATTACHED = 1
_RECORD = struct.Struct("<IIQ")  # length, size, tag
_KIND_MESSAGE, _KIND_PADDING = 1, 2
_F_OFD_GETLK, _F_OFD_SETLK = 36, 37
_FLOCK = struct.Struct("hhqqi4x")
_MESSAGE_WALK_LIMIT = 100_000


def _tag_base(position: int, key: int) -> int:
    z = position ^ key
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & ~15


def _lock_byte_held(fd: int, byte: int) -> bool:
    """Whether a handle holds the lock byte (F_OFD_GETLK: a question, not a lock)."""
    request = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0)
    try:
        answer = fcntl.fcntl(fd, _F_OFD_GETLK, request)
    except OSError:
        return True  # as the ring itself decides: an error counts as alive
    return bool(_FLOCK.unpack(answer)[0] != fcntl.F_UNLCK)


def _inspect(fd: int) -> dict[str, object] | None:
    """What a ring open on ``fd`` (read-only is enough) holds, or None if it is no ring.

    Reads with pread and asks the kernel about the lock bytes; attaches nothing,
    takes no lock and writes nothing. ``dead_handles`` are handles that were
    never closed and whose lock the kernel released: their process died.
    """
    header = os.pread(fd, _LAYOUT.size, 0)
    if len(header) < _LAYOUT.size:
        return None
    magic, version, header_bytes, capacity, data_offset, slot_count, slot_bytes, key, _max = (
        _LAYOUT.unpack(header)
    )
    if magic != _MAGIC:
        return None
    layout_ok = (
        version == 3
        and data_offset == header_bytes + slot_count * slot_bytes
        and slot_bytes == _SLOT.size
        and 0 < capacity <= MAX_CAPACITY
        and os.fstat(fd).st_size >= data_offset + capacity
    )
    if not layout_ok:
        return {"layout": "unknown", "version": version}
    tail, head, free = _POSITIONS.unpack(os.pread(fd, _POSITIONS.size, _POSITIONS_AT))
    slots = os.pread(fd, slot_count * slot_bytes, header_bytes)
    producers: list[int] = []
    consumers: list[int] = []
    handles: list[int] = []
    dead_roles = 0
    dead = 0
    for index in range(slot_count):
        state, roles, pid, *_ranges = _SLOT.unpack_from(slots, index * slot_bytes)
        if state != _SLOT_ATTACHED:
            continue
        if not _lock_byte_held(fd, index):
            dead += 1
            dead_roles |= roles
            continue
        handles.append(pid)
        if roles & _PRODUCER:
            producers.append(pid)
        if roles & _CONSUMER:
            consumers.append(pid)
    messages: int | None = 0
    position = head
    for _ in range(_MESSAGE_WALK_LIMIT):
        if position >= tail:
            break
        record = os.pread(fd, _RECORD.size, data_offset + position % capacity)
        _length, record_size, tag = _RECORD.unpack(record)
        base = _tag_base(position, key)
        if tag not in (base | _KIND_MESSAGE, base | _KIND_PADDING) or record_size < _RECORD.size:
            break  # not committed yet
        messages = (messages or 0) + (tag == base | _KIND_MESSAGE)
        position += record_size
    else:
        messages = None  # too many to count here
    return {
        "capacity": capacity,
        "used_bytes": max(tail - free, 0),
        "messages": messages,
        "bytes_written": tail,
        "bytes_read": head,
        "handles": len(handles),
        "dead_handles": dead,
        "dead_roles": [
            role for bit, role in ((1, "producer"), (2, "consumer")) if dead_roles & bit
        ],
        "producers": len(producers),
        "consumers": len(consumers),
        "handle_pids": sorted(set(handles)),
        "producer_pids": sorted(set(producers)),
        "consumer_pids": sorted(set(consumers)),
    }


def _lock_abandoned(fd: int) -> bool:
    """For removal: take every handle's lock byte at once (``fd`` open for writing).

    True means no handle was alive and none can attach until ``fd`` is closed.
    """
    slot_count = _LAYOUT.unpack(os.pread(fd, _LAYOUT.size, 0))[5]
    request = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, slot_count, 0)
    try:
        fcntl.fcntl(fd, _F_OFD_SETLK, request)
    except OSError:
        return False
    return True


def _stop_at(point: str | None) -> None:
    """Tests only: make this process SIGSTOP itself at ``point`` (None: never)."""
    _native.ring_test_stop(0 if point is None else _TEST_STOP_POINTS[point])


def _before_fork() -> None:
    for ring in list(_open_rings):
        ring._reserve_for_next_child()


def _after_fork_in_parent() -> None:
    for ring in list(_open_rings):
        ring._keep_child_reservation()


def _after_fork_in_child() -> None:
    for ring in list(_open_rings):
        ring._forget_parent()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


class Ring(Resource, _native.RingCore):
    """A handle on a shared-memory ring of messages.

    ``send``, ``send_many``, ``receive``, ``receive_into``, ``receive_many`` and
    the properties ``max_message_size`` and ``capacity`` come from the native
    core (see their docstrings). A handle is a producer once it sends and a
    consumer once it receives (or after :meth:`declare`); ``info()`` counts them.

    Each handle holds a lock byte of the shared memory object while it is open:
    the kernel releases it when the process dies, which is how peers tell a dead
    handle from a slow one. A forked child gets a handle of its own on first use;
    pickling a Ring (as multiprocessing's spawn does) reopens it by name.
    """

    kind = KIND
    _factories = ("create", "open", "open_or_create")

    def __init__(self, memory: PosixSharedMemory) -> None:
        """Use :meth:`create`, :meth:`open` or :meth:`open_or_create`."""
        self.name = memory.name
        self._name = memory.name
        self._memory = memory
        self._lock_fd = -1
        self._view: memoryview | None = None
        # Channels opt in to handing their roles to forked children (see
        # _reserve_for_next_child) and choose how close() ends them.
        self._inherited_by_children = False
        self._reservation: tuple[int, int] | None = None  # (slot, lock fd) for the child
        self._child_slots: list[tuple[int, int]] = []  # reserved for children: (slot, lock fd)
        self._close_announces = True  # False: close() hands the roles over, silently
        self._bell: Doorbell | None = None  # made by the first fileno() or ready()
        # Roles a forked child's reserved slot takes although this handle has not
        # declared them yet: a channel_pair end not used yet (the child may be the
        # one that uses it, and may die before it does).
        self._child_roles = 0
        try:
            self._attach(memory.buf, -1, self.describe())
            self._take_slot_with_new_lock()
            _open_rings.add(self)
            self._opened(memory.name)  # from here on, close() releases it all
        except BaseException:
            # Whatever interrupted us (a signal handler's exception can come anywhere),
            # nothing stays attached: an attached handle keeps an export of the mapping.
            if not self._closed:
                self._discard()
            else:
                _open_rings.discard(self)
                self._detach()
                if self._lock_fd >= 0:
                    os.close(self._lock_fd)
                    self._lock_fd = -1
            raise

    @classmethod
    @all_or_nothing
    def create(cls, name: str, capacity: int, *, permissions: int = 0o600) -> Ring:
        """Create the ring ``name`` with ``capacity`` bytes of message space and open it.

        ``capacity`` is rounded up to a multiple of 64; the largest message is
        half of it less 16 bytes (``max_message_size``), so that a message
        always fits in one piece. The ring's memory is reserved at once, and the
        name appears only when the ring is laid out: a failure (or an exception
        from a signal handler, such as KeyboardInterrupt) leaves nothing.

        Raises:
            ResourceExistsError: ``name`` exists already.
            ResourceLimitError: no room for the ring in /dev/shm.
        """
        name = check_posix_name(name)
        capacity = _check_capacity(capacity)
        permissions = check_permissions(permissions)
        key = int.from_bytes(os.urandom(8), "little")
        # PosixSharedMemory.create prepares the object without a name (exact
        # permissions, pages reserved: a full /dev/shm is an error now, not a
        # SIGBUS at some later send), lets us lay the ring out, and only then names
        # it. The creation journal (all_or_nothing) removes the name again if
        # anything after that fails, attaching this handle included.
        try:
            memory = PosixSharedMemory.create(
                name,
                _native.RING_DATA_OFFSET + capacity,
                permissions=permissions,
                initialize=lambda buffer: _native.ring_initialize(buffer, capacity, key),
            )
        except IPCOSError as error:
            if isinstance(error, ResourceLimitError):
                raise  # it names the filesystem and its free space
            raise from_os_error(error, KIND, name) from None
        return cls._make(memory)

    @classmethod
    def open(cls, name: str) -> Ring:
        """Open the existing ring ``name``.

        Raises:
            ResourceNotFoundError: no object called ``name``.
            PermissionDeniedError: its permissions forbid reading and writing.
            IPCError: the object is not a ring (or is damaged); the message says how.
        """
        name = check_posix_name(name)
        try:
            memory = PosixSharedMemory.open(name)
        except IPCOSError as error:
            raise from_os_error(error, KIND, name) from None
        try:
            _wait_until_initialized(memory)
            return cls._make(memory)
        except BaseException:
            memory.close()
            raise

    @classmethod
    def open_or_create(cls, name: str, capacity: int, *, permissions: int = 0o600) -> Ring:
        """Open ``name`` if it exists, else create it (an existing ring keeps its capacity).

        Raises:
            IPCError: an object called ``name`` exists but is not a ring.
        """
        name = check_posix_name(name)
        _check_capacity(capacity)
        check_permissions(permissions)
        while True:
            try:
                return cls.create(name, capacity, permissions=permissions)
            except ResourceExistsError:
                pass
            try:
                return cls.open(name)
            except FileNotFoundError:
                continue  # removed between our two calls: try again

    def declare(self, *, producer: bool = False, consumer: bool = False) -> None:
        """Count this handle as a producer and/or consumer now, before it sends or receives.

        Peers then see it in ``info()`` and learn when it closes or dies: a
        channel declares both ends at once so that a peer that dies before its
        first message still ends the other side's wait.
        """
        self._declare((_PRODUCER if producer else 0) | (_CONSUMER if consumer else 0))

    def fileno(self) -> int:
        """The readiness descriptor: readable when :meth:`ready` may have become true.

        A doorbell (a datagram socket) made on first use; senders ring it only
        after this handle armed it (``ready()`` returning False, or a call with
        ``timeout=0`` raising ``WouldBlock``), so the fast path stays free of
        system calls. ``selectors``, ``select.poll``, asyncio's ``add_reader`` and
        :func:`unixipc.wait` watch it.

        Raises:
            ClosedResourceError: this handle is closed.
        """
        self._check_open()
        if self._bell is None:
            bell = Doorbell()
            try:
                self._set_bell(bell.fileno(), bell.id)
            except BaseException:
                bell.close()
                raise
            self._bell = bell
        return self._bell.fileno()

    def ready(self, *, send: bool = False) -> bool:
        """Would ``receive(timeout=0)`` (``send=True``: a small ``send``) not block now?

        True when a message is there (room for one), or when the call would
        raise at once (every peer closed or died, a closed ring). Otherwise the
        doorbell is armed and :meth:`fileno` becomes readable when that may have
        changed. Dead peers are looked for at most every 50 ms.

        Raises:
            ClosedResourceError: this handle is closed.
        """
        self.fileno()
        return bool(self._ready(send))

    def _doorbell(self, send: bool) -> int:
        """For event loops: the descriptor, made and armed for one direction on first use.

        A call with ``timeout=0`` before the doorbell existed could not arm it: the
        first look here does, and rings it at once if what is awaited is there.
        """
        new = self._bell is None
        fd = self.fileno()
        if new and self.ready(send=send):
            self._ring_own_bell()
        return fd

    def _ring_own_bell(self) -> None:
        if self._bell is not None:
            self._bell.ring()

    @contextlib.contextmanager
    def receive_view(self, *, timeout: float | None = None) -> Iterator[memoryview]:
        """Take the next message and yield a read-only memoryview of it inside the ring.

        Nothing is copied; the message's space is given back when the ``with``
        block ends, and the view is released then (so keep no views derived
        from it, such as NumPy arrays, beyond the block). One view at a time per
        handle.

        Raises:
            WouldBlock, TimeoutExpired, EndOfChannel, PeerDied: as ``receive()``.
            IPCError: a view of this handle is already open, or a view derived
                from this one outlived the block (the message is freed anyway).
        """
        offset, length = self._view_take(timeout=timeout)
        try:
            whole = self._memory.buf
            piece = whole[offset : offset + length]
            self._view = piece.toreadonly()
            piece.release()
        except BaseException:
            self._view_release()
            raise
        outlived = False
        try:
            yield self._view
        finally:
            try:
                self._view.release()
            except BufferError:
                outlived = True
            self._view = None
            self._view_release()
        if outlived:
            raise IPCError(
                f"{self.describe()}: a view derived from receive_view() outlived its with "
                "block; the message's space has been reused"
            )

    def info(self) -> RingInfo:
        """Capacity, bytes in use, messages waiting, and live producers/consumers/handles."""
        self._check_open()
        capacity, used, messages, producers, consumers, attached = self._snapshot()
        return RingInfo(
            self.name,
            capacity,
            self.max_message_size,
            used,
            messages,
            producers,
            consumers,
            attached,
        )

    def unlink(self) -> None:
        """Remove the ring's name (open handles keep working until closed).

        Raises:
            ResourceNotFoundError: already removed.
        """
        unlink(self.name)

    def close(self) -> None:
        """Leave the ring and unmap it. Idempotent; never removes it (that is ``unlink``).

        If this was the last producer (consumer), waiting consumers (producers)
        get ``EndOfChannel`` once the ring is empty (full). Other threads waiting
        on this handle get ``ClosedResourceError``.

        Raises:
            IPCError: a ``receive_view()`` of this handle is still open.
        """
        if self._closed:
            return
        if self._view is not None:
            raise IPCError(f"cannot close {self.describe()}: a receive_view() is still open")
        if self._begin_close():
            # Other threads are inside a call: they give up at once; wait for them
            # to leave before the memory is unmapped.
            deadline = time.monotonic() + 10
            while self._busy():
                if time.monotonic() > deadline:
                    raise IPCError(f"cannot close {self.describe()}: calls are still running")
                time.sleep(0.0005)
        super().close()

    def _release(self) -> None:
        _open_rings.discard(self)
        # A silent close hands our roles to forked children; if every child has
        # already closed its copy, nobody is left to tell the peers: we do.
        handed_over = bool(self._child_slots) and self._children_still_attached()
        announce = self._close_announces or (bool(self._child_slots) and not handed_over)
        for slot, fd in self._child_slots:
            # Closing for good: children that inherited this handle were bystanders,
            # and their copies must not keep our roles alive. Handing over: they
            # hold the roles now, through their copy of the lock.
            if self._close_announces:
                self._revoke_slot(slot)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._child_slots = []
        self._detach(announce)
        if self._bell is not None:
            # Selectors and other threads watching our descriptor look again (and
            # find the handle closed); then the doorbell goes.
            self._bell.ring()
            self._bell.close()
            self._bell = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        self._memory.close()

    def _children_still_attached(self) -> bool:
        """Whether a slot reserved for a forked child is still attached: the child
        goes on with the roles, or died and that is still to be told."""
        try:
            layout = _LAYOUT.unpack_from(self._memory.buf, 0)
            header_bytes, slot_count, slot_bytes = layout[2], layout[5], layout[6]
            return any(
                slot >= slot_count
                or _SLOT.unpack_from(self._memory.buf, header_bytes + slot * slot_bytes)[0]
                == _SLOT_ATTACHED
                for slot, _ in self._child_slots
            )
        except (struct.error, ValueError, TypeError):
            return True  # a damaged header: say nothing rather than something wrong

    def __reduce__(self) -> tuple[object, tuple[str]]:
        # A handle means nothing in another process: the other process opens the name.
        return (type(self).open, (self.name,))

    def _new_lock_description(self) -> int:
        # An open file description of the object of its own: the lock byte it
        # holds is a liveness token that only its holders have.
        try:
            return os.open(f"/proc/self/fd/{self._memory.fileno()}", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return _native.shm_open(self.name, os.O_RDWR, 0)

    def _take_slot_with_new_lock(self) -> None:
        # Only this handle, not a forked child, holds the new description.
        fd = self._new_lock_description()
        try:
            slot = self._take_slot(fd)
        except OSError as error:
            os.close(fd)
            raise from_os_error(error, KIND, self.name) from None
        if slot < 0:
            os.close(fd)
            raise from_os_error(
                OSError(errno.EUSERS, os.strerror(errno.EUSERS)),
                KIND,
                self.name,
                limit="at most 128 open handles per ring",
            )
        self._lock_fd = fd

    def _reattach(self) -> None:
        """Called by the native core when this handle has no slot (in a forked child)."""
        self._take_slot_with_new_lock()

    def _forget_parent(self) -> None:
        """In a child after fork: the parent's slot and lock are not ours.

        If the parent reserved a slot for us, it becomes ours (with the roles).
        """
        self._forked()
        if self._bell is not None:
            self._bell.close()  # the parent's doorbell: ours is made on first use
            self._bell = None
        for fd in [self._lock_fd, *(fd for _, fd in self._child_slots)]:
            if fd >= 0:  # the parent's, and its reservations for earlier children
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._lock_fd = -1
        self._child_slots = []
        if self._reservation is not None:
            slot, fd = self._reservation
            self._reservation = None
            self._adopt_slot(slot, fd)
            self._lock_fd = fd

    def _reserve_for_next_child(self) -> None:
        """Before fork, for handles that opted in: a slot with our roles for the child.

        Without it, a child takes a slot on first use, and a parent that closes
        its handle at once after the fork (the forking server's idiom) would
        leave the peer with no live producer or consumer for a moment: it would
        see the end of the conversation. With it, the roles pass to the child
        the way an inherited descriptor keeps a pipe open. On any failure the
        child falls back to taking a slot on first use.
        """
        if (
            not self._inherited_by_children
            or self._closed
            or len(self._child_slots) >= _MAX_CHILD_SLOTS
        ):
            return
        try:
            fd = self._new_lock_description()
        except OSError:
            return
        try:
            slot = self._reserve_for_child(fd, self._child_roles)
        except (OSError, IPCError):
            slot = -1
        if slot < 0:
            os.close(fd)
            return
        self._reservation = (slot, fd)

    def _keep_child_reservation(self) -> None:
        """After fork, in the parent: keep the reserved slot's lock until we close.

        While we hold it, the slot cannot be reused, so close() can still end its
        roles if it closes for good (see _release). A reservation for a fork that
        failed is released the same way.
        """
        if self._reservation is not None:
            self._child_slots.append(self._reservation)
            self._reservation = None


def _check_capacity(capacity: object) -> int:
    value = check_int(capacity, "capacity", minimum=MIN_CAPACITY)
    if value > MAX_CAPACITY:
        raise ValueError(f"capacity must be <= {MAX_CAPACITY}, got {value}")
    return (value + 63) // 64 * 64


def _wait_until_initialized(memory: PosixSharedMemory) -> None:
    """A creator writes the magic number last: give one that is still at it a second."""
    deadline = time.monotonic() + 1.0
    while memory.size >= 8 and bytes(memory.buf[:8]) == bytes(8):
        if time.monotonic() > deadline:
            return  # the native check explains what is wrong
        time.sleep(0.001)
