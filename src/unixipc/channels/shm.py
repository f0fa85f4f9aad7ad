"""``shm://name`` and ``channel_pair("shm")``: a shared-memory ring per direction (driver).

A channel end holds two :class:`unixipc.Ring` handles: it is the only producer of
the ring it sends on and the only consumer of the ring it receives from, and
declares both roles as soon as it is in use, so that a peer that dies before its
first message still ends the other side's wait. The ring itself tells the rest:
a receiver facing an empty ring whose producer closed gets ``EndOfChannel``,
whose producer died ``PeerDied`` (its lock byte, released by the kernel, is
noticed within about 0.2 s); a sender facing a full ring whose consumer is gone
likewise; and ``close()`` from another thread wakes the ring's waiters. Ring
records are the pieces of :mod:`.pieces` (the largest is half the ``capacity``
less 16 bytes), and ``receive_into`` reads them straight into the caller's buffer.

Connecting to ``shm://name`` (:mod:`.rendezvous`): the listener creates the
well-known ring ``/name`` (small: it carries only requests) and is its consumer
and, so that it never looks abandoned, also a producer. A client creates its two
rings ``/name.<token>.up`` and ``.down``, takes its roles, asks through ``/name``
and waits on ``.down`` for the greeting; ``accept`` opens both rings, takes the
other roles, removes both names and sends the greeting. A client waiting to be
accepted gives up when ``/name`` has no live consumer (the listener closed or died).

A pair makes its two rings under random names, keeps a descriptor on each and
removes the names at once: nothing can be left behind, and an end passed to a
``multiprocessing`` child travels as those descriptors.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import reduction
from typing import Any

from .. import _native
from .._deadline import Deadline
from .._names import check_int
from ..errors import EndOfChannel, IPCError, PeerDied, ResourceExistsError, from_os_error
from ..posix_shm import PosixSharedMemory
from ..ring import _CONSUMER as RING_CONSUMER
from ..ring import _PRODUCER as RING_PRODUCER
from ..ring import KIND as RING_KIND
from ..ring import MAX_CAPACITY, MIN_CAPACITY, Ring
from ..ring import _inspect as inspect_ring
from ..ring import _lock_abandoned as lock_abandoned
from ..ring import unlink as unlink_ring
from .core import (
    MAX_SPLIT,
    PERMISSIONS,
    Attempt,
    Channel,
    LinkBase,
    Option,
    PeerState,
    WaitSpec,
    close_all,
    max_size_option,
    passable_by_multiprocessing,
    refused,
)
from .liveness import PATIENCE, check_mine, in_use, names_it, not_ours
from .pieces import PieceChannel
from .rendezvous import ClientBase, InboxBase, listener_of, new_token, rendezvous
from .url import posix_name_address

MAGIC = b"uxr\x02"
#: The capacity of each ring of a connection unless told otherwise (max message 512 KiB - 16).
DEFAULT_CAPACITY = 1024 * 1024
_REQUEST_RING_CAPACITY = 4096
_HELLO = b"unixipc shm channel\x02"
#: How often an event loop waiting on the doorbells tries again (dead peers are found so).
_SLICE = 0.2


def _names(base: str) -> tuple[str, str]:
    """The two rings of a connection: ``.up`` (client to server) and ``.down``."""
    return base + ".up", base + ".down"


def _unlink_all(names: Sequence[str]) -> None:
    for name in names:
        with contextlib.suppress(IPCError, OSError):
            unlink_ring(name)


def _descriptor(name: str) -> int:
    """A descriptor of our own on the ring's object, for handing the end to a child."""
    return _native.shm_open(name, os.O_RDWR, 0)


class ShmLink(LinkBase):
    """Two rings (receive, send) and a descriptor on each, for passing the end on."""

    probe_interval = None  # the rings watch the peer themselves
    direct = True

    def __init__(self, receive_ring: Ring, send_ring: Ring, descriptors: tuple[int, int]) -> None:
        super().__init__()
        self._rx = receive_ring
        self._tx = send_ring
        # A forked child inherits our roles on both rings at once, so a parent that
        # closes its copy right after fork (the forking server) does not end the
        # conversation that the child goes on with.
        receive_ring._inherited_by_children = True
        send_ring._inherited_by_children = True
        # ...and so does a child forked before this end is used (a channel_pair
        # end handed down by fork): if it dies before it uses the end, its roles
        # die with it and the peer gets PeerDied, as with a pipe.
        receive_ring._child_roles = RING_CONSUMER
        send_ring._child_roles = RING_PRODUCER
        self._descriptors = descriptors  # (receive ring, send ring)
        self.piece_size = send_ring.max_message_size
        self.rx_piece_size = receive_ring.max_message_size
        # The ring's own C methods: no Python frame between the channel and the ring.
        self.put: Callable[..., None] = send_ring.send
        self.take: Callable[..., bytes] = receive_ring.receive
        self.take_into: Callable[..., int] = receive_ring.receive_into

    def interrupt(self) -> None:
        pass  # no call needs marking: a ring's close() wakes its waiters and waits for them

    def speak(self) -> None:
        # Take our roles now: the peer learns of our death even before our first message.
        self._tx.declare(producer=True)
        self._rx.declare(consumer=True)

    def peer_state(self) -> PeerState:
        return PeerState.ALIVE  # the rings watch the peer themselves (probe_interval None)

    def say_goodbye(self) -> None:
        pass  # closing the rings announces it

    def wait_spec(self) -> WaitSpec:
        # The rings' doorbells: the receiving ring's rings for a message (or the
        # peer's close), the sending ring's for room; a dead peer is found by the
        # try that an event loop makes every slice.
        return WaitSpec(self._rx._doorbell(False), self._tx._doorbell(True), _SLICE, doorbells=True)

    def passable(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        receive_fd, send_fd = self._descriptors
        return _rebuild, (
            (self._rx.name, reduction.DupFd(receive_fd)),
            (self._tx.name, reduction.DupFd(send_fd)),
        )

    def close(self, announce: bool) -> None:
        try:
            # An end that speaks ends our roles (the peer gets EndOfChannel, even if
            # forked children hold copies); a silent one hands them to the process
            # that goes on with the conversation (a forked or spawned child).
            for ring in (self._tx, self._rx):
                ring._close_announces = announce
                ring.close()
        finally:
            for fd in self._descriptors:
                os.close(fd)


class ShmChannel(PieceChannel):
    """A ``shm://`` channel end: a piece channel whose ``fileno()`` is a doorbell, with ``ready()``.

    ``ready()`` is the readiness protocol (:mod:`unixipc.waitset`): True when
    ``receive(timeout=0)`` would not block (a message, or the end of the
    conversation: a closed or dead peer, noticed within 50 ms of looking);
    otherwise the receiving ring's doorbell is armed. ``unixipc.wait`` asks it
    every 0.2 s, which is how a peer killed without closing is found.
    """

    _link: ShmLink

    def ready(self) -> bool:
        """True when ``receive(timeout=0)`` would not block (see the class)."""
        if self._closed or self._ending is not None or self._kept is not None:
            return True  # the call returns or raises at once
        return self._link._rx.ready()


passable_by_multiprocessing(ShmChannel)


def _rebuild(receive: tuple[str, Any], send: tuple[str, Any]) -> ShmLink:
    rings = []
    descriptors = []
    for name, dup in (receive, send):
        fd = dup.detach()
        descriptors.append(fd)
        rings.append(Ring._make(PosixSharedMemory._adopt(name, os.dup(fd), False)))
    return ShmLink(rings[0], rings[1], (descriptors[0], descriptors[1]))


def pair(options: dict[str, Any]) -> tuple[PieceChannel, PieceChannel]:
    """Two channel ends over two rings whose names are already gone."""
    base = f"/unixipc-pair-{secrets.token_hex(16)}"
    names = (base + ".a", base + ".b")  # a: first end to second, b: back
    opened: list[Any] = []
    descriptors: list[int] = []
    try:
        for name in names:
            opened.append(Ring.create(name, options["capacity"]))
            opened.append(Ring.open(name))
            descriptors += [_descriptor(name), _descriptor(name)]
    except BaseException:
        close_all(opened + descriptors)
        raise
    finally:
        _unlink_all(names)
    a_send, b_receive, b_send, a_receive = opened
    size = options["max_message_size"]
    first = ShmLink(a_receive, a_send, (descriptors[2], descriptors[0]))
    second = ShmLink(b_receive, b_send, (descriptors[1], descriptors[3]))
    return (
        ShmChannel("shm:", first, max_message_size=size, in_use=False),
        ShmChannel("shm:", second, max_message_size=size, in_use=False),
    )


def _request_ring(name: str, permissions: int) -> Ring:
    """Create the listener's request ring; one a listener that died left is replaced.

    Its owner is whoever holds its lock bytes (the ring's liveness): a ring
    whose every handle is dead is locked whole, checked to still be the one
    named, and removed, the same way ``unixipc rm --stale`` removes it.
    """
    path = "/dev/shm/" + name[1:]
    while True:
        try:
            ring = Ring.create(name, _REQUEST_RING_CAPACITY, permissions=permissions)
        except ResourceExistsError:
            _remove_abandoned_inbox(name)
            continue
        # Another process that took it for a dead one's (before our handle held
        # its lock) may have removed it meanwhile: then the name is not ours.
        if names_it(path, ring._memory.fileno()):
            return ring
        ring.close()


def _remove_abandoned_inbox(name: str) -> None:
    """Remove the request ring ``name`` if its listener died; raise if it lives or
    the object is not a listener's ring."""
    path = "/dev/shm/" + name[1:]
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # gone meanwhile: create it
    except OSError as error:
        raise from_os_error(error, RING_KIND, name) from None
    try:
        details = inspect_ring(fd)
        if details is None or details.get("capacity") != _REQUEST_RING_CAPACITY:
            raise not_ours(RING_KIND, name, "is not a shm:// listener's ring")
        check_mine(fd, RING_KIND, name)
        give_up = time.monotonic() + PATIENCE
        while not lock_abandoned(fd):  # a live handle, or a cleaner for a moment
            if time.monotonic() > give_up:
                pids = (inspect_ring(fd) or {}).get("handle_pids")
                raise in_use(RING_KIND, name, pids if isinstance(pids, list) else [])
            time.sleep(0.01)
        if names_it(path, fd):
            with contextlib.suppress(IPCError):
                unlink_ring(name)
    finally:
        os.close(fd)


class ShmInbox(InboxBase):
    """The listener's small well-known request ring."""

    def __init__(self, url: str, name: str, options: dict[str, Any]) -> None:
        super().__init__(url, name, options)
        self._requests = _request_ring(name, options["permissions"])
        # A producer too, so that the ring never looks abandoned when clients come and go.
        self._requests.declare(producer=True, consumer=True)

    def next_request(self, timeout: float | None) -> bytes:
        return self._requests.receive(timeout=timeout)

    def open_client(self, token: str) -> Channel | None:
        names = _names(self.stem(token))
        with Attempt(lambda: _unlink_all(names), quiet=True) as attempt:
            up, down = (attempt.keep(Ring.open(name)) for name in names)
            up_fd, down_fd = (attempt.keep(_descriptor(name)) for name in names)
            if up.info().producers == 0:
                raise IPCError("the client is gone")
            down.send(_HELLO, timeout=0)
            link = ShmLink(up, down, (up_fd, down_fd))
            return ShmChannel(self.url, link, max_message_size=self.max_message_size)
        return None

    def forget(self, token: str) -> None:
        names = _names(self.stem(token))
        try:
            up = Ring.open(names[0])
        except IPCError:
            return
        try:
            if up.info().producers == 0:
                _unlink_all(names)
        finally:
            up.close()

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self._requests._doorbell(False), None, _SLICE, doorbells=True)

    def interrupt(self) -> None:
        self._requests._begin_close()  # waiters in receive() give up at once

    def close(self, remove: bool) -> None:
        if remove:
            _unlink_all((self.prefix,))
        self._requests.close()


@dataclass
class _ShmClient(ClientBase):
    requests: Ring
    down: Ring

    def listener_alive(self) -> bool:
        return self.requests.info().consumers > 0

    def ask(self, request: bytes, timeout: float) -> None:
        try:
            self.requests.send(request, timeout=timeout)
        except (EndOfChannel, PeerDied):
            raise refused(self.url, "the listener went away") from None

    def await_greeting(self, timeout: float) -> None:
        try:
            greeting = self.down.receive(timeout=timeout)
        except (EndOfChannel, PeerDied):
            raise refused(self.url, "the listener went away") from None
        self.check_greeting(greeting == _HELLO)


def connect(url: str, name: str, deadline: Deadline, options: dict[str, Any]) -> Channel:
    """Ask the listener ``name`` for a connection and wait until it accepts."""
    token = new_token()
    names = _names(f"{name}.{token}")
    with Attempt(lambda: _unlink_all(names)) as attempt:  # the listener removed them already
        requests = attempt.borrow(Ring.open(name))
        if requests.info().consumers == 0:
            raise refused(url, "no listener is taking requests")
        permissions = options["permissions"]
        up, down = (
            attempt.keep(Ring.create(ring, options["capacity"], permissions=permissions))
            for ring in names
        )
        up.declare(producer=True)
        down.declare(consumer=True)
        descriptors = (attempt.keep(_descriptor(names[1])), attempt.keep(_descriptor(names[0])))
        rendezvous(url, _ShmClient(url, requests, down), MAGIC, token, deadline)
    link = ShmLink(down, up, descriptors)
    return ShmChannel(url, link, max_message_size=options["max_message_size"])


def _check_capacity(value: object) -> int:
    """A ring's capacity in bytes (its largest message is half of it less 16)."""
    capacity = check_int(value, "capacity", minimum=MIN_CAPACITY)
    if capacity > MAX_CAPACITY:
        raise ValueError(f"capacity must be <= {MAX_CAPACITY}, got {capacity}")
    return capacity


listen = listener_of(MAGIC, ShmInbox)
parse = posix_name_address
CAPACITY = Option(DEFAULT_CAPACITY, _check_capacity)
MAX_SIZE = max_size_option(MAX_SPLIT)
LISTEN_OPTIONS: dict[str, Option] = {"max_message_size": MAX_SIZE, "permissions": PERMISSIONS}
CONNECT_OPTIONS: dict[str, Option] = {
    "max_message_size": MAX_SIZE,
    "capacity": CAPACITY,
    "permissions": PERMISSIONS,
}
PAIR_OPTIONS: dict[str, Option] = {"max_message_size": MAX_SIZE, "capacity": CAPACITY}
