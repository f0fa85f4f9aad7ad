"""mq:// and sysvmq:// channels: names, handshakes, pieces, liveness, the queue's lifetime."""

from __future__ import annotations

import os
import select
import signal
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable

import pytest

import unixipc
from tests.channel_support import WAIT, url_for
from tests.conftest import Names
from tests.helpers import Child, wait_until
from unixipc import (
    EndOfChannel,
    IPCOSError,
    MessageTooLarge,
    PosixMessageQueue,
    ResourceExistsError,
    ResourceNotFoundError,
    SysVMessageQueue,
    TimeoutExpired,
    WouldBlock,
    connect,
    listen,
    posix_mq,
    posix_shm,
)

SMALL_QUEUES = {"queue_length": 4, "queue_message_size": 256}
SMALL_RINGS = {"capacity": 65536}


def _connect_in_thread(url: str, **options: object) -> tuple[threading.Thread, list[object]]:
    """Connect from a thread (queue channels connect only once accepted)."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(connect(url, timeout=WAIT, **options))  # type: ignore[arg-type]
        except Exception as error:
            result.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _pair(listener: unixipc.Listener, **options: object) -> tuple[unixipc.Channel, unixipc.Channel]:
    thread, result = _connect_in_thread(listener.url, **options)
    server = listener.accept(timeout=WAIT)
    thread.join(WAIT)
    client = result[0]
    assert isinstance(client, unixipc.Channel), client
    return server, client


def _small(scheme: str) -> dict[str, int]:
    return {"mq": SMALL_QUEUES, "shm": SMALL_RINGS}.get(scheme, {})


def _shm_names_with(stem: str) -> list[str]:
    return sorted(name for name in os.listdir("/dev/shm") if name.startswith(stem))


# POSIX message queues.


def test_mq_connection_names_are_removed_once_both_ends_hold_them(names: Names) -> None:
    url = url_for("mq", names)
    name = url[len("mq:/") :]
    with listen(url) as listener:
        assert posix_mq.exists(name)
        assert _shm_names_with(name[1:]) == [name[1:] + ".listener"]
        server, client = _pair(listener, **SMALL_QUEUES)
        with server, client:
            assert _shm_names_with(name[1:]) == [name[1:] + ".listener"]  # no client tokens
            client.send(b"hello")
            assert server.receive(timeout=WAIT) == b"hello"
    assert not posix_mq.exists(name)
    assert _shm_names_with(name[1:]) == []


def test_mq_connect_refusals(names: Names, cleanup: Callable[..., None]) -> None:
    url = url_for("mq", names)
    with pytest.raises(ResourceNotFoundError):
        connect(url, timeout=WAIT)
    # A queue that no unixipc listener owns.
    queue = PosixMessageQueue.create(url[len("mq:/") :], max_messages=2, max_message_size=64)
    cleanup(queue.close)
    cleanup(queue.unlink)
    with pytest.raises(IPCOSError, match="no unixipc listener"):
        connect(url, timeout=WAIT)


def test_mq_waiting_client_is_refused_when_the_listener_closes(names: Names) -> None:
    url = url_for("mq", names)
    listener = listen(url)
    thread, result = _connect_in_thread(url, **SMALL_QUEUES)
    time.sleep(0.3)  # let the request arrive; the test does not depend on it
    listener.close()
    thread.join(WAIT)
    assert isinstance(result[0], IPCOSError)
    assert "listener" in str(result[0])
    assert _shm_names_with(url[len("mq://") :]) == []


def _listen_forever(url: str, ready: object) -> None:
    listener = listen(url)  # never closed: this process is killed
    ready.set()  # type: ignore[attr-defined]
    time.sleep(WAIT)
    listener.close()


@pytest.mark.parametrize("scheme", ["mq", "sysvmq", "shm"])
def test_waiting_client_gives_up_when_the_listener_dies(
    scheme: str, names: Names, children: Callable[..., Child], cleanup: Callable[..., None]
) -> None:
    import multiprocessing

    url = url_for(scheme, names)
    ready = multiprocessing.get_context("fork").Event()
    child = children(_listen_forever, url, ready)
    assert ready.wait(WAIT)
    if scheme == "mq":  # what the dead listener leaves (kernel persistence)
        name = url[len("mq:/") :]
        cleanup(posix_mq.unlink, name)
        cleanup(posix_shm.unlink, name + ".listener")
    elif scheme == "shm":
        cleanup(posix_shm.unlink, url[len("shm:/") :])
    else:
        key = int(url[len("sysvmq://") :], 16)
        cleanup(unixipc.sysv_mq.unlink, key)
        cleanup(posix_shm.unlink, f"/unixipc-sysvmq-{key:08x}.listener")
    thread, result = _connect_in_thread(url, **_small(scheme))
    time.sleep(0.3)
    started = time.monotonic()
    os.kill(child.pid, signal.SIGKILL)
    thread.join(WAIT)
    assert isinstance(result[0], IPCOSError), result
    assert time.monotonic() - started < 5
    child.kill()


def test_mq_listener_skips_garbage_requests(names: Names) -> None:
    url = url_for("mq", names)
    with listen(url) as listener:
        intruder = PosixMessageQueue.open(url[len("mq:/") :])
        intruder.send(b"not a request")
        intruder.send(struct.pack("!4s16s", b"uxq\x01", b"0123456789abcdef"))  # nobody's token
        intruder.close()
        with pytest.raises(TimeoutExpired):
            listener.accept(timeout=0.3)
        server, client = _pair(listener, **SMALL_QUEUES)
        with server, client:
            client.send(b"real")
            assert server.receive(timeout=WAIT) == b"real"


def test_mq_large_messages_travel_in_pieces(names: Names) -> None:
    with listen(url_for("mq", names), max_message_size=1 << 20) as listener:
        server, client = _pair(listener, max_message_size=1 << 20, **SMALL_QUEUES)
        with server, client:
            for size in (255, 256, 257, 512, 100_000):
                message = os.urandom(size)
                sender = threading.Thread(target=client.send, args=(message,))
                sender.start()
                buffer = bytearray(size)
                assert server.receive_into(buffer, timeout=WAIT) == size
                sender.join(WAIT)
                assert buffer == message


def test_mq_message_over_the_receivers_maximum_is_refused_early(names: Names) -> None:
    with listen(url_for("mq", names), max_message_size=10_000) as listener:
        server, client = _pair(listener, max_message_size=1 << 20, **SMALL_QUEUES)
        with server, client:
            sender = threading.Thread(target=lambda: client.send(bytes(300_000), timeout=0.5))
            sender.start()
            tracemalloc.start()
            try:
                with pytest.raises(MessageTooLarge):
                    server.receive(timeout=WAIT)
                # Pieces were kept only up to the maximum, not the 300 KB announced.
                assert tracemalloc.get_traced_memory()[1] < 100_000
            finally:
                tracemalloc.stop()
            with pytest.raises(MessageTooLarge):  # the channel stays unusable
                server.receive(timeout=0)
            sender.join(WAIT)


def test_mq_send_cut_short_is_completed_not_repeated(names: Names) -> None:
    with listen(url_for("mq", names)) as listener:
        server, client = _pair(listener, **SMALL_QUEUES)
        with server, client:
            big = os.urandom(5000)  # 20 pieces; the queue holds 4
            client.send(big, timeout=0)  # the first pieces went: the rest is committed
            got: list[bytes] = []
            reader = threading.Thread(target=lambda: got.append(server.receive(timeout=WAIT)))
            reader.start()
            with pytest.raises(TimeoutExpired):  # the client sends the rest while it waits
                client.receive(timeout=1.0)
            reader.join(WAIT)
            assert got == [big]
            client.send(b"next")
            assert server.receive(timeout=WAIT) == b"next"


@pytest.mark.parametrize("scheme", ["mq", "sysvmq"])
def test_close_with_a_full_queue_still_gives_end_of_channel(scheme: str, names: Names) -> None:
    with listen(url_for(scheme, names)) as listener:
        server, client = _pair(listener, **(SMALL_QUEUES if scheme == "mq" else {}))
        with server:
            sent = 0
            with client, pytest.raises(WouldBlock):  # noqa: PT012 - no room left for a goodbye
                while True:
                    client.send(b"x" * 100, timeout=0)
                    sent += 1
            for _ in range(sent):
                assert server.receive(timeout=WAIT) == b"x" * 100
            with pytest.raises(EndOfChannel):  # told by the client's token
                server.receive(timeout=WAIT)


def _close_inherited(listener: unixipc.Listener) -> None:
    listener.close()


@pytest.mark.parametrize("scheme", ["unix", "fifo", "mq", "sysvmq", "shm"])
def test_a_forked_child_closing_the_listener_leaves_it_to_the_parent(
    scheme: str, names: Names, children: Callable[..., Child]
) -> None:
    with listen(url_for(scheme, names)) as listener:
        children(_close_inherited, listener).result()
        server, client = _pair(listener, **_small(scheme))
        with server, client:
            client.send(b"still listening")
            assert server.receive(timeout=WAIT) == b"still listening"


# System V message queues.


def test_sysvmq_queue_lives_until_the_listener_and_its_channels_are_closed(
    names: Names,
) -> None:
    url = url_for("sysvmq", names)
    key = int(url[len("sysvmq://") :], 16)
    listener = listen(url)
    server, client = _pair(listener)
    with pytest.raises(ResourceExistsError):
        listen(url)
    listener.close()
    assert unixipc.sysv_mq.exists(key)  # the accepted channel still uses it
    server.send(b"after the listener closed")
    assert client.receive(timeout=WAIT) == b"after the listener closed"
    with pytest.raises(IPCOSError):  # no new connections
        connect(url, timeout=WAIT)
    server.close()
    assert not unixipc.sysv_mq.exists(key)
    with pytest.raises(EndOfChannel):  # the queue is gone; the server's token says closed
        client.receive(timeout=WAIT)
    client.close()
    wait_until(lambda: _shm_names_with(f"unixipc-sysvmq-{key:08x}") == [])


def test_sysvmq_connect_refusals(names: Names, cleanup: Callable[..., None]) -> None:
    url = url_for("sysvmq", names)
    key = int(url[len("sysvmq://") :], 16)
    with pytest.raises(ResourceNotFoundError):
        connect(url, timeout=WAIT)
    queue = SysVMessageQueue.create(key)
    cleanup(queue.close)
    cleanup(queue.unlink)
    with pytest.raises(IPCOSError, match="no unixipc listener"):
        connect(url, timeout=WAIT)
    with pytest.raises(TypeError, match="max_message_size"):
        connect(url, max_message_size=100)  # fixed by the kernel's msgmax


def test_sysvmq_maximum_is_the_kernels_msgmax(names: Names) -> None:
    with open("/proc/sys/kernel/msgmax") as value:
        msgmax = int(value.read())
    with listen(url_for("sysvmq", names)) as listener:
        server, client = _pair(listener)
        with server, client:
            assert client.max_message_size == server.max_message_size == msgmax - 1


# Shared-memory rings.


def test_shm_connection_rings_are_removed_once_both_ends_hold_them(names: Names) -> None:
    url = url_for("shm", names)
    stem = url[len("shm://") :]
    with listen(url) as listener:
        assert _shm_names_with(stem) == [stem]  # the request ring only
        server, client = _pair(listener, **SMALL_RINGS)
        with server, client:
            assert _shm_names_with(stem) == [stem]
            assert client.max_message_size == 64 * 1024 * 1024  # the default; rings split
            client.send(b"through a ring")
            assert server.receive(timeout=WAIT) == b"through a ring"
    assert _shm_names_with(stem) == []


def test_shm_pair_leaves_no_names() -> None:
    before = set(os.listdir("/dev/shm"))
    first, second = unixipc.channel_pair("shm", capacity=4096, max_message_size=10_000)
    with first, second:
        assert {n for n in os.listdir("/dev/shm") if "unixipc-pair" in n} - before == set()
        first.send(b"x" * 2032)
        assert second.receive(timeout=WAIT) == b"x" * 2032
        with pytest.raises(MessageTooLarge):
            first.send(b"x" * 10_001)
        # The receiving ring's doorbell: armed by a receive that would block.
        with pytest.raises(unixipc.WouldBlock):
            second.receive(timeout=0)
        assert select.select([second.fileno()], [], [], 0)[0] == []
        first.send(b"ring")
        assert select.select([second.fileno()], [], [], WAIT)[0] == [second.fileno()]
        assert second.receive(timeout=0) == b"ring"


@pytest.mark.parametrize("into", [False, True])
def test_shm_messages_around_the_ring_record_size_travel_in_pieces(into: bool) -> None:
    first, second = unixipc.channel_pair("shm", capacity=4096, max_message_size=1 << 20)
    piece = 4096 // 2 - 16
    with first, second:
        for size in (piece - 1, piece, piece + 1, 2 * piece, 3 * piece + 5, 100_000):
            message = os.urandom(size)
            sender = threading.Thread(target=first.send, args=(message,))
            sender.start()
            if into:
                buffer = bytearray(size)
                assert second.receive_into(buffer, timeout=WAIT) == size
                received = bytes(buffer)
            else:
                received = second.receive(timeout=WAIT)
            sender.join(WAIT)
            assert received == message, size


def test_shm_small_buffer_keeps_a_message_that_came_in_pieces() -> None:
    first, second = unixipc.channel_pair("shm", capacity=4096)
    message = os.urandom(5000)  # three records, more than the ring holds at once
    with first, second:
        for small, fails_at in ((4500, "the third record"), (100, "the first record")):
            sender = threading.Thread(target=first.send, args=(message,))
            sender.start()
            with pytest.raises(MessageTooLarge):  # fails at `fails_at`: what came is kept
                second.receive_into(bytearray(small), timeout=WAIT)
            buffer = bytearray(6000)
            assert second.receive_into(buffer, timeout=WAIT) == 5000, fails_at
            assert buffer[:5000] == message
            sender.join(WAIT)


def test_shm_message_over_the_receivers_maximum(names: Names) -> None:
    with listen(url_for("shm", names), max_message_size=3000) as listener:
        server, client = _pair(listener, capacity=4096, max_message_size=1 << 20)
        with server, client:
            sender = threading.Thread(target=lambda: client.send(bytes(10_000), timeout=0.5))
            sender.start()
            with pytest.raises(MessageTooLarge):
                server.receive(timeout=WAIT)
            with pytest.raises(MessageTooLarge):  # the channel stays unusable
                server.receive(timeout=0)
            sender.join(WAIT)


def test_shm_send_cut_short_is_completed_not_repeated() -> None:
    first, second = unixipc.channel_pair("shm", capacity=4096)
    with first, second:
        big = os.urandom(20_000)  # ten records; the ring holds two at a time
        first.send(big, timeout=0)  # the first pieces went: the rest is committed
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(second.receive(timeout=WAIT)))
        reader.start()
        with pytest.raises(TimeoutExpired):  # the sender sends the rest while it waits
            first.receive(timeout=1.0)
        reader.join(WAIT)
        assert got == [big]
        first.send(b"next")
        assert second.receive(timeout=WAIT) == b"next"


def test_shm_connect_refusals(names: Names, cleanup: Callable[..., None]) -> None:
    url = url_for("shm", names)
    with pytest.raises(ResourceNotFoundError):
        connect(url, timeout=WAIT)
    orphan = unixipc.Ring.create(url[len("shm:/") :], 4096)  # a ring nobody listens on
    cleanup(orphan.close)
    cleanup(orphan.unlink)
    with pytest.raises(IPCOSError, match="no listener"):
        connect(url, timeout=WAIT)
    with pytest.raises(TypeError, match="max_message_size"):
        connect(url, colour="red")


def test_shm_waiting_client_is_refused_when_the_listener_closes(names: Names) -> None:
    url = url_for("shm", names)
    listener = listen(url)
    thread, result = _connect_in_thread(url, **SMALL_RINGS)
    time.sleep(0.3)
    listener.close()
    thread.join(WAIT)
    assert isinstance(result[0], IPCOSError)
    assert _shm_names_with(url[len("shm://") :]) == []
