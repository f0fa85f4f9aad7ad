"""Connecting through a well-known object: the classic server rendezvous (private).

FIFOs, POSIX queues, a System V queue and shared-memory rings have no connect(2).
A listener owns a well-known *inbox* (a FIFO, a request queue, message type 1 of
a queue, a small ring); a client

1. makes its private objects, named after a fresh random token (128 bits);
2. puts a request, ``magic + token``, into the inbox, waiting while the inbox is
   full and the listener alive;
3. waits for the listener's greeting on its own objects, while the listener is alive.

The listener takes a request, opens the objects the token names (checking that
they are what they should be), removes their names (from then on they live as
long as the two ends hold them) and greets the client. A request that is bogus or
whose client is gone is dropped; the listener never blocks on a client. When the
listener closes, it goes through the requests still queued and lets the driver
clean up after clients that died (live ones clean up after themselves when they
see the listener gone).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .._deadline import Deadline
from ..errors import IPCError
from .core import Channel, Listener, PeerState, WaitSpec, Waker, refused
from .liveness import ListenerToken, Token, client_is_dead, remove_tokens, replace_leftover

_T = TypeVar("_T")

_TOKEN = re.compile(rb"[0-9a-f]{32}")
#: A request: a 4-byte magic naming the scheme, then the client's token in hex.
REQUEST_SIZE = 4 + 32
# How often a waiting client checks that the listener is still there (seconds).
SLICE = 0.2


def new_token() -> str:
    """A fresh token: 128 random bits in hex, the stem of a client's private names."""
    return secrets.token_hex(16)


def make_request(magic: bytes, token: str) -> bytes:
    return magic + token.encode()


def token_of(magic: bytes, record: bytes) -> str | None:
    """The token of a well-formed request, else None."""
    if len(record) != REQUEST_SIZE or record[:4] != magic or not _TOKEN.fullmatch(record[4:]):
        return None
    return record[4:].decode()


def slice_of(deadline: Deadline) -> float:
    left = deadline.remaining()
    return SLICE if left is None else min(SLICE, left)


class Client(Protocol):
    """A driver's connecting side, between making its objects and being greeted."""

    def listener_alive(self) -> bool:
        """False once the listener is known to be gone (closed or died)."""
        ...

    def ask(self, request: bytes, timeout: float) -> None:
        """Put ``request`` into the inbox; WouldBlock/TimeoutExpired while it is full."""
        ...

    def await_greeting(self, timeout: float) -> None:
        """Wait for the greeting; WouldBlock/TimeoutExpired if it did not come, IPCError
        if something else did."""
        ...


def rendezvous(url: str, client: Client, magic: bytes, token: str, deadline: Deadline) -> None:
    """Ask the listener for a connection and wait until it accepts (see the module docstring)."""
    request = make_request(magic, token)
    in_slices(url, client, deadline, lambda wait: client.ask(request, wait), "its inbox is full")
    in_slices(url, client, deadline, client.await_greeting, "the listener did not accept")


def in_slices(
    url: str, client: Client, deadline: Deadline, call: Callable[[float], _T], why: str
) -> _T:
    """``call(wait)`` in slices while the listener lives, until the deadline."""
    while True:
        try:
            return call(slice_of(deadline))
        except (BlockingIOError, TimeoutError):
            pass
        if not client.listener_alive():
            raise refused(url, "the listener closed before accepting")
        if deadline.timeout == 0 or deadline.expired():
            raise deadline.error(f"connecting to {url} ({why})")


class InboxBase:
    """What every inbox keeps: the URL, the stem of the names clients make, the limit."""

    def __init__(self, url: str, prefix: str, options: dict[str, Any]) -> None:
        self.url = url
        self.prefix = prefix
        self.max_message_size: int = options.get("max_message_size", 0)

    def stem(self, token: str) -> str:
        """The stem of the names the client ``token`` made."""
        return f"{self.prefix}.{token}"


class TokenInbox(InboxBase):
    """An inbox whose listener holds a liveness token (the queue schemes)."""

    def __init__(self, url: str, prefix: str, options: dict[str, Any], token: str) -> None:
        super().__init__(url, prefix, options)
        # Held while we listen: a client waiting for a listener that died gives
        # up, and whoever holds it owns the listener's names (it is claimed
        # before they are made, and they are removed before it goes).
        self._token = ListenerToken.claim(token, options["permissions"])
        self._waker = Waker()

    def made(
        self, create: Callable[[], _T], remove: Callable[[], object], what: str, name: str
    ) -> _T:
        """The inbox's object, created once the token is ours: a dead listener's
        leftover is replaced. If that fails, the token goes too."""
        try:
            return replace_leftover(create, remove, self._token.taken_over, what, name)
        except BaseException:
            self._waker.close()
            self._token.close(True)
            raise

    def remove_client(self, stem: str) -> None:
        """Remove the names a client that died left (its tokens, at least)."""
        remove_tokens(stem)

    def forget(self, token: str) -> None:
        stem = self.stem(token)
        if client_is_dead(stem):
            self.remove_client(stem)

    def interrupt(self) -> None:
        self._waker.wake()

    def release(self, remove: bool) -> None:
        """Release the inbox's own objects (``remove``: their names too)."""

    def close(self, remove: bool) -> None:
        try:
            self.release(remove)  # the names first, while the token says they are ours
        finally:
            self._waker.close()
            self._token.close(remove)


class Inbox(Protocol):
    """A driver's listening side: the well-known object requests arrive in."""

    def next_request(self, timeout: float | None) -> bytes:
        """The next request as received; WouldBlock/TimeoutExpired if none came in time."""
        ...

    def open_client(self, token: str) -> Channel | None:
        """Open and greet the client ``token``; None if it is gone or bogus."""
        ...

    def forget(self, token: str) -> None:
        """At close: clean up after the client ``token`` if it died (or refuse it)."""
        ...

    def wait_spec(self) -> WaitSpec: ...
    def interrupt(self) -> None: ...

    def close(self, remove: bool) -> None:
        """Release the inbox; with ``remove``, remove the listener's names too."""
        ...


def listener_of(
    magic: bytes, inbox: Callable[[str, Any, dict[str, Any]], Inbox]
) -> Callable[[str, Any, dict[str, Any]], Listener]:
    """The listen() of a rendezvous scheme: a Listener on a new ``inbox``."""

    def listen(url: str, address: Any, options: dict[str, Any]) -> Listener:
        return Listener(url, RendezvousAcceptor(magic, inbox(url, address, options)))

    return listen


@dataclass
class ClientBase:
    """What every client keeps: the URL, for its messages."""

    url: str

    def check_greeting(self, right: bool) -> None:
        if not right:
            raise IPCError(f"{self.url!r}: the listener sent a wrong greeting")


@dataclass
class TokenClient(ClientBase):
    """A client whose listener holds a liveness token (the queue schemes)."""

    listener: Token

    def listener_alive(self) -> bool:
        return self.listener.probe() is PeerState.ALIVE


class RendezvousAcceptor:
    """The Acceptor of the rendezvous schemes: requests in, greeted channels out."""

    def __init__(self, magic: bytes, inbox: Inbox) -> None:
        self._magic = magic
        self._inbox = inbox
        self._creator = os.getpid()  # a forked child's close leaves the names alone

    def take(self, timeout: float | None) -> Channel | None:
        token = token_of(self._magic, self._inbox.next_request(timeout))
        return None if token is None else self._inbox.open_client(token)

    def wait_spec(self) -> WaitSpec:
        return self._inbox.wait_spec()

    def interrupt(self) -> None:
        self._inbox.interrupt()

    def close(self) -> None:
        owner = os.getpid() == self._creator
        try:
            while owner:
                try:
                    record = self._inbox.next_request(0)
                except (IPCError, OSError):
                    break
                token = token_of(self._magic, record)
                if token is not None:
                    self._inbox.forget(token)
        finally:
            self._inbox.close(owner)
