"""Fuzzing every parser a peer can feed (issue 14, item 7), with hypothesis.

Targets: the stream frames of channels (with and without the greeting), the
reassembly of pieces (over a real ring), the control messages of ``mq`` and
``sysvmq`` links (over real queues), the connection requests of every
rendezvous inbox (FIFO, POSIX queue, ring, System V queue), the secret
handshake on both sides, the TLS handshake, and the frames of
:mod:`unixipc.sockets`. The property is always the same: garbage gives an
:class:`IPCError` in that receiver only (or nothing: it waits for more), never
another exception, a hang or memory beyond what arrived; where part of the
input is well formed, that part comes out intact first.

Deterministic and bounded: a fixed seed, a fixed number of examples per
target, no example database, and a few hand-written seeds (``@example``) that
reach the interesting outcomes on every run. To look further (a random seed,
N examples per target): ``UNIXIPC_FUZZ_EXAMPLES=N pytest tests/test_fuzz_channels.py``.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

import unixipc
from tests.channel_support import WAIT
from tests.conftest import Names
from tests.tls_support import session_pki
from unixipc import IPCError, WouldBlock, sockets
from unixipc._deadline import Deadline
from unixipc.channels import auth, core, fifo, mq, rendezvous, shm, sysvmq, tls
from unixipc.channels.frames import GOODBYE, HELLO, HELLO_FRAME, READ_BUFFER, FramedChannel
from unixipc.channels.socket import SocketLink

SEARCH = int(os.environ.get("UNIXIPC_FUZZ_EXAMPLES", "0"))  # >0: a deeper, random search
FUZZ = settings(
    database=None,  # nothing written to the tree: the seeds below are the corpus
    deadline=None,  # a busy 2-core machine
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
SEED = 0x5EC_14_07  # the same examples on every run (unless searching)
MAX = 1000  # the receivers' max_message_size
SECRET = b"fuzzing secret, 32 bytes long!!!"


def fuzz(examples: int = 100) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The settings of every fuzz test: ``examples`` of them, or SEARCH when set."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        test = settings(FUZZ, max_examples=SEARCH or examples)(test)
        return test if SEARCH else seed(SEED)(test)

    return decorate


def _drain(receive: Callable[[], bytes], bound: int, check: Callable[[], None]) -> list[str]:
    """Receive until the receiver waits or ends; the outcomes ('msg' or an error's
    class name). Anything but IPCError fails; so does a receiver that never stops."""
    outcomes: list[str] = []
    for _ in range(bound):
        try:
            message = receive()
        except WouldBlock:
            return [*outcomes, "waits"]
        except IPCError as error:
            ending = type(error)
            check()
            with pytest.raises(ending):  # endings are sticky
                receive()
            return [*outcomes, ending.__name__]
        assert isinstance(message, bytes)
        assert len(message) <= MAX
        outcomes.append("msg")
        check()
    raise AssertionError(f"still receiving after {bound} messages")


# 1. Stream frames: pipes, FIFOs, sockets (FramedChannel).

_LENGTHS = st.one_of(
    st.integers(0, 40),
    st.sampled_from([MAX, MAX + 1, 2**31, HELLO, GOODBYE, 64 << 20, 0xFFFFFFFD]),
)
_FRAME = st.one_of(
    st.binary(max_size=48),  # raw garbage
    st.binary(max_size=40).map(lambda payload: struct.pack("!I", len(payload)) + payload),
    st.tuples(_LENGTHS, st.binary(max_size=40)).map(lambda t: struct.pack("!I", t[0]) + t[1]),
    st.just(HELLO_FRAME),
    st.just(struct.pack("!I", HELLO) + b"nope"),
)


def frames_target(data: bytes, *, hello: bool, eof: bool, into: bool) -> list[str]:
    mine, peer = socket.socketpair()
    channel = FramedChannel("fuzz:", SocketLink(mine), max_message_size=MAX, expect_hello=hello)
    buffer = bytearray(MAX)
    try:
        peer.sendall(data)
        if eof:
            peer.shutdown(socket.SHUT_WR)

        def receive() -> bytes:
            if into:
                return bytes(buffer[: channel.receive_into(buffer, timeout=0)])
            return channel.receive(timeout=0)

        def bounded() -> None:  # memory follows the bytes that arrived
            assert len(channel._rbuf) <= 2 * len(data) + READ_BUFFER

        outcomes = _drain(receive, len(data) // 4 + 3, bounded)
        assert eof or outcomes[-1] != "PeerDied"  # the peer is still there
        return outcomes
    finally:
        channel.close()
        peer.close()


@fuzz()
@given(
    prefix=st.lists(st.binary(max_size=60), max_size=4),
    garbage=st.lists(_FRAME, max_size=6).map(b"".join),
    hello=st.booleans(),
    eof=st.booleans(),
    into=st.booleans(),
)
@example(  # too long, after two good messages
    prefix=[b"a", b""], garbage=struct.pack("!I", MAX + 1) + b"x", hello=True, eof=False, into=False
)
@example(prefix=[b"ok"], garbage=b"\x00\x00\x00\x09cut", hello=False, eof=True, into=True)
@example(prefix=[], garbage=struct.pack("!I", HELLO) + b"nope", hello=True, eof=False, into=False)
@example(prefix=[b"x"], garbage=HELLO_FRAME, hello=False, eof=True, into=False)  # a late greeting
@example(prefix=[], garbage=struct.pack("!I", 0xFFFFFFFD), hello=False, eof=False, into=True)
def test_fuzz_stream_frames(
    prefix: list[bytes], garbage: bytes, hello: bool, eof: bool, into: bool
) -> None:
    valid = (HELLO_FRAME if hello else b"") + b"".join(
        struct.pack("!I", len(payload)) + payload for payload in prefix
    )
    outcomes = frames_target(valid + garbage, hello=hello, eof=eof, into=into)
    assert outcomes[: len(prefix)] == ["msg"] * len(prefix)  # what was well formed came out


# 2. Pieces over a ring (PieceChannel reassembly).

_CAPACITY = 1024  # the smallest ring: pieces of 496 bytes


def pieces_target(sizes: list[int]) -> list[str]:
    ours, theirs = unixipc.channel_pair("shm", capacity=_CAPACITY, max_message_size=MAX)
    try:
        with ours:
            piece = ours._link.rx_piece_size  # type: ignore[attr-defined]
            raw = theirs._link._tx  # type: ignore[attr-defined] # the ring we receive from
            expected: list[bytes | str] = []
            pending: list[bytes] = []
            for index, size in enumerate(sizes):
                pending.append(bytes([index % 251]) * min(size, piece))
                total = sum(map(len, pending))
                if total > MAX:
                    expected.append("MessageTooLarge")
                    break
                if len(pending[-1]) < piece:
                    expected.append(b"".join(pending))
                    pending = []
            got: list[bytes | str] = []
            outcomes: list[str] = []

            def bounded() -> None:
                assert ours._partial_size <= MAX + piece  # type: ignore[attr-defined]

            for index, size in enumerate(sizes):
                raw.send(bytes([index % 251]) * min(size, piece), timeout=WAIT)
                step = _drain_pieces(ours, bounded)
                outcomes += step
                got += [item for item in step if item != "waits"]
                if "MessageTooLarge" in step:
                    break
            results = [item for item in got if item != "msg"]
            assert results == [e for e in expected if isinstance(e, str)]
            return outcomes
    finally:
        theirs.close()


def _drain_pieces(channel: unixipc.Channel, check: Callable[[], None]) -> list[str]:
    return _drain(lambda: channel.receive(timeout=0), 8, check)


@fuzz()
@given(
    sizes=st.lists(
        st.one_of(st.sampled_from([0, 1, 495, 496]), st.integers(0, 496)), min_size=1, max_size=8
    )
)
@example(sizes=[496, 496, 496])  # over max_message_size: MessageTooLarge, then nothing
@example(sizes=[496, 0, 495])  # a message ending in an empty piece, then a short one
def test_fuzz_piece_reassembly(sizes: list[int]) -> None:
    pieces_target(sizes)


# 3. Control messages of the queue links (real queues, a real connection).


@pytest.fixture
def queue_listener(
    names: Names,
) -> Iterator[Callable[[str], tuple[unixipc.Channel, unixipc.Channel]]]:
    """connect(scheme) -> (our end, the peer's end), both closed by the caller."""
    made: list[Any] = []

    def connect(scheme: str) -> tuple[unixipc.Channel, unixipc.Channel]:
        if not made:
            url = f"mq://{names.posix('fuzz')[1:]}" if scheme == "mq" else f"sysvmq://{names.key()}"
            made.append(unixipc.listen(url, **({"backlog": 2} if scheme == "mq" else {})))
        listener = made[0]
        holder: list[unixipc.Channel] = []
        options = {"queue_length": 4, "queue_message_size": 128} if scheme == "mq" else {}
        thread = threading.Thread(
            target=lambda: holder.append(unixipc.connect(listener.url, timeout=WAIT, **options))
        )
        thread.start()
        theirs = listener.accept(timeout=WAIT)
        thread.join(WAIT)
        return holder[0], theirs

    yield connect
    for thing in reversed(made):
        thing.close()


def queue_target(
    scheme: str,
    connect: Callable[[str], tuple[unixipc.Channel, unixipc.Channel]],
    messages: list[bytes],
) -> list[str]:
    ours, theirs = connect(scheme)
    with ours, theirs:
        return _queue_garbage(scheme, ours, theirs._link, messages)


def _queue_garbage(
    scheme: str, ours: unixipc.Channel, peer_link: Any, messages: list[bytes]
) -> list[str]:
    for message in messages:
        try:
            if scheme == "mq":  # the first byte chooses the priority (kind)
                kind = message[0] % 6 if message else 1
                peer_link._tx.send(message[1:129], priority=kind, timeout=0)
            else:  # sysvmq: the kind is the first byte of the message itself
                peer_link._queue.send(message, type=peer_link._tx_type, timeout=0)
        except unixipc.WouldBlock:
            break  # the queue is full
    outcomes = _drain(lambda: ours.receive(timeout=0), len(messages) + 2, lambda: None)
    assert "ClosedResourceError" not in outcomes  # a peer cannot fake our own wake-up
    return outcomes


_QUEUE_MESSAGES = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"\x00hello", b"\x02", b"\x04", b"\x03", b"\x01", b""]),
    ),
    max_size=4,
)


@fuzz(30)
@given(messages=_QUEUE_MESSAGES)
@example(messages=[b"\x01hello", b"\x03"])  # a data message, then a forged wake-up
@example(messages=[b"\x01a", b"\x00"])  # a data message, then goodbye
def test_fuzz_mq_control_messages(
    messages: list[bytes], queue_listener: Callable[[str], tuple[unixipc.Channel, unixipc.Channel]]
) -> None:
    queue_target("mq", queue_listener, messages)


@fuzz(30)
@given(messages=_QUEUE_MESSAGES)
@example(messages=[b"\x00hello", b"\x04"])  # a data message, then a forged wake-up
@example(messages=[b"\x00hi", b"\x02", b"\x00late"])  # goodbye, then more
def test_fuzz_sysvmq_messages(
    messages: list[bytes], queue_listener: Callable[[str], tuple[unixipc.Channel, unixipc.Channel]]
) -> None:
    queue_target("sysvmq", queue_listener, messages)


# 4. Connection requests: the inboxes of FIFO, mq, shm and sysvmq listeners.


@fuzz()
@given(record=st.binary(max_size=80), token=st.binary(min_size=16, max_size=16))
def test_fuzz_request_records(record: bytes, token: bytes) -> None:
    for magic in (fifo.MAGIC, mq.MAGIC, shm.MAGIC, sysvmq.MAGIC):
        found = rendezvous.token_of(magic, record)
        assert found is None or re.fullmatch("[0-9a-f]{32}", found)
        assert (
            rendezvous.token_of(magic, rendezvous.make_request(magic, token.hex())) == token.hex()
        )


def fifo_stream_target(data: bytes) -> list[str]:
    """The FIFO inbox's resynchronizing reader over a stream of requests and garbage."""
    inbox = fifo.FifoInbox.__new__(fifo.FifoInbox)
    inbox._pending = data
    records = []
    for _ in range(len(data) // rendezvous.REQUEST_SIZE + 2):
        record = inbox._next_record()
        if record is None:
            break
        assert rendezvous.token_of(fifo.MAGIC, record) is not None
        records.append("request")
    else:
        raise AssertionError("the reader does not stop")
    assert len(inbox._pending) < max(rendezvous.REQUEST_SIZE, len(data) + 1)
    return [*records, "waits"]


@fuzz()
@given(
    parts=st.lists(
        st.one_of(
            st.binary(max_size=50),
            st.binary(min_size=16, max_size=16).map(
                lambda token: rendezvous.make_request(fifo.MAGIC, token.hex())
            ),
            st.just(fifo.MAGIC),
        ),
        max_size=6,
    )
)
@example(parts=[fifo.MAGIC, rendezvous.make_request(fifo.MAGIC, "ab" * 16)])  # a torn record
@example(parts=[b"\x00" * 7, rendezvous.make_request(fifo.MAGIC, "cd" * 16)])
def test_fuzz_fifo_request_stream(parts: list[bytes]) -> None:
    fifo_stream_target(b"".join(parts))


def _inbox_garbage(scheme: str, listener: unixipc.Listener, garbage: list[bytes]) -> None:
    """Put ``garbage`` into the listener's inbox as a client would put a request."""
    address = unixipc.channel.parse_url(listener.url)[1]
    if scheme == "fifo":
        fd = os.open(address, os.O_WRONLY | os.O_NONBLOCK)
        try:
            for record in garbage:
                os.write(fd, record)
        finally:
            os.close(fd)
    elif scheme == "mq":
        with unixipc.PosixMessageQueue.open(address, read=False) as queue:
            for record in garbage:
                queue.send(record[:64], timeout=0)
    elif scheme == "shm":
        with unixipc.Ring.open(address) as ring:
            for record in garbage:
                ring.send(record, timeout=0)
    else:
        with unixipc.SysVMessageQueue.open(address) as queue:
            for record in garbage:
                queue.send(record, type=1, timeout=0)


@pytest.mark.parametrize("scheme", ["fifo", "mq", "shm", "sysvmq"])
def test_fuzz_inbox_garbage(scheme: str, names: Names) -> None:
    """Garbage in a listener's inbox is dropped by accept; real clients still connect."""
    from tests.channel_support import url_for

    backlog = {"backlog": 8} if scheme == "mq" else {}
    with unixipc.listen(url_for(scheme, names), **backlog) as listener:

        @fuzz(10)
        @given(
            garbage=st.lists(
                st.one_of(
                    st.binary(min_size=1, max_size=60),
                    st.binary(min_size=16, max_size=16).map(
                        lambda token: rendezvous.make_request(
                            {"fifo": fifo.MAGIC, "mq": mq.MAGIC, "shm": shm.MAGIC}.get(
                                scheme, sysvmq.MAGIC
                            ),
                            token.hex(),
                        )
                    ),
                ),
                min_size=1,
                max_size=4,
            )
        )
        def garbage_is_dropped(garbage: list[bytes]) -> None:
            _inbox_garbage(scheme, listener, garbage)
            with pytest.raises(WouldBlock):
                listener.accept(timeout=0)

        garbage_is_dropped()
        holder: list[unixipc.Channel] = []
        thread = threading.Thread(
            target=lambda: holder.append(unixipc.connect(listener.url, timeout=WAIT))
        )
        thread.start()
        with listener.accept(timeout=WAIT) as channel:
            thread.join(WAIT)
            with holder[0] as client:
                client.send(b"after the garbage", timeout=WAIT)
                assert channel.receive(timeout=WAIT) == b"after the garbage"


# 5. The secret handshake, both sides, and the TLS handshake.

_HANDSHAKE_MESSAGE = st.one_of(
    st.binary(max_size=80),
    st.binary(min_size=32, max_size=32).map(lambda nonce: auth.CHALLENGE + nonce),
    st.binary(min_size=64, max_size=64).map(lambda rest: auth.RESPONSE + rest),
    st.binary(min_size=32, max_size=32).map(lambda proof: auth.WELCOME + proof),
    st.just(auth.REFUSED),
    st.just(b"x" * (auth.BUDGET + 1)),
)


def handshake_target(messages: list[bytes], *, server: bool) -> list[str]:
    ours, theirs = unixipc.channel_pair("socketpair")
    with theirs:
        for message in messages:
            theirs.send(message, timeout=WAIT)
    gate = auth.Gate(SECRET, None, None, handshake_timeout=WAIT)
    try:
        with ours:
            core.establish(ours, gate, server=server, deadline=Deadline(WAIT))
    except IPCError as error:
        return [type(error).__name__]
    raise AssertionError("garbage passed the handshake")


@fuzz()
@given(messages=st.lists(_HANDSHAKE_MESSAGE, max_size=3), server=st.booleans())
@example(messages=[auth.CHALLENGE + bytes(32)], server=False)  # then a silent end
@example(messages=[auth.RESPONSE + bytes(64)], server=True)  # a wrong proof
@example(messages=[b"x" * (auth.BUDGET + 1)], server=True)  # over the budget
@example(messages=[auth.CHALLENGE + bytes(32), auth.WELCOME + bytes(32)], server=False)
@example(messages=[auth.REFUSED], server=False)
def test_fuzz_secret_handshake(messages: list[bytes], server: bool) -> None:
    handshake_target(messages, server=server)


def tls_target(data: bytes) -> list[str]:
    """A listener's TLS handshake fed garbage, then the end of the stream."""
    context = tls.server_context(
        "tls://fuzz",
        {
            "ssl_context": None,
            "certificate": session_pki().server,
            "private_key": None,
            "ca_file": None,
        },
    )
    mine, peer = socket.socketpair()
    mine.setblocking(False)
    try:
        peer.sendall(data)
        peer.shutdown(socket.SHUT_WR)
        with pytest.raises(unixipc.AuthenticationError) as raised:
            tls._handshake(
                "tls://fuzz", mine, context, server_hostname=None, deadline=Deadline(WAIT)
            )
        return [type(raised.value).__name__]
    finally:
        mine.close()
        peer.close()


@fuzz(30)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=200).map(lambda rest: b"\x16\x03\x01" + rest),  # a handshake record
    )
)
@example(data=b"\x16\x03\x01\x00\x05hello")  # a handshake record holding garbage
@example(data=b"GET / HTTP/1.0\r\n\r\n")
def test_fuzz_tls_handshake(data: bytes) -> None:
    tls_target(data)


# 6. The frames of unixipc.sockets (b"uxf1" + length).


def sockets_frames_target(data: bytes) -> list[str]:
    mine, peer = socket.socketpair()
    try:
        peer.sendall(data)
        peer.shutdown(socket.SHUT_WR)
        outcomes: list[str] = []
        for _ in range(len(data) // 8 + 3):
            try:
                message = sockets.receive_message(mine, max_size=MAX, timeout=0)
            except WouldBlock:
                return [*outcomes, "waits"]
            except IPCError as error:
                return [*outcomes, type(error).__name__]
            assert len(message) <= MAX
            outcomes.append("msg")
        raise AssertionError("still receiving")
    finally:
        mine.close()
        peer.close()


@fuzz()
@given(
    parts=st.lists(
        st.one_of(
            st.binary(max_size=30),
            st.binary(max_size=30).map(lambda p: b"uxf1" + struct.pack("!I", len(p)) + p),
            st.integers(0, 2**32 - 1).map(lambda n: b"uxf1" + struct.pack("!I", n)),
        ),
        max_size=5,
    )
)
@example(parts=[b"uxf1" + struct.pack("!I", 2**32 - 1)])  # a length far over the maximum
@example(parts=[b"uxf1\x00\x00\x00\x02hi", b"junk"])
def test_fuzz_socket_frames(parts: list[bytes]) -> None:
    sockets_frames_target(b"".join(parts))
