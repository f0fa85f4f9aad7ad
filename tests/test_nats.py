"""nats:// beyond the channel suites: real nats-server processes, clusters, failures.

The conformance, close, fork and asyncio suites run over ``nats://`` with the
rest (their URL comes from ``channel_support.url_for``). Here: the URL, what a
missing nats-py says, refusals, a slow consumer (the sender waits, nothing is
dropped), messages larger than the server's ``max_payload``, a hostile client,
credentials, and a three-server cluster losing a server in the middle of a
stream (every message arrives once and in order, or the channel says PeerDied).
"""

from __future__ import annotations

import asyncio
import errno
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import unixipc
from tests import nats_support
from tests.channel_support import WAIT
from tests.conftest import Names
from tests.helpers import run_python
from unixipc import (
    Channel,
    EndOfChannel,
    IPCError,
    IPCOSError,
    Listener,
    PeerDied,
    PermissionDeniedError,
    WouldBlock,
)
from unixipc.channel import DEFAULT_MAX_MESSAGE_SIZE, parse_url


@pytest.fixture
def server() -> Iterator[nats_support.NatsServer]:
    with nats_support.NatsServer(config="max_payload: 4096") as started:
        yield started


def _pair(url: str, cleanup: Callable[..., None], **options: object) -> tuple[Channel, Channel]:
    listener = unixipc.listen(url, **options)  # type: ignore[arg-type]
    cleanup(listener.close)
    return _connect(listener, cleanup, **options)


def _connect(
    listener: Listener, cleanup: Callable[..., None], **options: object
) -> tuple[Channel, Channel]:
    client = unixipc.connect(listener.url, timeout=WAIT, **options)  # type: ignore[arg-type]
    cleanup(client.close)
    server_end = listener.accept(timeout=WAIT)
    cleanup(server_end.close)
    return client, server_end


def test_url_parsing() -> None:
    assert parse_url("nats://127.0.0.1:4222/jobs.in")[0] == "nats"
    address = parse_url("nats://alice:s%40cret@a:1,b/x")[1]
    assert address.server.urls == ("nats://a:1", "nats://b:4222")
    assert (address.server.user, address.server.password) == ("alice", "s@cret")
    assert address.subject == "x"
    assert parse_url("nats://tok@[::1]:4222/x")[1].server.token == "tok"
    for bad in (
        "nats://127.0.0.1:4222",
        "nats://127.0.0.1:4222/",
        "nats://127.0.0.1:4222/a.*",
        "nats://127.0.0.1:4222/a..b",
        "nats://127.0.0.1:4222/a b",
        "nats://127.0.0.1:99999/a",
    ):
        with pytest.raises(ValueError, match="nats://"):
            parse_url(bad)
    with pytest.raises(TypeError, match="heartbeat"):
        unixipc.listen("nats://127.0.0.1:1/x", heartbeat="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue"):
        unixipc.listen("nats://127.0.0.1:1/x", queue="a b")


def test_without_nats_py_the_scheme_names_the_extra() -> None:
    code = """
import sys
sys.modules["nats"] = None  # as if nats-py were not installed
import unixipc
try:
    unixipc.connect("nats://127.0.0.1:4222/x", timeout=1)
except unixipc.UnsupportedFeature as error:
    print(error)
"""
    assert "pip install 'unixipc[nats]'" in run_python(code).stdout


def test_refusals(server: nats_support.NatsServer, names: Names) -> None:
    # Nobody on the subject: the server's "no responders" refuses at once.
    started = time.monotonic()
    with pytest.raises(IPCOSError) as refused:
        unixipc.connect(server.url(names.posix("n")[1:]), timeout=WAIT)
    assert refused.value.errno == errno.ECONNREFUSED
    assert "nobody listens" in str(refused.value)
    assert time.monotonic() - started < WAIT / 2
    # No server at all.
    dead = nats_support.NatsServer()
    address = dead.address
    dead.stop()
    with pytest.raises(IPCOSError) as no_server:
        unixipc.connect(f"nats://{address}/x", timeout=WAIT)
    assert no_server.value.errno == errno.ECONNREFUSED


def test_large_messages_travel_in_pieces(
    server: nats_support.NatsServer, names: Names, cleanup: Callable[..., None]
) -> None:
    client, server_end = _pair(server.url(names.posix("n")[1:]), cleanup)
    assert client.max_message_size == DEFAULT_MAX_MESSAGE_SIZE
    for size in (0, 4000, 4096, 50_000, 3_000_000):  # the server's max_payload is 4096
        message = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        client.send(message, timeout=WAIT)
        assert server_end.receive(timeout=WAIT) == message


def test_a_slow_consumer_makes_the_sender_wait_and_loses_nothing(
    server: nats_support.NatsServer, names: Names, cleanup: Callable[..., None]
) -> None:
    client, server_end = _pair(server.url(names.posix("n")[1:]), cleanup, window=64 * 1024)
    count = 2000
    sent: list[int] = []
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            for index in range(count):
                client.send(b"%06d" % index + bytes(1000), timeout=WAIT)
                sent.append(index)
        except BaseException as error:
            failed.append(error)

    producer = threading.Thread(target=produce)
    producer.start()
    cleanup(producer.join, WAIT)
    time.sleep(1.0)  # read nothing: the sender must stop at the window (64 KiB)
    assert 0 < len(sent) < 100
    for index in range(count):
        assert server_end.receive(timeout=WAIT)[:6] == b"%06d" % index
    producer.join(WAIT)
    assert (len(sent), failed) == (count, [])
    with pytest.raises(WouldBlock):  # nothing more, nothing twice
        server_end.receive(timeout=0)


def test_garbage_ends_one_channel_only(
    server: nats_support.NatsServer, names: Names, cleanup: Callable[..., None]
) -> None:
    url = server.url(names.posix("n")[1:])
    listener = unixipc.listen(url)
    cleanup(listener.close)
    client, server_end = _connect(listener, cleanup)

    async def hostile() -> None:
        import nats

        connection = await nats.connect(f"nats://{server.address}")
        subject = url.rsplit("/", 1)[1]
        await connection.publish(subject, b"not a hello", reply="_INBOX.x")
        await connection.publish(subject, b"uxn\x01" + bytes(3), reply="_INBOX.y")
        await connection.publish(client._link._inbox, b"\x01garbage")  # type: ignore[attr-defined]
        await connection.flush()
        await connection.close()

    asyncio.run(hostile())
    with pytest.raises(IPCError, match=r"shorter than a header|unusable"):
        client.receive(timeout=WAIT)
    # The listener and the other end are unharmed.
    other, other_end = _connect(listener, cleanup)
    other.send(b"fine", timeout=WAIT)
    assert other_end.receive(timeout=WAIT) == b"fine"
    server_end.send(b"still here", timeout=WAIT)  # its peer is broken, not it


def test_credentials(names: Names, cleanup: Callable[..., None]) -> None:
    with nats_support.NatsServer(
        config='authorization { user: "alice", password: "s3cret" }'
    ) as server:
        subject = names.posix("n")[1:]
        client, server_end = _pair(server.url(subject, userinfo="alice:s3cret"), cleanup)
        client.send(b"authenticated", timeout=WAIT)
        assert server_end.receive(timeout=WAIT) == b"authenticated"
        with pytest.raises(PermissionDeniedError):
            unixipc.connect(server.url(subject, userinfo="alice:wrong"), timeout=WAIT)
    with nats_support.NatsServer(config='authorization { token: "t0ken" }') as server:
        client, server_end = _pair(server.url(names.posix("n")[1:], userinfo="t0ken"), cleanup)
        client.send(b"token", timeout=WAIT)
        assert server_end.receive(timeout=WAIT) == b"token"


@pytest.fixture
def three_servers() -> Iterator[list[nats_support.NatsServer]]:
    servers = nats_support.cluster(3)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("killed", ["client's server", "listener's server"])
def test_a_server_killed_mid_stream_loses_and_repeats_nothing(
    three_servers: list[nats_support.NatsServer],
    names: Names,
    cleanup: Callable[..., None],
    killed: str,
) -> None:
    first, second, _ = three_servers
    subject = names.posix("n")[1:]
    # A small window: the stream is really on the way (not all buffered) when the server goes.
    options = {"heartbeat": 1.0, "window": 4096}
    listener = unixipc.listen(first.url(subject), **options)
    cleanup(listener.close)
    # The listener's interest reaches the other servers a moment later (routes).
    client = _connect_when_there(second.url(subject), **options)
    cleanup(client.close)
    accepted = listener.accept(timeout=WAIT)
    cleanup(accepted.close)
    count = 3000
    outcome: list[BaseException] = []
    sent = [0]

    def produce() -> None:
        try:
            for index in range(count):
                client.send(b"%06d" % index, timeout=WAIT)
                sent[0] += 1
            client.send(b"done", timeout=WAIT)
        except PeerDied as error:
            outcome.append(error)

    producer = threading.Thread(target=produce)
    producer.start()
    received: list[bytes] = []
    try:
        while True:
            message = accepted.receive(timeout=WAIT)
            if message == b"done":
                break
            received.append(message)
            if len(received) == count // 3:
                (second if killed == "client's server" else first).kill()
                sent_at_kill = sent[0]
    except PeerDied as error:
        outcome.append(error)
    producer.join(WAIT)
    # In order, none twice: everything, or a prefix and PeerDied.
    assert received == [b"%06d" % index for index in range(len(received))]
    if outcome:
        pytest.fail(f"PeerDied after {len(received)} of {count}: {outcome[0]}")
    assert len(received) == count
    assert sent_at_kill < count - 100  # the server went in the middle of the stream


def _connect_when_there(url: str, **options: Any) -> Channel:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return unixipc.connect(url, timeout=WAIT, **options)
        except OSError as error:  # not listening yet (or not known there yet)
            if time.monotonic() > deadline or error.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                raise
            time.sleep(0.05)


def test_bridge_joins_shared_memory_to_nats(names: Names, cleanup: Callable[..., None]) -> None:
    import json
    import subprocess
    import sys

    nats_url = nats_support.shared_server().url(names.posix("n")[1:])
    shm_url = f"shm://{names.posix('bridge')[1:]}"
    service = unixipc.listen(nats_url)
    cleanup(service.close)
    bridge = subprocess.Popen(
        [sys.executable, "-m", "unixipc", "bridge", shm_url, nats_url, "--clients", "1", "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    cleanup(bridge.kill)
    local = _connect_when_there(shm_url)
    cleanup(local.close)
    remote = service.accept(timeout=WAIT)
    cleanup(remote.close)
    messages = [b"one", b"", bytes(100_000)]
    for message in messages:
        local.send(message, timeout=WAIT)
        remote.send(remote.receive(timeout=WAIT).upper(), timeout=WAIT)
        assert local.receive(timeout=WAIT) == message.upper()
    local.close()  # passed on: the service sees the end after every message
    with pytest.raises(EndOfChannel):
        remote.receive(timeout=WAIT)
    output, _ = bridge.communicate(timeout=WAIT)
    assert bridge.returncode == 0
    report = json.loads(output.splitlines()[-1])
    assert report["clients"] == 1
    assert report["src_to_dst"] == {"messages": 3, "bytes": 100_003}
    assert report["dst_to_src"] == {"messages": 3, "bytes": 100_003}


def _rpc_server(url: str, ready: Any, stop: Any) -> int:
    """An RPC server in the queue group "calc" on ``url``; returns how many calls it served."""
    import os

    from unixipc import rpc

    served = [0]
    server = rpc.Server(url, queue="calc")

    @server.function
    def whoami() -> int:
        served[0] += 1
        return os.getpid()

    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    ready.set()
    stop.wait(WAIT)
    server.close()
    thread.join(WAIT)
    return served[0]


def test_rpc_servers_in_a_queue_group_share_the_clients(
    names: Names, children: Callable[..., Any]
) -> None:
    import multiprocessing

    from unixipc import rpc

    url = nats_support.shared_server().url(names.posix("rpc")[1:])
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    servers = []
    for _ in range(2):
        ready = context.Event()
        servers.append(children(_rpc_server, url, ready, stop))
        assert ready.wait(WAIT)
    answered_by = []
    for _ in range(16):  # each connection goes to one server of the group, at random
        with rpc.connect(url, timeout=WAIT) as client:
            answered_by.append(client.call("whoami"))
            assert client.call("whoami") == answered_by[-1]  # one connection, one server
    stop.set()
    served = [server.result() for server in servers]
    assert set(answered_by) == {server.pid for server in servers}
    assert sum(served) == 32


def test_a_cancelled_flush_leaves_the_connection_reading(
    server: nats_support.NatsServer, names: Names, cleanup: Callable[..., None]
) -> None:
    """A PONG for a flush() given up on used to end nats-py's read loop."""
    client, server_end = _pair(server.url(names.posix("n")[1:]), cleanup)
    connection = client._link._connection  # type: ignore[attr-defined]

    async def give_up_on_a_ping() -> None:
        stale = asyncio.get_running_loop().create_future()
        stale.cancel()  # what flush(timeout) leaves when the PONG comes late
        connection.client._pongs.append(stale)
        connection.client._transport.write(b"PING\r\n")  # its PONG comes back

    connection.owner.run(give_up_on_a_ping(), WAIT, "ping")
    server_end.send(b"still reading", timeout=WAIT)
    assert client.receive(timeout=5) == b"still reading"
