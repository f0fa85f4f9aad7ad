"""``tls://host:port``: frames over TCP inside TLS, for traffic that leaves the host (driver).

The standard library's :mod:`ssl` does the cryptography, over memory buffers
(``SSLObject`` and two ``MemoryBIO``): the link moves ciphertext between them
and a non-blocking TCP socket itself, so the frames engine keeps every rule it
has on plain sockets (non-blocking writes, ``poll`` between them, a frame
committed once part of it went out, ``close()`` waking every waiter). A write
encrypts at most :data:`_WRITE_CHUNK` bytes into the buffer and reports them
written; ciphertext the socket could not take yet stays in the link, which
hands it over before anything else is written and while any call of the
channel waits (:class:`_FlushingWaker`), so a peer waiting for the end of a
message always gets it.

A listener needs its certificate (``certificate``, ``private_key``) and, to
require and verify client certificates, ``ca_file``. A client verifies the
listener's certificate against ``ca_file`` (default: the system's CAs) and its
name against ``server_hostname`` (default: the URL's host); it may present
``certificate``/``private_key`` of its own. ``ssl_context`` replaces all of
these with a context made by the caller. The TLS handshake has
``handshake_timeout`` seconds; a client that fails it (or stalls) is dropped,
and ``connect`` raises :class:`AuthenticationError` when the listener's
certificate does not verify or ours is refused. The listener sends its
greeting only once it has verified the client, and ``connect`` waits for it,
so a refused certificate fails ``connect`` itself, not a later call.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from .._deadline import Deadline
from .._names import check_path
from ..errors import AuthenticationError, IPCError, from_os_error
from . import socket as sockets
from .core import (
    DEFAULT_NETWORK_MAX_MESSAGE_SIZE,
    Channel,
    LinkBase,
    Listener,
    Option,
    WaitSpec,
    Waker,
    max_size_option,
)
from .frames import HELLO_FRAME, MAX_FRAME, FramedChannel

if TYPE_CHECKING:
    from typing_extensions import Buffer

# Plaintext encrypted per write: bounds the ciphertext a link holds back.
_WRITE_CHUNK = 256 * 1024
_RECEIVE_SIZE = 64 * 1024
_SEND_NOWAIT = socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT


class TlsLink(LinkBase):
    """A TLS session over a connected, non-blocking TCP socket (a ByteLink)."""

    can_block = False

    def __init__(
        self,
        sock: socket.socket,
        session: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        super().__init__()
        self._sock = sock
        self._session = session
        self._incoming = incoming
        self._outgoing = outgoing
        self._out = bytearray()  # ciphertext the socket has not taken yet
        self._failed: str | None = None
        self.read_fd = self.write_fd = sock.fileno()
        self.waker = _FlushingWaker(self)

    @property
    def pending(self) -> bool:
        """Whether ciphertext is waiting for room in the socket."""
        return bool(self._out) or self._outgoing.pending > 0

    def flush(self) -> bool:
        """Hand the socket the ciphertext that fits now; True when none is left.

        Raises BrokenPipeError/ConnectionResetError when the peer is gone (the
        ciphertext is dropped then).
        """
        if self._outgoing.pending:
            self._out += self._outgoing.read()
        while self._out:
            try:
                sent = self._sock.send(self._out, _SEND_NOWAIT)
            except BlockingIOError:
                return False
            except OSError:
                self._out.clear()
                raise
            del self._out[:sent]
        return True

    def read(self, view: memoryview) -> int:
        while True:
            if self._failed is not None:
                raise IPCError(self._failed)
            try:
                # With a buffer, read() returns a count (typeshed says bytes).
                return cast(int, self._session.read(len(view), view))
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return 0  # the frames engine tells a close (goodbye) from a death
            except ssl.SSLError as error:
                self._failed = f"TLS: {error.reason or error}"
                raise IPCError(self._failed) from None
            with contextlib.suppress(OSError):
                self.flush()  # TLS may have something to say while we read
            data = self._sock.recv(_RECEIVE_SIZE, socket.MSG_DONTWAIT)  # BlockingIOError: wait
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()

    def read_wait(self, view: memoryview) -> int:
        raise NotImplementedError  # pragma: no cover - can_block is False

    def write(self, data: Buffer) -> int:
        if not self.flush():
            raise BlockingIOError  # what went before must go first
        written = self._session.write(memoryview(data)[:_WRITE_CHUNK])
        with contextlib.suppress(BlockingIOError):
            self.flush()
        return written

    def writev(self, buffers: Sequence[Buffer]) -> int:
        chunk = bytearray()
        for buffer in buffers:
            room = _WRITE_CHUNK - len(chunk)
            if room <= 0:
                break
            chunk += memoryview(buffer).cast("B")[:room]
        return self.write(chunk)

    def wake_reader(self) -> None:
        pass  # reads never sleep in the kernel: the waker ends every wait

    def grow_write_buffer(self) -> bool:
        try:
            size = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)  # doubles it
        except OSError:
            return False
        return self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) > size

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self.read_fd, self.write_fd)

    def close(self, announce: bool) -> None:
        try:
            with contextlib.suppress(OSError):
                self.flush()  # the goodbye, if it fits
        finally:
            self._sock.close()
            self.waker.close()


class _FlushingWaker(Waker):
    """A Waker that, while it waits, hands the socket the ciphertext its link holds."""

    __slots__ = ("_link",)

    def __init__(self, link: TlsLink) -> None:
        super().__init__()
        self._link = link

    def wait(self, watch: tuple[tuple[int, int], ...], timeout: float | None) -> dict[int, int]:
        deadline = Deadline(timeout)
        fd = self._link.write_fd
        while self._link.pending:
            try:
                if self._link.flush():
                    break
            except OSError:
                break  # the peer is gone: the next read or write says so
            ready = super().wait((*watch, (fd, select.POLLOUT)), deadline.remaining())
            if not ready:
                return ready
            errors = select.POLLHUP | select.POLLERR
            if any(ready.get(wanted, 0) & (events | errors) for wanted, events in watch):
                return ready
        return super().wait(watch, deadline.remaining())


class TlsChannel(FramedChannel):
    """Frames over TLS: ciphertext the link holds back counts as a pending tail."""

    def __init__(self, url: str, link: TlsLink, *, max_message_size: int, server: bool) -> None:
        self._tls = link
        super().__init__(url, link, max_message_size=max_message_size, expect_hello=server)
        self._authenticated = bool(link._session.getpeercert())  # verified by TLS

    def _has_tail(self) -> bool:
        return super()._has_tail() or self._tls.pending

    def _flush_nowait(self) -> None:
        super()._flush_nowait()
        with contextlib.suppress(OSError):
            self._tls.flush()


def _handshake(
    url: str,
    sock: socket.socket,
    context: ssl.SSLContext,
    *,
    server_hostname: str | None,
    deadline: Deadline,
) -> TlsLink:
    """Run the TLS handshake on a connected socket, then exchange the greeting.

    The listener greets once it has verified the client; the client waits for
    that greeting, so that a listener refusing its certificate fails here.

    Raises:
        AuthenticationError: a certificate did not verify, or TLS failed.
        TimeoutExpired: the handshake did not finish in time.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_hostname is None
    session = context.wrap_bio(
        incoming, outgoing, server_side=server, server_hostname=server_hostname
    )
    link = TlsLink(sock, session, incoming, outgoing)
    who = "client" if server else "listener"
    try:
        _until_done(link, session.do_handshake, deadline, url)
        _write_all(link, HELLO_FRAME, deadline, url)
        # The client's greeting is checked by the frames engine; the listener's
        # is awaited here, after which the listener has accepted our certificate.
        if not server and _read_exactly(link, len(HELLO_FRAME), deadline, url) != HELLO_FRAME:
            raise AuthenticationError(f"{url}: the listener is not a unixipc channel")
    except ssl.SSLCertVerificationError as error:
        raise AuthenticationError(
            f"{url}: the {who}'s certificate did not verify: {error.verify_message}"
        ) from None
    except ssl.SSLError as error:
        raise AuthenticationError(f"{url}: TLS failed: {error.reason or error}") from None
    except (AuthenticationError, BlockingIOError, TimeoutError):
        raise
    except (IPCError, OSError) as error:  # its alert on what it refused, or a reset
        raise AuthenticationError(f"{url}: the {who} refused the connection: {error}") from None
    return link


def _until_done(link: TlsLink, step: Any, deadline: Deadline, url: str) -> None:
    """Call ``step`` (a handshake) until it stops asking for the peer's bytes."""
    while True:
        try:
            step()
            break
        except ssl.SSLWantReadError:
            pass
        _flush_within(link, deadline, url)
        _receive_some(link, deadline, url)
    _flush_within(link, deadline, url)


def _flush_within(link: TlsLink, deadline: Deadline, url: str) -> None:
    while not link.flush():
        if not link.waker.wait(((link.write_fd, select.POLLOUT),), deadline.remaining()):
            raise deadline.error(f"TLS handshake with {url}")


def _receive_some(link: TlsLink, deadline: Deadline, url: str) -> None:
    while True:
        try:
            data = link._sock.recv(_RECEIVE_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if not link.waker.wait(((link.read_fd, select.POLLIN),), deadline.remaining()):
                raise deadline.error(f"TLS handshake with {url}") from None
            continue
        except OSError as error:
            raise AuthenticationError(
                f"{url}: the peer left during the TLS handshake ({error})"
            ) from None
        if not data:
            raise AuthenticationError(
                f"{url}: the peer closed the connection during the TLS handshake"
            )
        link._incoming.write(data)
        return


def _write_all(link: TlsLink, data: bytes, deadline: Deadline, url: str) -> None:
    view = memoryview(data)
    while view:
        with contextlib.suppress(BlockingIOError):
            view = view[link.write(view) :]
        _flush_within(link, deadline, url)


def _read_exactly(link: TlsLink, size: int, deadline: Deadline, url: str) -> bytes:
    got = bytearray(size)
    view = memoryview(got)
    done = 0
    while done < size:
        try:
            count = link.read(view[done:])
        except BlockingIOError:
            if not link.waker.wait(((link.read_fd, select.POLLIN),), deadline.remaining()):
                raise deadline.error(f"waiting for the greeting of {url}") from None
            continue
        if count == 0:
            raise AuthenticationError(
                f"{url}: the listener closed the connection after TLS (refused us?)"
            )
        done += count
    return bytes(got)


class TlsAcceptor(sockets.SocketAcceptor):
    """Accepts TCP connections and runs the server side of TLS on each."""

    def __init__(
        self, url: str, sock: socket.socket, options: dict[str, Any], context: ssl.SSLContext
    ) -> None:
        super().__init__(url, sock, options["max_message_size"])
        self._context = context
        self._handshake_timeout = options["handshake_timeout"]

    def channel_for(self, sock: socket.socket) -> Channel | None:
        try:
            link = _handshake(
                self.url,
                sock,
                self._context,
                server_hostname=None,
                deadline=Deadline(self._handshake_timeout),
            )
        except (IPCError, OSError):
            sock.close()
            return None  # that client failed; the listener goes on
        return TlsChannel(self.url, link, max_message_size=self._max, server=True)


def listen(url: str, address: tuple[str, int], options: dict[str, Any]) -> Listener:
    context = server_context(url, options)
    sock, url = sockets.bind_tcp(url, address, options["backlog"])
    return Listener(url, TlsAcceptor(url, sock, options, context))


def connect(
    url: str, address: tuple[str, int], deadline: Deadline, options: dict[str, Any]
) -> Channel:
    context = client_context(url, options)
    hostname = options["server_hostname"] or address[0] or "localhost"
    sock = sockets.connect_tcp_socket(url, address, deadline)
    try:
        link = _handshake(url, sock, context, server_hostname=hostname, deadline=deadline)
    except BaseException:
        sock.close()
        raise
    return TlsChannel(url, link, max_message_size=options["max_message_size"], server=False)


# Contexts.


def _given_context(
    url: str, options: dict[str, Any], files: Sequence[str]
) -> ssl.SSLContext | None:
    context: ssl.SSLContext | None = options["ssl_context"]
    if context is not None:
        clashing = [name for name in files if options.get(name) is not None]
        if clashing:
            raise ValueError(
                f"{url}: ssl_context replaces {', '.join(clashing)}: give one or the other"
            )
    return context


def _load(url: str, what: str, path: str, load: Any) -> None:
    try:
        load()
    except ssl.SSLError as error:
        raise ValueError(f"{url}: cannot use {what} {path!r}: {error.reason or error}") from None
    except OSError as error:
        raise from_os_error(error, what, path) from None


def server_context(url: str, options: dict[str, Any]) -> ssl.SSLContext:
    """The listener's context: its certificate; client certificates required with ca_file."""
    given = _given_context(url, options, ("certificate", "private_key", "ca_file"))
    if given is not None:
        return given
    certificate, key, ca_file = options["certificate"], options["private_key"], options["ca_file"]
    if certificate is None:
        raise ValueError(
            f"{url}: a tls:// listener needs certificate= (a PEM file with its certificate "
            "chain, and its key unless private_key= names another file) or ssl_context="
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load(url, "certificate", certificate, lambda: context.load_cert_chain(certificate, key))
    if ca_file is not None:
        _load(url, "CA file", ca_file, lambda: context.load_verify_locations(cafile=ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(url: str, options: dict[str, Any]) -> ssl.SSLContext:
    """The client's context: verifies the listener (ca_file or the system's CAs) and its name."""
    given = _given_context(url, options, ("certificate", "private_key", "ca_file"))
    if given is not None:
        return given
    ca_file = options["ca_file"]
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        _load(url, "CA file", ca_file, lambda: context.load_verify_locations(cafile=ca_file))
    certificate, key = options["certificate"], options["private_key"]
    if certificate is not None:
        _load(url, "certificate", certificate, lambda: context.load_cert_chain(certificate, key))
    elif key is not None:
        raise ValueError(f"{url}: private_key= needs certificate=")
    return context


# Options.


def _path_option(name: str) -> Option:
    return Option(None, lambda value: None if value is None else check_path(value, name))


def _check_context(value: object) -> ssl.SSLContext | None:
    if value is not None and not isinstance(value, ssl.SSLContext):
        raise TypeError(f"ssl_context must be an ssl.SSLContext, not {type(value).__name__}")
    return value


def _check_hostname(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError("server_hostname must be a non-empty str")
    return value


parse = sockets.parse_tcp
_FILES: dict[str, Option] = {
    "certificate": _path_option("certificate"),
    "private_key": _path_option("private_key"),
    "ca_file": _path_option("ca_file"),
    "ssl_context": Option(None, _check_context),
}
LISTEN_OPTIONS: dict[str, Option] = {
    "max_message_size": max_size_option(MAX_FRAME, DEFAULT_NETWORK_MAX_MESSAGE_SIZE),
    "backlog": sockets.BACKLOG,
    **_FILES,
}
CONNECT_OPTIONS: dict[str, Option] = {
    "max_message_size": sockets.MAX_SIZE,
    "server_hostname": Option(None, _check_hostname),
    **_FILES,
}
