"""What every channel and listener shares: the two base classes, options, sticky ends (private).

The public face is :mod:`unixipc.channel`; each URL scheme lives in its own
private module (``_channel_stream``, ``_channel_fifo``, ``_channel_mq``, ...).
"""

from __future__ import annotations

import errno
import os
import weakref
from collections.abc import Mapping
from typing import Any, TypeVar

from ._names import check_int
from ._resource import Resource
from .errors import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    IPCOSError,
    MessageTooLarge,
    UnsupportedFeature,
)

__all__ = (
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Channel",
    "Listener",
    "check_max_message_size",
    "take_options",
    "too_large",
)

#: The largest message a split-capable channel carries unless told otherwise.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

_C = TypeVar("_C", bound="Channel")

# Every open channel, so that a fork can mark them all unused in both processes.
_LIVE: weakref.WeakSet[Channel] = weakref.WeakSet()


def _forget_use_after_fork() -> None:
    for channel in list(_LIVE):
        channel._set_speaks(False)


os.register_at_fork(after_in_parent=_forget_use_after_fork, after_in_child=_forget_use_after_fork)


class Channel(Resource):
    """A duplex, message-framed, point-to-point connection to one peer.

    Made by :func:`unixipc.connect`, :meth:`Listener.accept` or
    :func:`unixipc.channel_pair`. Messages go in as any bytes-like object and come
    out as ``bytes``, whole and in order. Every blocking call takes a keyword
    ``timeout``: ``None`` blocks, ``0`` tries once (:class:`WouldBlock`), a positive
    number of seconds raises :class:`TimeoutExpired` when it runs out.

    When the peer called ``close()``, the messages it sent before are still
    delivered, then :class:`EndOfChannel` is raised; when the peer went away
    without closing (its process died), :class:`PeerDied`. A channel may be used
    by one sending and one receiving thread at the same time.
    """

    kind = "channel"

    #: The URL the channel was made from (``"pipe:"`` / ``"socketpair:"`` / ``"shm:"``
    #: for pairs).
    url: str
    #: The largest message this end sends or accepts, in bytes.
    max_message_size: int

    # A sticky ending: once the peer is gone (or the stream is unusable), every
    # later call raises a fresh exception of this type and message.
    _ending: tuple[type[IPCError], str] | None = None

    # Whether close() tells the peer (EndOfChannel) or stays silent. An end speaks
    # once it is used in this process (send, receive, ``with``) since it was made
    # by channel_pair or since a fork; connect/accept make ends that speak. This
    # is what lets every process close the ends it does not use.
    _speaks: bool = True

    def _track(self, speaks: bool) -> None:
        """Call from __init__: register for the fork rule and set who speaks."""
        self._speaks = speaks
        _LIVE.add(self)

    def _untrack(self) -> None:
        _LIVE.discard(self)

    def _set_speaks(self, speaks: bool) -> None:
        self._speaks = speaks
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the flags a subclass's fast paths test (after a state change)."""

    # Hooks for unixipc.aio (never on a synchronous hot path).

    #: Seconds between liveness probes while waiting on descriptors (None: the
    #: descriptors themselves report a peer that went away).
    _probe_interval: float | None = None

    def _read_fd(self) -> int | None:
        """A descriptor readable when receive(timeout=0) may succeed; None if none."""
        return None

    def _write_fd(self) -> int | None:
        """A descriptor writable when send(timeout=0) may succeed; None if none."""
        return None

    def _has_tail(self) -> bool:
        """True while part of a message is committed but not yet handed to the kernel."""
        return False

    def _flush_nowait(self) -> None:
        """Hand over as much of the committed tail as fits now."""

    def _probe(self) -> None:
        """Raise EndOfChannel/PeerDied if the peer is known to be gone."""

    def __enter__(self: _C) -> _C:
        # Taking an end in a with block is using it: its close will say goodbye.
        self._check_open()
        self._set_speaks(True)
        return self

    def send(self, data: Any, *, timeout: float | None = None) -> None:
        """Send ``data`` (any bytes-like object) as one message.

        Raises:
            MessageTooLarge: ``data`` is larger than :attr:`max_message_size`
                (nothing is sent).
            WouldBlock: ``timeout=0`` and there is no room now (nothing is sent).
            TimeoutExpired: no room within ``timeout`` seconds (nothing is sent).
            EndOfChannel: the peer closed the channel.
            PeerDied: the peer went away without closing (its process died).
            ClosedResourceError: this channel is closed.
        """
        raise NotImplementedError  # pragma: no cover - every channel overrides it

    def receive(self, *, timeout: float | None = None) -> bytes:
        """Wait for the next message and return it.

        Raises:
            WouldBlock: ``timeout=0`` and no message is there.
            TimeoutExpired: no message arrived within ``timeout`` seconds.
            EndOfChannel: the peer closed the channel and every message it sent
                has been received.
            PeerDied: the peer went away without closing (its process died).
            IPCError: the peer sent something that is not a valid message (the
                channel is unusable from then on).
            ClosedResourceError: this channel is closed.
        """
        raise NotImplementedError  # pragma: no cover

    def receive_into(self, buffer: Any, *, timeout: float | None = None) -> int:
        """Receive the next message into the writable bytes-like ``buffer``; return its size.

        Raises:
            MessageTooLarge: the next message does not fit in ``buffer``; it is
                kept, and a later ``receive`` (or a larger buffer) gets it.
            WouldBlock, TimeoutExpired, EndOfChannel, PeerDied, IPCError,
            ClosedResourceError: as :meth:`receive`.
        """
        raise NotImplementedError  # pragma: no cover

    def fileno(self) -> int:
        """A descriptor that becomes readable when a message may be received.

        A channel reads ahead, so several messages may already be buffered: after
        the descriptor is reported readable, call ``receive(timeout=0)`` until it
        raises :class:`WouldBlock`.

        Raises:
            UnsupportedFeature: this kind of channel has no descriptor (shared
                memory, System V queues).
            ClosedResourceError: this channel is closed.
        """
        self._check_open()
        raise UnsupportedFeature(f"{self.describe()} has no file descriptor")

    def describe(self) -> str:
        """A short description naming the channel, used in messages."""
        return f"channel {self.url!r}"

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.url!r} {state}>"

    # Shared helpers for the implementations.

    def _end(self, error_type: type[IPCError], message: str) -> IPCError:
        """Record that the channel ended (sticky) and return the exception to raise."""
        if self._ending is None:
            self._ending = (error_type, message)
            self._refresh()
        return self._ended()

    def _ended(self) -> IPCError:
        assert self._ending is not None
        error_type, message = self._ending
        return error_type(message)


class Listener(Resource):
    """Accepts connections on a URL: :func:`unixipc.listen` makes one.

    ``close()`` stops listening and removes the names the listener created;
    channels already accepted stay usable.
    """

    kind = "listener"

    #: The URL clients connect to (for ``tcp://host:0``, the port actually bound).
    url: str

    def accept(self, *, timeout: float | None = None) -> Channel:
        """Wait for the next client and return a channel to it.

        Raises:
            WouldBlock: ``timeout=0`` and no client is waiting.
            TimeoutExpired: no client came within ``timeout`` seconds.
            ResourceLimitError: out of descriptors or queues for a new connection.
            ClosedResourceError: this listener is closed.
        """
        raise NotImplementedError  # pragma: no cover

    def describe(self) -> str:
        """A short description naming the listener, used in messages."""
        return f"listener {self.url!r}"

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.url!r} {state}>"


def take_options(
    scheme: str, call: str, options: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """The scheme's options with defaults filled in; TypeError for any it does not know."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        accepted = ", ".join(sorted(defaults)) or "none"
        raise TypeError(
            f"{call}() got unexpected option(s) {', '.join(unknown)} for {scheme!r} "
            f"(accepted: {accepted})"
        )
    return {**defaults, **options}


def check_max_message_size(value: object, limit: int) -> int:
    """A max_message_size option: an int between 1 and ``limit``."""
    size = check_int(value, "max_message_size", minimum=1)
    if size > limit:
        raise ValueError(f"max_message_size must be <= {limit}, got {size}")
    return size


def too_large(channel: Channel, size: int) -> MessageTooLarge:
    return MessageTooLarge(
        f"{channel.describe()}: a {size}-byte message is larger than the "
        f"maximum of {channel.max_message_size} bytes"
    )


def closed_error(channel: Resource) -> ClosedResourceError:
    return ClosedResourceError(f"{channel.describe()} is closed")


def goodbye_error(channel: Channel) -> IPCError:
    return channel._end(EndOfChannel, f"{channel.describe()}: the peer closed the channel")


def refused(url: str, why: str) -> IPCOSError:
    """The error of a connect that nobody accepts (errno ECONNREFUSED)."""
    return IPCOSError(errno.ECONNREFUSED, f"cannot connect to {url!r}: {why}", url)
