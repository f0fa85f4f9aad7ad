"""The RPC conformance suite: the same behaviour over every channel scheme.

Calls, concurrency, streaming, deadlines, cancellation, remote errors, server
restart, clients and servers SIGKILLed mid-call, garbage and oversize requests.
Servers run in a thread of the test process (real channels, real kernel
objects) or, where a process must die, in forked children.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import unixipc
from tests.conftest import Names
from tests.helpers import Child, wait_until
from tests.rpc_support import (
    CONNECT_OPTIONS,
    SCHEMES,
    WAIT,
    make_server,
    raw_connect,
    serving,
    start_child_server,
    url_for,
)
from unixipc import rpc

pytestmark = pytest.mark.parametrize("scheme", SCHEMES)


def test_calls_results_and_remote_errors(scheme: str, names: Names) -> None:
    with serving(scheme, names) as (server, _service, connect):
        client = connect()
        assert client.call("add", 1, 2) == 3
        assert client.api.add("a", "b") == "ab"
        values = [None, True, -(2**63), 2**64 - 1, 1.5, "é", [1, [2]], {"k": {"n": None}}]
        for value in values:
            assert client.call("echo", value) == value
        assert client.call("echo", (1, 2)) == [1, 2]  # tuples travel as lists
        assert client.call("echo", value=7, name="n") == [7, {"name": "n"}]
        if scheme != "sysvmq":  # the others carry more than msgmax (8 KiB)
            assert client.call("blob", 50_000) == bytes(50_000)
            # Several ring pieces each way on shm:// (the direct calls' slow case).
            assert client.call("echo", bytes(range(256)) * 280) == bytes(range(256)) * 280
        assert client.call("echo", bytearray(b"\x00\xff")) == b"\x00\xff"

        with pytest.raises(rpc.RemoteError) as caught:
            client.call("fail", "bad input")
        error = caught.value
        assert (error.type_name, error.message) == ("ValueError", "bad input")
        assert "in fail" in error.traceback
        assert "ValueError: bad input" in error.traceback
        assert str(error) == "ValueError: bad input"
        with pytest.raises(rpc.MethodNotFound, match="no method 'missing'"):
            client.api.missing()
        with pytest.raises(TypeError, match="msgpack"):
            client.call("echo", {1, 2})  # a set cannot travel: nothing is sent
        # The connection and the server go on after every one of these.
        assert client.call("add", 2, 3) == 5
        assert connect().call("async_add", 20, 22) == 42

        listing = {method.name: method for method in client.methods()}
        assert {"add", "echo", "numbers", "hang"} <= set(listing)
        assert listing["add"].signature == "(a: 'Any', b: 'Any') -> 'Any'"
        assert listing["add"].doc == "Add two values."
        assert listing["numbers"].streaming
        assert listing["async_numbers"].streaming
        assert not listing["add"].streaming
        assert server.url == client.url


def test_many_threads_share_one_connection(scheme: str, names: Names) -> None:
    with serving(scheme, names, max_concurrency=4) as (_server, _service, connect):
        client = connect()
        assert client.max_concurrency == 4
        results: dict[int, Any] = {}

        def caller(number: int) -> None:
            # 4 calls inside `meet` at once: only concurrent calls get past it.
            results[number] = (client.call("meet", 4, timeout=WAIT), client.call("add", number, 1))

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert sorted(results) == list(range(8))
        assert all(results[n][1] == n + 1 for n in range(8))  # each reply found its caller
        assert sorted(result[0] for result in results.values()) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_streams_and_early_stop(scheme: str, names: Names) -> None:
    with serving(scheme, names) as (_server, service, connect):
        client = connect()
        assert list(client.call("numbers", 300)) == list(range(300))  # several windows
        assert list(client.call("async_numbers", 70)) == list(range(70))
        with client.call("numbers", 10**9) as stream:
            assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
        stream = client.call("async_numbers", 10**9)
        assert next(stream) == 0
        stream.close()
        wait_until(lambda: f"numbers({10**9}) closed" in service.events, WAIT)
        wait_until(lambda: f"async_numbers({10**9}) closed" in service.events, WAIT)
        assert client.call("add", 1, 1) == 2


def test_deadlines_travel_and_expired_work_is_dropped(scheme: str, names: Names) -> None:
    with serving(scheme, names, max_concurrency=1) as (_server, service, connect):
        client = connect()
        remaining = client.call("remaining", timeout=WAIT)
        assert 0 < remaining <= WAIT
        assert client.call("remaining") is None
        with pytest.raises(unixipc.TimeoutExpired):
            client.call("hang", timeout=0.1)
        wait_until(lambda: "hang cancelled" in service.events, WAIT)  # cancelled at its deadline
        with pytest.raises(unixipc.TimeoutExpired):
            client.call("slow", 0.3, timeout=0.1)  # a plain function runs to its end

        # The only slot is taken: a call that cannot start before its deadline
        # never reaches the server.
        service.started.clear()
        holder = threading.Thread(target=client.call, args=("held",))
        holder.start()
        assert service.started.wait(WAIT)
        with pytest.raises(unixipc.TimeoutExpired):
            client.call("record", "too late", timeout=0.1)
        service.release.set()
        holder.join(WAIT)
        assert client.call("happened")[-1] == "held returned"
        assert "too late" not in service.events


def test_cancelled_async_call_cancels_the_handler(scheme: str, names: Names) -> None:
    with serving(scheme, names) as (server, service, _connect):
        options = CONNECT_OPTIONS.get(scheme, {})

        async def cancel_one() -> None:
            import asyncio

            async with await unixipc.aio.rpc.connect(server.url, timeout=WAIT, **options) as client:
                task = asyncio.ensure_future(client.call("hang"))
                await asyncio.sleep(0.2)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert await client.call("add", 1, 2) == 3

        import asyncio

        asyncio.run(cancel_one())
        wait_until(lambda: "hang cancelled" in service.events, WAIT)


def test_client_killed_mid_call_leaves_the_server_serving(
    scheme: str, names: Names, children: Callable[..., Child]
) -> None:
    with serving(scheme, names) as (server, service, connect):
        options = CONNECT_OPTIONS.get(scheme, {})
        child = children(_call_held, server.url, options)
        assert service.started.wait(WAIT)
        child.process.kill()
        child.process.join(WAIT)
        service.release.set()
        wait_until(lambda: "held returned" in service.events, WAIT)
        assert connect().call("add", 40, 2) == 42


def _call_held(url: str, options: dict[str, Any]) -> None:
    rpc.connect(url, timeout=WAIT, **options).call("held")


def test_server_killed_mid_call_then_restarted(
    scheme: str, names: Names, children: Callable[..., Child]
) -> None:
    # The listener belongs to this process; forked children serve it, as a
    # pre-forking server or socket activation would.
    server, service = make_server(url_for(scheme, names), scheme)
    try:
        options = CONNECT_OPTIONS.get(scheme, {})
        first = start_child_server(server, children)
        client = rpc.connect(server.url, timeout=WAIT, **options)
        assert client.call("add", 1, 2) == 3
        outcome: list[BaseException] = []

        def call_slow() -> None:
            try:
                client.call("slow", WAIT)
            except BaseException as error:
                outcome.append(error)

        caller = threading.Thread(target=call_slow)
        caller.start()
        time.sleep(0.2)  # let the call reach the server (or not: it fails either way)
        first.process.kill()
        caller.join(WAIT)
        assert len(outcome) == 1
        assert isinstance(outcome[0], unixipc.PeerDied), outcome
        with pytest.raises(unixipc.PeerDied):
            client.call("add", 1, 2)
        client.close()

        start_child_server(server, children)  # the restarted server
        with rpc.connect(server.url, timeout=WAIT, **options) as again:
            assert again.call("add", 2, 2) == 4
    finally:
        server.close()
        assert service.events == []  # the parent never served


def test_a_lone_call_meets_a_second_thread_then_a_close(scheme: str, names: Names) -> None:
    with serving(scheme, names) as (_server, service, connect):
        client = connect()
        service.release.set()
        assert client.call("held") == "released"  # the name is known: the fast path next
        service.release.clear()
        service.started.clear()
        outcome: list[Any] = []

        def call_held() -> None:
            try:
                outcome.append(client.call("held"))
            except BaseException as error:
                outcome.append(error)

        # A lone call: its own thread reads the reply, blocked with no timeout.
        first = threading.Thread(target=call_held)
        first.start()
        assert service.started.wait(WAIT)
        assert client._reading  # the fast path: this thread reads, and keeps no record
        assert client._pending == {}
        # Other threads join mid-call: their replies reach them through the first.
        assert client.call("add", 1, 2) == 3
        assert client.call("echo", value=5) == 5
        service.release.set()
        first.join(WAIT)
        assert outcome == ["released"]
        assert client.call("add", 2, 2) == 4
        assert (client._free, client._reading, client._pending) == (
            client.max_concurrency,
            False,
            {},
        )
        # close() from another thread wakes a lone call blocked in its receive.
        service.release.clear()
        service.started.clear()
        outcome.clear()
        blocked = threading.Thread(target=call_held)
        blocked.start()
        assert service.started.wait(WAIT)
        client.close()
        blocked.join(WAIT)
        assert [type(error) for error in outcome] == [unixipc.ClosedResourceError]
        service.release.set()


def test_server_closing_ends_its_clients(scheme: str, names: Names) -> None:
    with serving(scheme, names) as (server, _service, connect):
        client = connect()
        assert client.call("add", 1, 1) == 2
        connections = list(server._core.connections)
        server.close()
        # Its readers, blocked with no timeout, were woken: every connection ended.
        assert connections
        assert all(connection.done.is_set() for connection in connections)
        with pytest.raises(unixipc.EndOfChannel):
            client.call("add", 1, 1)
        with pytest.raises(unixipc.EndOfChannel):
            client.call("add", 1, 1)  # sticky


def test_garbage_and_oversize_requests_drop_only_that_client(scheme: str, names: Names) -> None:
    with serving(scheme, names) as (server, _service, connect):
        honest = connect()
        # Not our protocol at all: the connection is dropped.
        with raw_connect(server.url, scheme) as raw:
            raw.send(b"GET / HTTP/1.0\r\n\r\n")
            with pytest.raises(unixipc.EndOfChannel):
                raw.receive(timeout=WAIT)
        # The right handshake, then bytes that are not MessagePack.
        with raw_connect(server.url, scheme) as raw:
            raw.send(b"unixipc-rpc/1 msgpack")
            assert raw.receive(timeout=WAIT).startswith(b"unixipc-rpc/1 ok ")
            raw.send(b"\xc1\xc1\xc1")
            with pytest.raises(unixipc.EndOfChannel):
                raw.receive(timeout=WAIT)
        # A well-formed message that is not a valid call: an error reply, and on.
        import msgpack  # type: ignore[import-untyped]

        with raw_connect(server.url, scheme) as raw:
            raw.send(b"unixipc-rpc/1 msgpack")
            raw.receive(timeout=WAIT)
            raw.send(msgpack.packb([0, 7, "add", "not a list", None, None, 1]))
            reply = msgpack.unpackb(raw.receive(timeout=WAIT))
            assert reply[:3] == [17, 7, "unixipc.rpc.BadRequest"]
            raw.send(msgpack.packb([0, 8, "add", [1, 2], None, None, 1]))
            assert msgpack.unpackb(raw.receive(timeout=WAIT)) == [16, 8, 3]
        # A codec the server does not speak: refused with the reason.
        with pytest.raises(unixipc.IPCError, match="speaks msgpack, not json"):
            rpc.connect(server.url, timeout=WAIT, codec="json", **CONNECT_OPTIONS.get(scheme, {}))
        # A reply larger than the channel's limit becomes an error.
        limit = 8192 if scheme == "sysvmq" else 100_000
        with pytest.raises(rpc.RemoteError, match="MessageTooLarge"):
            honest.call("blob", limit)
        if scheme != "sysvmq":  # its limit is the kernel's, the same for everyone
            big = connect(max_message_size=400_000)
            with pytest.raises((unixipc.EndOfChannel, unixipc.PeerDied)):
                big.call("echo", bytes(300_000))
        assert honest.call("add", 1, 2) == 3
