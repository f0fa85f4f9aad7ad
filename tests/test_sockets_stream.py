"""Stream verbs and length-prefixed frames on sockets: limits, garbage, timeouts, dead peers."""

from __future__ import annotations

import errno
import inspect
import socket
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import Child, assert_elapsed, run_python
from unixipc import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    MessageTooLarge,
    PeerDied,
    TimeoutExpired,
    WouldBlock,
    errors,
    signals,
    sockets,
)
from unixipc.sockets import FRAME_HEADER_SIZE, MAX_FRAME_SIZE, FramingError

MAX = 4096


def _header(size: int, magic: bytes = b"uxf1") -> bytes:
    return struct.pack(">4sI", magic, size)


@pytest.fixture(params=["unix", "tcp"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected stream pair: a UNIX socketpair, or TCP over loopback."""
    if request.param == "unix":
        left, right = socket.socketpair()
    else:
        with sockets.tcp_listen("127.0.0.1", 0) as listener:
            left = sockets.tcp_connect("127.0.0.1", listener.address[1], timeout=30)
            right, _ = listener.accept(timeout=30)
    with left, right:
        yield left, right


def _send_until_full(sock: socket.socket) -> None:
    while True:
        sockets.send_all(sock, b"\0" * 65536, timeout=0)


def _fill_socket(sock: socket.socket) -> None:
    """Send until the kernel's buffers are full."""
    with pytest.raises(WouldBlock):
        _send_until_full(sock)


# --- frames -----------------------------------------------------------------------------


def test_frames_round_trip_in_order(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    messages = [b"", b"a", bytearray(b"bc" * 100), memoryview(b"x" * MAX)]
    for message in messages:
        sockets.send_message(left, message, timeout=30)
    for message in messages:
        received = sockets.receive_message(right, max_size=MAX, timeout=30)
        assert type(received) is bytes
        assert received == bytes(message)


def test_a_frame_at_the_maximum_passes_and_one_byte_over_is_refused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    sockets.send_message(left, b"m" * MAX, timeout=30)
    assert sockets.receive_message(right, max_size=MAX, timeout=30) == b"m" * MAX
    sockets.send_message(left, b"m" * (MAX + 1), timeout=30)
    with pytest.raises(MessageTooLarge, match=f"frame of {MAX + 1} bytes, more than the maximum"):
        sockets.receive_message(right, max_size=MAX, timeout=30)


def test_a_peer_announcing_4_gb_gets_an_error_not_an_allocation(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    sockets.send_all(left, _header(MAX_FRAME_SIZE), timeout=30)
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooLarge, match="4294967295 bytes") as caught:
            sockets.receive_message(right, max_size=1 << 20, timeout=30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated"
    assert isinstance(caught.value, IPCError)
    assert isinstance(caught.value, ValueError)


def test_garbage_gives_a_clear_error(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    sockets.send_all(left, b"GET / HTTP/1.1\r\n\r\n", timeout=30)
    with pytest.raises(FramingError, match=r"not a unixipc frame.*b'GET / HT'") as caught:
        sockets.receive_message(right, max_size=MAX, timeout=30)
    assert isinstance(caught.value, IPCError)


def test_truncated_frames_give_end_of_channel(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    sockets.send_all(left, _header(100) + b"only ten b", timeout=30)
    left.shutdown(socket.SHUT_WR)
    with pytest.raises(EndOfChannel, match="after 10 of the 100 bytes of a frame") as caught:
        sockets.receive_message(right, max_size=MAX, timeout=30)
    assert caught.value.partial == _header(100) + b"only ten b"  # type: ignore[attr-defined]


def test_a_truncated_header_and_a_clean_end(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    sockets.send_message(left, b"last", timeout=30)
    sockets.send_all(left, b"uxf", timeout=30)
    left.shutdown(socket.SHUT_WR)
    assert sockets.receive_message(right, max_size=MAX, timeout=30) == b"last"
    with pytest.raises(EndOfChannel, match="in the middle of a frame header") as caught:
        sockets.receive_message(right, max_size=MAX, timeout=30)
    assert caught.value.partial == b"uxf"  # type: ignore[attr-defined]
    with pytest.raises(EndOfChannel, match=r"closed the stream$") as caught:
        sockets.receive_message(right, max_size=MAX, timeout=30)
    assert caught.value.partial == b""  # type: ignore[attr-defined]


def test_a_timeout_in_the_middle_of_a_frame_loses_nothing(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    payload = bytes(range(256)) * 40
    frame = _header(len(payload)) + payload
    sockets.send_all(left, frame[:5], timeout=30)  # part of the header
    with pytest.raises(WouldBlock):
        sockets.receive_message(right, max_size=len(payload), timeout=0)
    sockets.send_all(left, frame[5:3000], timeout=30)  # part of the payload
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        sockets.receive_message(right, max_size=len(payload), timeout=0.3)
    assert_elapsed(started, 0.3)
    sockets.send_all(left, frame[3000:], timeout=30)
    sockets.send_message(left, b"next", timeout=30)
    assert sockets.receive_message(right, max_size=len(payload), timeout=30) == payload
    assert sockets.receive_message(right, max_size=len(payload), timeout=30) == b"next"


def test_receive_message_into_a_buffer(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    buffer = bytearray(16)
    sockets.send_message(left, b"0123456789", timeout=30)
    assert sockets.receive_message_into(right, buffer, timeout=30) == 10
    assert buffer[:10] == b"0123456789"
    sockets.send_message(left, b"x" * 17, timeout=30)
    with pytest.raises(MessageTooLarge):
        sockets.receive_message_into(right, buffer, timeout=30)
    with pytest.raises(TypeError, match="writable"):
        sockets.receive_message_into(right, b"read-only", timeout=30)


def _send_frames(sock: socket.socket, sizes: list[int]) -> int:
    for size in sizes:
        sockets.send_message(sock, bytes([size % 251]) * size, timeout=60)
    sock.close()
    return len(sizes)


def test_large_frames_from_another_process(children: Callable[..., Child]) -> None:
    left, right = socket.socketpair()
    sizes = [0, 1, 65535, 4 << 20, 7, 1 << 20]
    child = children(_send_frames, left, sizes)
    left.close()
    with right:
        for size in sizes:
            assert sockets.receive_message(right, max_size=8 << 20, timeout=60) == (
                bytes([size % 251]) * size
            )
        with pytest.raises(EndOfChannel):
            sockets.receive_message(right, max_size=8 << 20, timeout=60)
    assert child.result() == len(sizes)


def test_sending_a_frame_times_out_when_the_peer_does_not_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, _right = pair
    _fill_socket(left)
    with pytest.raises(WouldBlock):
        sockets.send_message(left, b"x" * 100, timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired) as caught:
        sockets.send_message(left, b"x" * (1 << 20), timeout=0.3)
    assert_elapsed(started, 0.3)
    assert caught.value.bytes_sent >= 0


def test_frame_argument_checks() -> None:
    left, right = socket.socketpair()
    with left, right:
        with pytest.raises(TypeError, match="bytes-like"):
            sockets.send_message(left, "text")
        with pytest.raises(TypeError, match="max_size"):
            sockets.receive_message(right, max_size=None, timeout=0)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"socket\.socket"):
            sockets.receive_message(right.fileno(), max_size=1)  # type: ignore[arg-type]
    with pytest.raises(ClosedResourceError):
        sockets.send_message(left, b"x")
    assert FRAME_HEADER_SIZE == 8


# --- byte streams ------------------------------------------------------------------------


def test_send_all_receive_exactly_and_peek(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    sockets.send_all(left, b"hello world", timeout=30)
    assert sockets.peek(right, 5, timeout=30) == b"hello"
    assert sockets.peek(right, 5, timeout=30) == b"hello"  # peeking does not consume
    assert sockets.receive_exactly(right, 6, timeout=30) == b"hello "
    assert sockets.receive_some(right, 100, timeout=30) == b"world"
    with pytest.raises(WouldBlock):
        sockets.peek(right, timeout=0)
    left.shutdown(socket.SHUT_WR)
    assert sockets.receive_some(right, timeout=30) == b""
    assert sockets.peek(right, timeout=30) == b""


def test_timed_out_receive_exactly_keeps_the_bytes_for_the_next_call(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    sockets.send_all(left, b"abc", timeout=30)
    with pytest.raises(TimeoutExpired):
        sockets.receive_exactly(right, 6, timeout=0.05)
    assert sockets.peek(right, 10, timeout=30) == b"abc"
    sockets.send_all(left, b"def", timeout=30)
    assert sockets.peek(right, 10, timeout=30) == b"abcdef"
    assert sockets.receive_some(right, 2, timeout=30) == b"ab"
    assert sockets.receive_exactly(right, 4, timeout=30) == b"cdef"


def test_our_timeout_rules_even_on_a_socket_with_its_own_timeout() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.settimeout(30)
        started = time.monotonic()
        with pytest.raises(TimeoutExpired):
            sockets.receive_message(right, max_size=10, timeout=0.3)
        assert_elapsed(started, 0.3)
        with pytest.raises(WouldBlock):
            sockets.receive_some(right, timeout=0)
        sockets.send_message(left, b"fine", timeout=30)
        assert sockets.receive_message(right, max_size=10, timeout=30) == b"fine"
        right.setblocking(False)
        with pytest.raises(WouldBlock):
            sockets.receive_some(right, timeout=0)


def _keep_sending(sock: socket.socket) -> None:
    for _ in range(100):  # TCP notices on the second write
        sockets.send_message(sock, b"x" * 1000, timeout=30)
        time.sleep(0.01)


def test_a_closed_peer_gives_peer_died_not_sigpipe(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    right.close()
    with pytest.raises(PeerDied) as caught:
        _keep_sending(left)
    assert isinstance(caught.value, BrokenPipeError)


def test_a_reset_connection_gives_peer_died() -> None:
    with sockets.tcp_listen("127.0.0.1", 0) as listener:
        client = sockets.tcp_connect("127.0.0.1", listener.address[1], timeout=30)
        server, _ = listener.accept(timeout=30)
    with client, server:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # SO_LINGER 0: the kernel sends RST
        with pytest.raises(PeerDied, match="the other end is gone") as caught:
            sockets.receive_message(server, max_size=10, timeout=30)
    assert caught.value.errno == errno.ECONNRESET


def test_no_sigpipe_even_when_sigpipe_is_at_its_default() -> None:
    code = """
import signal, socket
from unixipc import sockets, PeerDied
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
left, right = socket.socketpair()
right.close()
try:
    sockets.send_message(left, b"x")
except PeerDied:
    print("PeerDied")
print("alive", signal.SIGPIPE in signal.sigpending())
left.close()
"""
    assert run_python(code).stdout.split() == ["PeerDied", "alive", "False"]


def test_econnreset_maps_to_peer_died() -> None:
    error = errors.from_os_error(OSError(errno.ECONNRESET, "x"), "TCP socket", "h:1")
    assert type(error) is PeerDied
    assert type(errors.from_os_error(OSError(errno.ESRCH, "x"), "signal", "process 1")) is (
        errors.ResourceNotFoundError
    )


@pytest.mark.parametrize("module", [sockets, signals])
def test_every_public_name_of_sockets_and_signals_is_documented(module: object) -> None:
    for name in module.__all__:  # type: ignore[attr-defined]
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"
        if inspect.isclass(obj):
            for attribute, member in vars(obj).items():
                if not attribute.startswith("_") and callable(member):
                    assert inspect.getdoc(member), f"{name}.{attribute} has no docstring"
