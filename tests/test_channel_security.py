"""Who may talk on a channel (issue 14, item 2): shared secrets on every scheme, kernel
peer credentials on UNIX sockets, TLS with certificates, and the limits an
untrusted peer meets. Other uids are real: forked children that setuid(65534).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import queue
import select
import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import unixipc
from tests.channel_support import (
    CONNECT_OPTIONS,
    LISTEN_OPTIONS,
    URL_SCHEMES,
    WAIT,
    start_when_ready,
    url_for,
)
from tests.conftest import Names
from tests.helpers import Child
from tests.tls_support import session_pki
from unixipc import AuthenticationError, Channel, EndOfChannel, Listener, PeerDied
from unixipc.channels import auth

SECRET = b"correct horse battery staple 42!"
NOBODY = 65534  # uid and gid of "nobody"
WRONG = b"incorrect horse battery staple!!"


class Acceptor:
    """Accepts in a thread until closed; channels come out of ``accepted``."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.accepted: queue.Queue[Channel] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.accepted.put(self.listener.accept())
            except unixipc.ClosedResourceError:
                return

    def next(self) -> Channel:
        return self.accepted.get(timeout=WAIT)

    def none_yet(self) -> bool:
        return self.accepted.empty()

    def stop(self) -> None:
        self.listener.close()
        self._thread.join(WAIT)
        while not self.accepted.empty():
            self.accepted.get().close()


@pytest.fixture
def serve(cleanup: Callable[..., None]) -> Callable[[Listener], Acceptor]:
    def start(listener: Listener) -> Acceptor:
        acceptor = Acceptor(listener)
        cleanup(acceptor.stop)
        return acceptor

    return start


def _listen(scheme: str, names: Names, **options: Any) -> Listener:
    return unixipc.listen(url_for(scheme, names), **{**LISTEN_OPTIONS.get(scheme, {}), **options})


def _connect(url: str, scheme: str, **options: Any) -> Channel:
    return unixipc.connect(url, timeout=WAIT, **{**CONNECT_OPTIONS.get(scheme, {}), **options})


# Clients in forked children (module level: the children run them).


def _wrong_secret(url: str, scheme: str) -> str:
    try:
        _connect(url, scheme, secret=WRONG).close()
    except AuthenticationError as error:
        return str(error)
    return "connected"


def _over_budget(url: str, scheme: str) -> str:
    """A client without the secret: the challenge looks like a message to it; it
    answers with more than the budget, and is dropped."""
    with _connect(url, scheme) as channel:
        challenge = channel.receive(timeout=WAIT)
        assert challenge.startswith(auth.CHALLENGE)
        with pytest.raises((EndOfChannel, PeerDied)):  # while sending, or after
            _send_then_receive(channel, b"x" * 4000)
    return "dropped"


def _send_then_receive(channel: Channel, data: bytes) -> bytes:
    channel.send(data, timeout=WAIT)
    return channel.receive(timeout=WAIT)


def _send_then_receive_on(sender: Channel, receiver: Channel, data: bytes) -> bytes:
    sender.send(data, timeout=WAIT)
    return receiver.receive(timeout=WAIT)


def _silent(url: str, scheme: str) -> str:
    """A client that never answers: dropped once the handshake timeout runs out."""
    with _connect(url, scheme) as channel:
        assert channel.receive(timeout=WAIT).startswith(auth.CHALLENGE)
        with pytest.raises((EndOfChannel, PeerDied)):
            channel.receive(timeout=WAIT)
    return "dropped"


def _right_secret(url: str, scheme: str) -> bool:
    with _connect(url, scheme, secret=SECRET) as channel:
        channel.send(b"ping", timeout=WAIT)
        assert channel.receive(timeout=WAIT) == b"PING"
        return channel.authenticated


@pytest.mark.parametrize("scheme", URL_SCHEMES)
def test_a_shared_secret_lets_in_only_who_proves_it_on_every_scheme(
    scheme: str,
    names: Names,
    serve: Callable[[Listener], Acceptor],
    children: Callable[..., Child],
) -> None:
    listener = _listen(scheme, names, secret=SECRET, handshake_timeout=1.0)
    acceptor = serve(listener)
    url = listener.url
    # Each failing client is dropped while the listener goes on accepting.
    assert "refused our proof" in children(_wrong_secret, url, scheme).result()
    assert children(_over_budget, url, scheme).result() == "dropped"
    assert children(_silent, url, scheme).result() == "dropped"
    assert acceptor.none_yet()
    good = children(_right_secret, url, scheme)
    with acceptor.next() as channel:
        assert channel.authenticated
        channel.send(channel.receive(timeout=WAIT).upper(), timeout=WAIT)
        assert good.result() is True
    assert acceptor.none_yet()


def test_the_budget_and_the_timeout_are_what_the_module_says() -> None:
    assert auth.BUDGET == 256
    assert auth.DEFAULT_HANDSHAKE_TIMEOUT == 5.0


def _frame(payload: bytes) -> bytes:
    return struct.pack("!I", len(payload)) + payload


def _read_frame(sock: socket.socket) -> bytes:
    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            more = sock.recv(size - len(data))
            assert more, "the peer closed"
            data += more
        return data

    (size,) = struct.unpack("!I", exactly(4))
    if size == 0xFFFFFFFE:  # a greeting: 4 bytes of magic follow
        exactly(4)
        return _read_frame(sock)
    return exactly(size)


def test_a_listener_that_reflects_the_clients_own_proof_is_refused(names: Names) -> None:
    """The proofs are bound to the role: the client's proof sent back as the
    listener's does not authenticate the listener."""
    path = names.path("rogue")
    rogue = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    rogue.bind(path)
    rogue.listen(1)
    result: list[BaseException | Channel] = []

    def client() -> None:
        try:
            result.append(unixipc.connect(f"unix://{path}", timeout=WAIT, secret=SECRET))
        except BaseException as error:
            result.append(error)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        connection, _ = rogue.accept()
        with connection:
            connection.sendall(b"\xff\xff\xff\xfeuxc\x01" + _frame(auth.CHALLENGE + bytes(32)))
            response = _read_frame(connection)
            assert response.startswith(auth.RESPONSE)
            client_proof = response[-32:]
            expected = hmac.new(
                SECRET, b"unixipc-auth-1 client\0" + bytes(32) + response[5:37], hashlib.sha256
            ).digest()
            assert client_proof == expected  # the documented wire format
            connection.sendall(_frame(auth.WELCOME + client_proof))
            thread.join(WAIT)
    finally:
        rogue.close()
        os.unlink(path)
    assert isinstance(result[0], AuthenticationError)
    assert "did not prove" in str(result[0])


# Peer credentials: other uids are forked children that drop to nobody.


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _connect_as_nobody(url: str) -> str:
    """Connect as nobody (who trusts any listener) and report what happened."""
    _as_nobody()
    with unixipc.connect(url, timeout=WAIT, allowed_uids="any") as channel:
        try:
            channel.send(b"let me in", timeout=WAIT)
            return f"received {channel.receive(timeout=WAIT)!r}"
        except (EndOfChannel, PeerDied):
            return "dropped"


def test_an_abstract_listener_admits_only_its_own_uid_by_default(
    names: Names, serve: Callable[[Listener], Acceptor], children: Callable[..., Child]
) -> None:
    listener = _listen("unix-abstract", names)
    acceptor = serve(listener)
    assert children(_connect_as_nobody, listener.url).result() == "dropped"
    assert acceptor.none_yet()
    with _connect(listener.url, "unix-abstract") as ours, acceptor.next() as theirs:
        assert theirs.authenticated
        assert ours.authenticated
        credentials = theirs.peer_credentials()
        assert credentials is not None
        assert credentials.uid == os.geteuid()


@pytest.mark.parametrize(
    "options", [{"allowed_uids": [NOBODY]}, {"allowed_gids": [NOBODY]}], ids=["uid", "gid"]
)
def test_allowed_uids_and_gids_admit_the_users_named(
    options: dict[str, Any],
    names: Names,
    serve: Callable[[Listener], Acceptor],
    children: Callable[..., Child],
) -> None:
    listener = _listen("unix-abstract", names, **options)
    acceptor = serve(listener)
    nobody = children(_connect_as_nobody, listener.url)
    with acceptor.next() as channel:
        assert channel.authenticated
        assert channel.receive(timeout=WAIT) == b"let me in"
        channel.send(b"welcome", timeout=WAIT)
        assert nobody.result() == "received b'welcome'"
    # ...and nobody else: our own uid is not in the list any more.
    with (
        _connect(listener.url, "unix-abstract", allowed_uids="any") as ours,
        pytest.raises((EndOfChannel, PeerDied)),
    ):
        ours.receive(timeout=WAIT)
    assert acceptor.none_yet()


def _listen_as_nobody(url: str, ready: int) -> None:
    _as_nobody()
    with unixipc.listen(url, allowed_uids="any") as listener:
        os.write(ready, b"!")
        for _ in range(2):
            with contextlib.suppress(unixipc.IPCError), listener.accept(timeout=WAIT) as channel:
                channel.send(b"from nobody", timeout=WAIT)
                with contextlib.suppress(unixipc.IPCError):
                    channel.receive(timeout=WAIT)


def test_a_client_refuses_an_abstract_listener_of_another_uid(
    names: Names, children: Callable[..., Child]
) -> None:
    """Someone else may bind the abstract name first: a client checks the listener too."""
    url = url_for("unix-abstract", names)
    squatter = start_when_ready(children, _listen_as_nobody, url)
    with pytest.raises(AuthenticationError, match=r"uid 65534.*not allowed"):
        unixipc.connect(url, timeout=WAIT)
    with unixipc.connect(url, timeout=WAIT, allowed_uids=[NOBODY]) as channel:
        assert channel.authenticated
        assert channel.receive(timeout=WAIT) == b"from nobody"
    squatter.result()


@pytest.fixture
def shared_directory() -> Iterator[str]:
    """A directory that another uid can traverse (pytest's tmp_path is 0700)."""
    directory = tempfile.mkdtemp(prefix=f"{os.environ['UNIXIPC_TEST_PREFIX']}-shared-")
    os.chmod(directory, 0o755)
    try:
        yield directory
    finally:
        for entry in os.listdir(directory):
            os.unlink(os.path.join(directory, entry))
        os.rmdir(directory)


def _hammer(path: str, stop: int) -> dict[str, int]:
    """As nobody, connect to ``path`` as fast as possible until told to stop."""
    _as_nobody()
    counts = {"attempts": 0, "connected": 0, "denied": 0}
    while True:
        for _ in range(50):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
                counts["connected"] += 1
            except PermissionError:
                counts["denied"] += 1  # the file was there, and not for us
            except OSError:
                pass
            finally:
                probe.close()
            counts["attempts"] += 1
        if select.select([stop], [], [], 0)[0]:
            return counts


def test_another_uid_never_reaches_a_0600_socket_in_a_thousand_listens_under_umask_000(
    shared_directory: str, children: Callable[..., Child]
) -> None:
    path = os.path.join(shared_directory, "s")
    stop, tell = os.pipe()
    try:
        hammer = children(_hammer, path, stop)
        old = os.umask(0)
        try:
            for _ in range(1000):
                unixipc.listen(f"unix://{path}").close()
        finally:
            os.umask(old)
            os.write(tell, b"stop")
        counts = hammer.result()
    finally:
        os.close(stop)
        os.close(tell)
    assert counts["connected"] == 0, counts
    assert counts["denied"] > 0, counts  # it did meet the socket file, many times


# TLS


@pytest.fixture
def tls_listener(cleanup: Callable[..., None]) -> Callable[..., tuple[Listener, Acceptor]]:
    def make(**options: Any) -> tuple[Listener, Acceptor]:
        listener = unixipc.listen("tls://127.0.0.1:0", **options)
        acceptor = Acceptor(listener)
        cleanup(acceptor.stop)
        return listener, acceptor

    return make


def test_tls_with_client_certificates_authenticates_both_sides(
    tls_listener: Callable[..., tuple[Listener, Acceptor]],
) -> None:
    pki = session_pki()
    listener, acceptor = tls_listener(certificate=pki.server, ca_file=pki.ca)
    # Refused: a client with no certificate, one from another CA, plain TCP.
    for options in ({}, {"certificate": pki.other_client}):
        with pytest.raises(AuthenticationError, match="refused"):
            unixipc.connect(listener.url, timeout=WAIT, ca_file=pki.ca, **options)
    port = int(listener.url.rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as plain:
        plain.sendall(b"\xff\xff\xff\xfeuxc\x01" + _frame(b"hello in clear"))
        with contextlib.suppress(ConnectionResetError):
            assert plain.recv(100) == b""  # dropped
    assert acceptor.none_yet()
    with (
        unixipc.connect(listener.url, timeout=WAIT, ca_file=pki.ca, certificate=pki.client) as ours,
        acceptor.next() as theirs,
    ):
        assert ours.authenticated
        assert theirs.authenticated
        big = os.urandom(500_000)
        ours.send(big, timeout=WAIT)
        assert theirs.receive(timeout=WAIT) == big
        theirs.send(b"done", timeout=WAIT)
        assert ours.receive(timeout=WAIT) == b"done"


@pytest.mark.parametrize(
    ("listen_certificate", "connect_options", "words"),
    [
        ("other_server", {}, "did not verify"),  # an impostor's certificate
        ("server", {"server_hostname": "example.org"}, "Hostname mismatch"),
    ],
)
def test_a_tls_client_refuses_a_listener_whose_certificate_does_not_verify(
    listen_certificate: str,
    connect_options: dict[str, Any],
    words: str,
    tls_listener: Callable[..., tuple[Listener, Acceptor]],
) -> None:
    pki = session_pki()
    listener, acceptor = tls_listener(certificate=getattr(pki, listen_certificate))
    with pytest.raises(AuthenticationError, match=words):
        unixipc.connect(listener.url, timeout=WAIT, ca_file=pki.ca, **connect_options)
    # Without client certificates the listener knows nothing of its client, the client all.
    right_ca = pki.other_ca if listen_certificate == "other_server" else pki.ca
    with (
        unixipc.connect(listener.url, timeout=WAIT, ca_file=right_ca) as ours,
        acceptor.next() as theirs,
    ):
        assert ours.authenticated
        assert not theirs.authenticated


def test_tls_and_a_secret_together(tls_listener: Callable[..., tuple[Listener, Acceptor]]) -> None:
    pki = session_pki()
    listener, acceptor = tls_listener(certificate=pki.server, secret=SECRET)
    with pytest.raises(AuthenticationError):
        unixipc.connect(listener.url, timeout=WAIT, ca_file=pki.ca, secret=WRONG)
    with (
        unixipc.connect(listener.url, timeout=WAIT, ca_file=pki.ca, secret=SECRET) as ours,
        acceptor.next() as theirs,
    ):
        assert theirs.authenticated  # by the secret: it asked for no certificate
        ours.send(b"x", timeout=WAIT)
        assert theirs.receive(timeout=WAIT) == b"x"


def test_tls_options_are_checked_before_anything_is_made() -> None:
    pki = session_pki()
    with pytest.raises(ValueError, match="needs certificate"):
        unixipc.listen("tls://127.0.0.1:0")
    with pytest.raises(ValueError, match="replaces certificate"):
        unixipc.listen(
            "tls://127.0.0.1:0", certificate=pki.server, ssl_context=ssl.create_default_context()
        )
    with pytest.raises(unixipc.ResourceNotFoundError):
        unixipc.listen("tls://127.0.0.1:0", certificate="/nonexistent/cert.pem")
    with pytest.raises(ValueError, match="cannot use certificate"):
        unixipc.listen("tls://127.0.0.1:0", certificate=pki.ca)  # a certificate without its key
    with pytest.raises(TypeError, match="ssl_context"):
        unixipc.connect("tls://127.0.0.1:1", ssl_context="yes")  # type: ignore[typeddict-item]


# Limits and options.


def test_network_listeners_default_to_a_smaller_maximum(
    names: Names, serve: Callable[[Listener], Acceptor]
) -> None:
    """Anyone who reaches a TCP port may connect: 1 MiB unless told otherwise."""
    pki = session_pki()
    network = unixipc.channel.DEFAULT_NETWORK_MAX_MESSAGE_SIZE
    for url, listen_options, connect_options in (
        ("tcp://127.0.0.1:0", {}, {}),
        ("tls://127.0.0.1:0", {"certificate": pki.server}, {"ca_file": pki.ca}),
    ):
        listener = unixipc.listen(url, **listen_options)
        acceptor = serve(listener)  # a TLS connect waits for the listener's handshake
        with (
            unixipc.connect(listener.url, timeout=WAIT, **connect_options) as ours,
            acceptor.next() as theirs,
        ):
            assert theirs.max_message_size == network
            assert ours.max_message_size == unixipc.channel.DEFAULT_MAX_MESSAGE_SIZE
            assert len(_send_then_receive_on(ours, theirs, bytes(network))) == network
            ours.send(bytes(network + 1), timeout=WAIT)
            with pytest.raises(unixipc.MessageTooLarge):
                theirs.receive(timeout=WAIT)
    assert unixipc.channel.DEFAULT_NETWORK_MAX_MESSAGE_SIZE == 1 << 20
    with (
        unixipc.listen(url_for("unix", names)) as local,
        unixipc.connect(local.url, timeout=WAIT),
        local.accept(timeout=WAIT) as theirs,
    ):
        assert theirs.max_message_size == unixipc.channel.DEFAULT_MAX_MESSAGE_SIZE


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: unixipc.listen("tcp://127.0.0.1:0", secret=b"short"), ValueError, "16 bytes"),
        (lambda: unixipc.listen("tcp://127.0.0.1:0", secret="text" * 8), TypeError, "bytes"),
        (
            lambda: unixipc.listen("tcp://127.0.0.1:0", secret=SECRET, handshake_timeout=0),
            ValueError,
            "positive",
        ),
        (lambda: unixipc.listen("mq:///x", allowed_uids=[0]), TypeError, "allowed_uids"),
        (lambda: unixipc.listen("unix-abstract://x", allowed_uids=[]), ValueError, "empty"),
        (lambda: unixipc.channel_pair("pipe", secret=SECRET), TypeError, "secret"),
        (lambda: unixipc.channel_pair("socketpair", allowed_uids=[0]), TypeError, "allowed"),
    ],
)
def test_security_options_are_checked_before_any_system_call(
    call: Callable[[], Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        call()


def test_an_asyncio_accept_never_waits_for_a_handshake_in_the_event_loop(
    names: Names, children: Callable[..., Child]
) -> None:
    url = url_for("unix", names)

    async def main() -> tuple[int, bool]:
        listener = await unixipc.aio.listen(url, secret=SECRET, handshake_timeout=1.0)
        async with listener:
            silent = children(_silent, url, "unix")  # holds the handshake for 1 s
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            accepting = asyncio.create_task(listener.accept(timeout=WAIT))
            await asyncio.sleep(0.3)
            during = ticks  # the loop ran while accept worked on the silent client
            good = children(_right_secret, url, "unix")
            channel = await accepting
            ticker.cancel()
            async with channel:
                await channel.send((await channel.receive(timeout=WAIT)).upper(), timeout=WAIT)
            assert good.result() is True
            assert silent.result() == "dropped"
            return during, channel.channel.authenticated

    during, authenticated = asyncio.run(main())
    assert during >= 5
    assert authenticated
