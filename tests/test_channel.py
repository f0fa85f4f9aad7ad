"""Channels: URLs and options, untrusted peers, pairs across fork/spawn, stream details."""

from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import unixipc
from tests.channel_support import WAIT, Endpoint, url_for
from tests.conftest import Names
from tests.helpers import Child, compile_c, fd_count, run_python
from unixipc import (
    EndOfChannel,
    IPCError,
    IPCOSError,
    MessageTooLarge,
    PeerDied,
    ResourceExistsError,
    ResourceNotFoundError,
    TimeoutExpired,
    WouldBlock,
    channel_pair,
    connect,
    listen,
)
from unixipc.channel import parse_url

# URLs and options.


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("unix:///tmp/app.sock", ("unix", "/tmp/app.sock")),
        ("unix://relative.sock", ("unix", "relative.sock")),
        ("unix-abstract://app", ("unix-abstract", "app")),
        ("tcp://127.0.0.1:5000", ("tcp", ("127.0.0.1", 5000))),
        ("tcp://[::1]:80", ("tcp", ("::1", 80))),
        ("tcp://localhost:0", ("tcp", ("localhost", 0))),
        ("fifo:///tmp/requests", ("fifo", "/tmp/requests")),
        ("mq:///jobs", ("mq", "/jobs")),
        ("mq://jobs", ("mq", "/jobs")),
        ("shm://ring", ("shm", "/ring")),
        ("sysvmq://0x1234", ("sysvmq", 0x1234)),
        ("sysvmq://4660", ("sysvmq", 4660)),
    ],
)
def test_urls_are_parsed(url: str, expected: tuple[str, object]) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "unix",
        "unix:/tmp/x",
        "http://example.com",
        "pipe:",
        "socketpair:",
        "unix://",
        "unix:///" + "x" * 200,
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:http",
        "tcp://127.0.0.1:70000",
        "tcp://::1:80",
        "tcp://[nonsense]:80",
        "mq:///a/b",
        "sysvmq://0",
        "sysvmq://key",
        "sysvmq://0x100000000",
        "unix-abstract://a\0b",
    ],
)
def test_bad_urls_raise_value_error_before_any_system_call(url: str) -> None:
    before = fd_count()
    with pytest.raises(ValueError, match=r"url|address|port|key|IPv6|name|path|channel_pair"):
        listen(url)
    with pytest.raises(ValueError, match=r"url|address|port|key|IPv6|name|path|channel_pair"):
        connect(url, timeout=0)
    assert fd_count() == before


def test_url_must_be_a_str() -> None:
    with pytest.raises(TypeError):
        listen(b"unix:///tmp/x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_url(None)  # type: ignore[arg-type]


def test_unknown_and_bad_options_are_refused(names: Names) -> None:
    url = url_for("unix", names)
    with pytest.raises(TypeError, match="colour"):
        listen(url, colour="red")
    with pytest.raises(TypeError, match="permissions"):
        connect(url, permissions=0o600)  # a client makes no file
    with pytest.raises(TypeError, match="capacity"):
        channel_pair("pipe", capacity=4096)
    with pytest.raises(ValueError, match="max_message_size"):
        channel_pair("socketpair", max_message_size=0)
    with pytest.raises(ValueError, match="max_message_size"):
        channel_pair("pipe", max_message_size=2**32)
    with pytest.raises(TypeError, match="max_message_size"):
        listen(url, max_message_size="big")
    with pytest.raises(ValueError, match="kind"):
        channel_pair("carrier pigeon")
    assert not os.path.exists(url[len("unix://") :])


def test_tcp_listener_reports_the_port_it_bound() -> None:
    with listen("tcp://127.0.0.1:0") as listener:
        host, port = parse_url(listener.url)[1]
        assert host == "127.0.0.1"
        assert port > 0
        with connect(listener.url, timeout=WAIT) as client, listener.accept(timeout=WAIT) as server:
            client.send(b"over tcp")
            assert server.receive(timeout=WAIT) == b"over tcp"


def test_connecting_to_nothing(names: Names) -> None:
    with pytest.raises(ResourceNotFoundError):
        connect(url_for("unix", names), timeout=WAIT)
    with pytest.raises(ResourceNotFoundError):
        connect(url_for("fifo", names), timeout=WAIT)
    with pytest.raises(IPCOSError) as refused:
        connect(url_for("unix-abstract", names), timeout=WAIT)
    assert refused.value.errno == errno.ECONNREFUSED
    # A TCP port nobody listens on: take one, then free it.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(IPCOSError) as refused:
        connect(f"tcp://127.0.0.1:{port}", timeout=WAIT)
    assert refused.value.errno == errno.ECONNREFUSED


# UNIX socket and FIFO listeners own their names.


@pytest.mark.parametrize("scheme", ["unix", "fifo"])
def test_listener_names_are_exclusive_and_removed_on_close(scheme: str, names: Names) -> None:
    url = url_for(scheme, names)
    path = url.split("://", 1)[1]
    listener = listen(url, permissions=0o640)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        with pytest.raises(ResourceExistsError):
            listen(url)
    finally:
        listener.close()
    assert not os.path.exists(path)


def test_fifo_connections_leave_no_names_behind(names: Names) -> None:
    url = url_for("fifo", names)
    directory = os.path.dirname(url[len("fifo://") :])
    with listen(url) as listener:
        clients = []
        for _ in range(3):
            connected: list[unixipc.Channel] = []
            thread = threading.Thread(target=lambda out=connected: out.append(connect(url)))
            thread.start()
            server = listener.accept(timeout=WAIT)
            thread.join(WAIT)
            clients.append((connected[0], server))
        assert os.listdir(directory) == [os.path.basename(url)]  # only the listener's FIFO
        for client, server in clients:
            client.send(b"hi")
            assert server.receive(timeout=WAIT) == b"hi"
            client.close()
            server.close()
    assert os.listdir(directory) == []


def _connect_and_report(url: str) -> str:
    try:
        connect(url, timeout=WAIT)
    except IPCOSError as error:
        return f"refused {error.errno}"
    return "connected"


def test_fifo_client_is_refused_when_the_listener_closes_before_accepting(
    names: Names, children: Callable[..., Child]
) -> None:
    url = url_for("fifo", names)
    listener = listen(url)
    child = children(_connect_and_report, url)
    time.sleep(0.3)  # let the request arrive; the test does not depend on it
    listener.close()
    assert child.result() == f"refused {errno.ECONNREFUSED}"
    directory = os.path.dirname(url[len("fifo://") :])
    assert os.listdir(directory) == []  # the client removed its FIFOs


def test_fifo_listener_skips_garbage_in_its_fifo(names: Names) -> None:
    url = url_for("fifo", names)
    path = url[len("fifo://") :]
    with listen(url) as listener:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"\xff" * 100 + b"uxf\x01\x00\x05../..")  # noise, then a bogus request
        os.write(fd, struct.pack("!4sH", b"uxf\x01", 8) + b"deadbeef")  # names no FIFO
        os.close(fd)
        with pytest.raises(TimeoutExpired):
            listener.accept(timeout=0.3)
        result: list[unixipc.Channel] = []
        thread = threading.Thread(target=lambda: result.append(connect(url, timeout=WAIT)))
        thread.start()
        with listener.accept(timeout=WAIT) as server:
            thread.join(WAIT)
            with result[0] as client:
                client.send(b"real client")
                assert server.receive(timeout=WAIT) == b"real client"


# Untrusted bytes on sockets: the one channel fails, the listener carries on.


def _raw_client(listener: unixipc.Listener) -> socket.socket:
    scheme, address = parse_url(listener.url)
    if scheme == "tcp":
        return socket.create_connection(address, timeout=WAIT)
    raw = socket.socket(socket.AF_UNIX)
    raw.settimeout(WAIT)
    raw.connect(address if scheme == "unix" else "\0" + address)
    return raw


HELLO = struct.pack("!I", 0xFFFFFFFE) + b"uxc\x01"


@pytest.mark.parametrize("scheme", ["unix", "unix-abstract", "tcp"])
def test_garbage_fails_only_its_own_channel(scheme: str, names: Names) -> None:
    with listen(url_for(scheme, names), max_message_size=1 << 20) as listener:
        cases = {
            "not unixipc": b"GET / HTTP/1.0\r\n\r\n",
            "oversize frame": HELLO + struct.pack("!I", 0xFFFFFFF0),
            "half a greeting": HELLO[:6],
        }
        raws = []
        for garbage in cases.values():
            raw = _raw_client(listener)
            raw.sendall(garbage)
            raws.append(raw)
        tracemalloc.start()
        try:
            for name, raw in zip(cases, raws, strict=True):
                with listener.accept(timeout=WAIT) as server:
                    if name == "half a greeting":
                        with pytest.raises(TimeoutExpired):
                            server.receive(timeout=0.2)
                        raw.close()
                        with pytest.raises(PeerDied):
                            server.receive(timeout=WAIT)
                        continue
                    error_type = MessageTooLarge if name == "oversize frame" else IPCError
                    with pytest.raises(error_type):
                        server.receive(timeout=WAIT)
                    with pytest.raises(error_type):  # the channel stays unusable
                        server.receive(timeout=0)
            # Nothing was allocated for the 4 GB the oversize frame announced.
            assert tracemalloc.get_traced_memory()[1] < 1 << 20
        finally:
            tracemalloc.stop()
            for raw in raws:
                raw.close()
        # The listener still serves real clients.
        with connect(listener.url, timeout=WAIT) as client, listener.accept(timeout=WAIT) as server:
            client.send(b"still serving")
            assert server.receive(timeout=WAIT) == b"still serving"


def test_a_peer_over_our_maximum_is_refused_before_allocation() -> None:
    big_end, small_end = channel_pair("socketpair", max_message_size=1 << 20)
    small_end.max_message_size = 1000  # as if the peer had been made with a smaller limit
    small_end._refresh()  # type: ignore[attr-defined]
    with big_end, small_end:
        big_end.send(bytes(2000))
        with pytest.raises(MessageTooLarge, match="2000"):
            small_end.receive(timeout=WAIT)
        with pytest.raises(MessageTooLarge):
            small_end.receive(timeout=WAIT)


# Pairs across fork and multiprocessing.


@pytest.mark.parametrize("kind", ["pipe", "shm"])
def test_pair_across_a_plain_fork_with_unused_ends_closed(kind: str) -> None:
    parent_end, child_end = channel_pair(kind)
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            parent_end.close()  # the idiom: close what you do not use (silently)
            with child_end:
                child_end.send(child_end.receive(timeout=WAIT) * 2)
            code = 0
        finally:
            os._exit(code)
    child_end.close()
    with parent_end:
        parent_end.send(b"ab")
        assert parent_end.receive(timeout=WAIT) == b"abab"
        with pytest.raises(EndOfChannel):
            parent_end.receive(timeout=WAIT)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _bystander(*channels: unixipc.Channel) -> None:
    """A forked child that inherited channels it does not use, and closes them."""
    for channel in channels:
        channel.close()


@pytest.mark.parametrize("kind", ["pipe", "socketpair", "shm"])
def test_a_child_closing_inherited_copies_does_not_end_the_conversation(
    kind: str, children: Callable[..., Child]
) -> None:
    first, second = channel_pair(kind)
    with first, second:
        first.send(b"before")
        children(_bystander, first, second).result()
        first.send(b"after")
        assert second.receive(timeout=WAIT) == b"before"
        assert second.receive(timeout=WAIT) == b"after"
        with pytest.raises(WouldBlock):
            second.receive(timeout=0)


def _pass_back(channel: unixipc.Channel) -> bytes:
    with channel:
        message = channel.receive(timeout=WAIT)
        channel.send(message[::-1])
        return message


@pytest.mark.parametrize("kind", ["pipe", "socketpair", "shm"])
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_pair_end_passed_to_a_multiprocessing_child(
    kind: str, method: str, children: Callable[..., Child]
) -> None:
    ours, theirs = channel_pair(kind)
    child = children(_pass_back, theirs, method=method)
    theirs.close()
    with ours:
        ours.send(b"abc")
        assert ours.receive(timeout=WAIT) == b"cba"
        assert child.result() == b"abc"
        with pytest.raises(EndOfChannel):
            ours.receive(timeout=WAIT)


def test_plain_pickle_refuses_a_channel() -> None:
    first, second = channel_pair("socketpair")
    with first, second, pytest.raises(TypeError, match="pickle"):
        pickle.dumps(first)


def test_a_channel_with_buffered_messages_cannot_be_passed() -> None:
    first, second = channel_pair("pipe")
    with first, second:
        first.send(b"one")
        first.send(b"two")
        assert second.receive(timeout=WAIT) == b"one"  # "two" is read ahead
        context = multiprocessing.get_context("spawn")
        with pytest.raises(ValueError, match="buffered"):
            context.Process(target=print, args=(second,)).start()


# Stream details: the goodbye always fits, committed tails, direct reads, SIGPIPE.


@pytest.mark.parametrize("kind", ["pipe", "socketpair"])
def test_goodbye_is_delivered_even_when_the_buffer_is_full(kind: str) -> None:
    sender, receiver = channel_pair(kind)
    with receiver:
        count = 0
        with sender, pytest.raises(WouldBlock):  # noqa: PT012
            while True:
                sender.send(b"m" * 1000, timeout=0)
                count += 1
        for _ in range(count):
            assert receiver.receive(timeout=WAIT) == b"m" * 1000
        with pytest.raises(EndOfChannel):
            receiver.receive(timeout=WAIT)


def test_a_send_cut_short_is_completed_not_repeated() -> None:
    sender, receiver = channel_pair("pipe")  # a pipe holds 64 KiB
    big = os.urandom(300_000)
    with sender, receiver:
        sender.send(big, timeout=0)  # part went out: the rest is committed, not lost
        with pytest.raises(TimeoutExpired):  # the receiver waits for the rest...
            receiver.receive_into(bytearray(len(big)), timeout=0.2)
        got: list[bytes] = []
        thread = threading.Thread(target=lambda: got.append(receiver.receive(timeout=WAIT)))
        thread.start()
        with pytest.raises(TimeoutExpired):  # ...which the sender writes while it waits
            sender.receive(timeout=1.0)
        thread.join(WAIT)
        assert got == [big]
        sender.send(b"next")
        assert receiver.receive(timeout=WAIT) == b"next"


class _Interrupted(Exception):
    pass


def _interrupt(signum: int, frame: object) -> None:
    raise _Interrupted


@pytest.mark.parametrize("kind", ["pipe", "socketpair"])
def test_a_blocking_send_interrupted_midway_keeps_the_frame_whole(kind: str) -> None:
    # Nobody reads, so the send of a message larger than the buffer blocks after a
    # part went out; a signal handler raising (as Ctrl-C does) must not tear it.
    sender, receiver = channel_pair(kind)
    big = os.urandom(4 * 1024 * 1024)
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        with sender, receiver:
            signal.setitimer(signal.ITIMER_REAL, 1.0)  # by then the send waits for room
            with pytest.raises(_Interrupted):
                sender.send(big)
            got: list[bytes] = []

            def drain() -> None:
                got.extend(receiver.receive(timeout=WAIT) for _ in range(2))

            thread = threading.Thread(target=drain)
            thread.start()
            sender.send(b"next", timeout=WAIT)  # writes the kept tail first
            thread.join(WAIT)
            assert got == [big, b"next"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_sigpipe_default_action_never_kills_a_sender() -> None:
    code = """
import os, signal, unixipc
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
for kind in ("pipe", "socketpair"):
    a, b = unixipc.channel_pair(kind)
    if os.fork() == 0:  # after a fork the ends are silent until used: b closes silently
        os._exit(0)
    os.wait()
    with a:
        b.close()
        try:
            a.send(b"x")
        except unixipc.PeerDied:
            print(kind, "PeerDied")
"""
    result = run_python(code)
    assert result.stdout.split("\n")[:2] == ["pipe PeerDied", "socketpair PeerDied"]


@pytest.mark.parametrize("scheme", ["pair-pipe", "pair-socketpair", "unix", "fifo"])
def test_fileno_works_with_selectors(
    scheme: str,
    names: Names,
    cleanup: Callable[..., None],
    children: Callable[..., Child],
) -> None:
    endpoint = Endpoint(scheme, names, cleanup, children)
    pairs = [endpoint.connect_here() for _ in range(3)]
    for ours, _ in pairs:
        with pytest.raises(WouldBlock):  # a socket peer's greeting may wake a selector once
            ours.receive(timeout=0)
    with selectors.DefaultSelector() as selector:
        for index, (ours, _) in enumerate(pairs):
            selector.register(ours.fileno(), selectors.EVENT_READ, index)
        assert selector.select(timeout=0) == []
        pairs[1][1].send(b"to one")
        ready = selector.select(timeout=WAIT)
        assert [key.data for key, _ in ready] == [1]
        assert pairs[1][0].receive(timeout=0) == b"to one"


C_CLIENT = r"""
/* A C peer of a unix:// channel: greeting, one frame each way, goodbye. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int read_all(int fd, void *buffer, size_t size) {
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, (char *)buffer + got, size - got);
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

static int send_frame(int fd, uint32_t length, const void *payload, size_t size) {
    uint32_t header = htonl(length);
    if (write(fd, &header, 4) != 4) return -1;
    return size && write(fd, payload, size) != (ssize_t)size ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, argv[1], sizeof address.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) return 3;
    if (send_frame(fd, 0xFFFFFFFEu, "uxc\x01", 4) != 0) return 4;       /* greeting */
    const char *text = "hello from C";
    if (send_frame(fd, (uint32_t)strlen(text), text, strlen(text)) != 0) return 5;
    unsigned char greeting[8];
    if (read_all(fd, greeting, 8) != 0 || memcmp(greeting + 4, "uxc\x01", 4) != 0) return 6;
    uint32_t length;
    char reply[256];
    if (read_all(fd, &length, 4) != 0) return 7;
    length = ntohl(length);
    if (length >= sizeof reply || read_all(fd, reply, length) != 0) return 8;
    reply[length] = 0;
    printf("%s\n", reply);
    if (send_frame(fd, 0xFFFFFFFFu, NULL, 0) != 0) return 9;             /* goodbye */
    close(fd);
    return 0;
}
"""


def test_a_c_peer_speaks_the_unix_channel_framing(names: Names, tmp_path: Path) -> None:
    binary = compile_c(C_CLIENT, tmp_path, "channel_client")
    url = url_for("unix", names)
    with listen(url) as listener:
        client = subprocess.Popen(
            [str(binary), url[len("unix://") :]], stdout=subprocess.PIPE, text=True
        )
        try:
            with listener.accept(timeout=WAIT) as server:
                assert server.receive(timeout=WAIT) == b"hello from C"
                server.send(b"hello from Python")
                with pytest.raises(EndOfChannel):  # the C peer said goodbye
                    server.receive(timeout=WAIT)
            output, _ = client.communicate(timeout=WAIT)
        finally:
            client.kill()
            client.wait()
    assert client.returncode == 0
    assert output == "hello from Python\n"


# Bounded memory (issue 14, item 3): a declared length costs nothing until its bytes come.


def _serve_one_pending_frame(url: str, ready: Any) -> tuple[int, int]:
    """Accept one client and wait for its frame; return (tracemalloc peak, RSS growth)."""
    with listen(url) as listener:
        ready.set()
        tracemalloc.start()
        rss_before = _rss()
        with listener.accept(timeout=WAIT) as server:
            with pytest.raises(TimeoutExpired):  # 3 of its 64 MiB are there
                server.receive(timeout=1.0)
            peak = tracemalloc.get_traced_memory()[1]
            return peak, _rss() - rss_before


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_a_declared_64_mib_frame_costs_the_server_less_than_1_mib(
    names: Names, children: Callable[..., Child]
) -> None:
    url = url_for("unix", names)
    ready = multiprocessing.get_context("fork").Event()
    server = children(_serve_one_pending_frame, url, ready)
    assert ready.wait(WAIT)
    raw = socket.socket(socket.AF_UNIX)
    raw.settimeout(WAIT)
    try:
        raw.connect(url[len("unix://") :])
        raw.sendall(HELLO + struct.pack("!I", 64 * 1024 * 1024 - 1) + b"abc")
        peak, rss_growth = server.result()
    finally:
        raw.close()
    assert peak < 1 << 20, f"the server allocated {peak} bytes for 3"
    assert rss_growth < 1 << 20, f"the server's RSS grew by {rss_growth} bytes"


def test_a_large_frame_arriving_slowly_is_received_whole() -> None:
    sender, receiver = channel_pair("socketpair", max_message_size=16 << 20)
    message = os.urandom(12 << 20)
    frame = struct.pack("!I", len(message)) + message
    raw = socket.socket(fileno=os.dup(sender.fileno()))

    def trickle() -> None:
        for start in range(0, len(frame), 1 << 20):
            raw.sendall(frame[start : start + (1 << 20)])
            time.sleep(0.01)

    with sender, receiver:
        thread = threading.Thread(target=trickle)
        thread.start()
        try:
            assert receiver.receive(timeout=WAIT) == message
        finally:
            thread.join(WAIT)
            raw.close()


# Closing in one process, and Ctrl-C.


@pytest.mark.parametrize("kind", ["pipe", "socketpair", "shm"])
def test_a_pair_end_closed_in_its_own_process_gives_end_of_channel(kind: str) -> None:
    first, second = channel_pair(kind)  # type: ignore[call-overload]
    first.close()  # never used, never forked: a clean close, not a death
    with second, pytest.raises(EndOfChannel):
        second.receive(timeout=WAIT)


INTERRUPTED = """
import sys, threading, unixipc
url, verb = sys.argv[1], sys.argv[2]
with unixipc.listen(url) as listener:
    ends = []
    thread = threading.Thread(target=lambda: ends.append(unixipc.connect(url, timeout=30)))
    thread.start()
    server = listener.accept(timeout=30)
    thread.join()
    print("ready", flush=True)
    if verb == "send":  # nobody reads: the send waits for room
        ends[0].send(bytes(8 << 20), timeout=60)
    else:
        server.receive(timeout=60)
"""


@pytest.mark.parametrize("scheme", ["fifo", "unix"])
@pytest.mark.parametrize("verb", ["send", "receive"])
def test_ctrl_c_in_a_stream_channel_is_a_clean_keyboard_interrupt(
    scheme: str, verb: str, names: Names
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, url_for(scheme, names), verb],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        time.sleep(0.3)  # let it reach its wait
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=WAIT)
    finally:
        process.kill()
        process.wait()
    assert errors.rstrip().endswith("KeyboardInterrupt"), errors
    assert "During handling" not in errors, errors
    assert "direct cause" not in errors, errors


# Options are typed: a misspelt option or kind is a type error.

TYPED = """
import unixipc
unixipc.connect("unix:///tmp/x", tiemout=3)
unixipc.channel_pair("pip")
unixipc.channel_pair("pipe", capacity=4096)
unixipc.listen("unix:///tmp/x", permissions=0o600, backlog=3)
unixipc.channel_pair("shm", capacity=4096)
"""


def test_misspelt_options_and_kinds_are_type_errors(tmp_path: Path) -> None:
    source = tmp_path / "typed.py"
    source.write_text(TYPED)
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-error-summary",
            "--cache-dir",
            str(root / ".mypy_cache"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    lines = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert [int(line.split(":")[1]) for line in lines] == [3, 4, 5], result.stdout
    assert '"tiemout"' in lines[0]


def test_the_option_types_name_exactly_the_options_the_drivers_declare() -> None:
    from unixipc.channel import ConnectOptions, ListenOptions, PairOptions
    from unixipc.channels import registry

    schemes = registry.SCHEMES.values()
    assert ListenOptions.__optional_keys__ == {n for s in schemes for n in s.listen_options}
    assert ConnectOptions.__optional_keys__ == {n for s in schemes for n in s.connect_options}
    kinds = registry.PAIRS.values()
    assert PairOptions.__optional_keys__ == {n for k in kinds for n in k.options}
