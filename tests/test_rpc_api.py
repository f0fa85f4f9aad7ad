"""unixipc.rpc beyond the per-scheme suite: codecs, registration, arguments, asyncio,
the command line, the example. One scheme each (the suite covers the others)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import numpy
import pytest

import unixipc
from tests.conftest import Names
from tests.helpers import wait_until
from tests.rpc_support import WAIT, Service, serving
from unixipc import rpc
from unixipc.cli.main import main as cli_main
from unixipc.rpc._codec import make_codec

EXAMPLES = Path(__file__).parent.parent / "examples"


# Codecs.


def test_numpy_arrays_travel_as_dtype_shape_and_data(names: Names) -> None:
    with serving("unix", names) as (_server, _service, connect):
        client = connect()
        for array in (
            numpy.arange(12, dtype="<i4").reshape(3, 4),
            numpy.linspace(0, 1, 5, dtype=">f8"),
            numpy.zeros((2, 0, 3), dtype=numpy.uint8),
            numpy.array("héllo", dtype="<U5"),
            numpy.arange(10)[::3],  # not contiguous: sent as a contiguous copy
        ):
            back = client.call("echo", array)
            assert back.dtype == array.dtype
            assert back.shape == array.shape
            assert numpy.array_equal(back, array)
            assert not back.flags.writeable  # a view of the received bytes, not a copy
        assert client.call("echo", numpy.float32(1.5)) == 1.5  # NumPy scalars as plain values
        with pytest.raises(TypeError, match="plain dtypes"):
            client.call("echo", numpy.array([object()]))
        memory = memoryview(b"abcdef")[1:4]
        assert client.call("echo", memory) == b"bcd"


def test_decoding_refuses_what_could_run_code_or_lie_about_sizes() -> None:
    codec = make_codec("msgpack")
    good = codec.encode([numpy.arange(4, dtype="<i8")])
    assert numpy.array_equal(codec.decode(good)[0], numpy.arange(4))

    def array_ext(head: bytes, data: bytes) -> bytes:
        return msgpack.packb([msgpack.ExtType(1, head + data)])

    lying = array_ext(b"\x03\x01<i8" + (1000).to_bytes(8, "little"), bytes(16))
    objects = array_ext(b"\x02\x01|O" + (1).to_bytes(8, "little"), bytes(8))
    unknown = msgpack.packb([msgpack.ExtType(99, b"")])
    for data in (lying, objects, unknown, b"\xc1", b"\x92\x01", bytes(range(256))):
        with pytest.raises(ValueError, match=r"array|extension|MessagePack"):
            codec.decode(data)
    json_codec = make_codec("json")
    with pytest.raises(TypeError, match="json"):
        json_codec.encode([b"bytes"])
    with pytest.raises(ValueError, match="malformed JSON"):
        json_codec.decode(b"[" * 100_000)
    with pytest.raises(ValueError, match="codec must be one of"):
        make_codec("yaml")


def test_json_codec_end_to_end(names: Names) -> None:
    with serving("unix-abstract", names, codec="json") as (_server, _service, connect):
        client = connect(codec="json")
        assert client.call("add", 1.5, 2) == 3.5
        assert client.call("echo", {"a": [1, None, True]}) == {"a": [1, None, True]}
        with pytest.raises(TypeError, match="json"):
            client.call("echo", b"no bytes in JSON")
        with pytest.raises(unixipc.IPCError, match="speaks json, not msgpack"):
            connect()


def test_pickle_is_refused_on_channels_that_are_not_authenticated(names: Names) -> None:
    with serving("unix", names, codec="pickle") as (server, _service, connect):
        # The client refuses before sending anything...
        with pytest.raises(ValueError, match="only on an authenticated channel"):
            connect(codec="pickle")
        # ...and the server refuses a client that asks anyway.
        with unixipc.connect(server.url, timeout=WAIT) as raw:
            raw.send(b"unixipc-rpc/1 pickle")
            answer = raw.receive(timeout=WAIT)
            assert answer.startswith(b"unixipc-rpc/1 no ")
            assert b"authenticated" in answer
            with pytest.raises(unixipc.EndOfChannel):
                raw.receive(timeout=WAIT)


# Registration and arguments.


def test_registration_names_and_kinds(names: Names) -> None:
    server = rpc.Server(f"unix-abstract://{names.posix('reg')[1:]}")
    try:

        @server.function
        def plain() -> None:
            """Plain."""

        @server.function(name="other.name")
        async def coroutine() -> None:
            pass

        assert plain.__name__ == "plain"  # returned unchanged
        server.register(Service())
        with pytest.raises(ValueError, match="already registered"):
            server.function(plain)
        with pytest.raises(ValueError, match="already registered"):
            server.register(Service())
        with pytest.raises(ValueError, match="start with '_'"):
            server.function(plain, name="_hidden")
        with pytest.raises(ValueError, match="no spaces"):
            server.function(plain, name="a b")
        with pytest.raises(TypeError, match="callable"):
            server.function(42)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="max_concurrency"):
            rpc.Server("unix-abstract://x", max_concurrency=0)
        with pytest.raises(ValueError, match="codec"):
            rpc.Server("unix-abstract://x", codec="xml")
        assert "other.name" in repr(server._methods)
    finally:
        server.close()
    with pytest.raises(unixipc.ClosedResourceError):
        server.serve_forever()


def test_bad_arguments_fail_before_anything_is_sent(names: Names) -> None:
    with serving("unix", names) as (_server, _service, connect):
        client = connect()
        with pytest.raises(TypeError, match="method name"):
            client.call(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="method name"):
            client.call("")
        with pytest.raises(ValueError, match="timeout"):
            client.call("add", 1, 2, timeout=-1)
        with pytest.raises(unixipc.MessageTooLarge):
            client.call("echo", bytes(200_000))
        assert client.api.math is not None  # a proxy: nothing is sent yet
        assert client.call("add", 1, 2) == 3
        client.close()
        with pytest.raises(unixipc.ClosedResourceError):
            client.call("add", 1, 2)
    with pytest.raises(ValueError, match="codec"):
        rpc.connect("unix:///nowhere", codec="xml")


def test_close_from_another_thread_wakes_waiting_calls(names: Names) -> None:
    with serving("shm", names) as (server, service, connect):
        client = connect()
        errors: list[BaseException] = []

        def wait_for_hang() -> None:
            try:
                client.call("hang")
            except BaseException as error:
                errors.append(error)

        def running() -> int:  # the calls the server has started
            return sum(len(connection.tasks) for connection in list(server._core.connections))

        threads = [threading.Thread(target=wait_for_hang) for _ in range(3)]
        for thread in threads:
            thread.start()
        wait_until(lambda: running() == 3, WAIT)
        client.close()
        for thread in threads:
            thread.join(WAIT)
        assert [type(error) for error in errors] == [unixipc.ClosedResourceError] * 3
        wait_until(lambda: service.events.count("hang cancelled") == 3, WAIT)


# asyncio.


def test_asyncio_client_and_server(names: Names) -> None:
    url = f"shm://{names.posix('aio')[1:]}"

    async def scenario() -> None:
        server = unixipc.aio.rpc.Server(url, max_concurrency=8)
        service = Service()
        server.register(service)
        loop_thread = threading.get_ident()

        @server.function
        async def where() -> bool:
            return threading.get_ident() == loop_thread  # on the serving loop

        serving_task = asyncio.ensure_future(server.serve_forever())
        async with await unixipc.aio.rpc.connect(url, timeout=WAIT) as client:
            assert client.max_concurrency == 8
            assert await client.call("where")
            results = await asyncio.gather(*(client.call("async_add", n, 1) for n in range(100)))
            assert results == list(range(1, 101))
            assert await client.api.add(2, 3) == 5  # a plain function, in a server thread
            stream = await client.call("async_numbers", 200)
            assert [item async for item in stream] == list(range(200))
            async with await client.call("numbers", 10**6) as stream:
                assert await stream.__anext__() == 0
            with pytest.raises(rpc.RemoteError, match="ValueError: no"):
                await client.call("fail", "no")
            with pytest.raises(rpc.MethodNotFound):
                await client.call("missing")
            with pytest.raises(unixipc.TimeoutExpired):
                await client.call("hang", timeout=0.1)
            assert {"add", "where"} <= {method.name for method in await client.methods()}
        serving_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving_task
        assert server.closed
        assert f"numbers({10**6}) closed" in service.events

    asyncio.run(scenario())


# The command line and the example.


def test_command_line_ls_and_call(names: Names, capsys: pytest.CaptureFixture[str]) -> None:
    with serving("unix", names) as (server, _service, _connect):
        assert cli_main(["rpc", "ls", server.url]) == 0
        listing = capsys.readouterr().out
        assert "add(a: 'Any', b: 'Any') -> 'Any'  Add two values." in listing
        assert "numbers(count: 'int') -> 'Iterator[int]' (stream)" in listing
        assert cli_main(["rpc", "call", server.url, "add", "1", "2.5"]) == 0
        assert capsys.readouterr().out == "3.5\n"
        assert cli_main(["rpc", "call", server.url, "add", "text", '"s"']) == 0
        assert capsys.readouterr().out == "texts\n"
        assert cli_main(["rpc", "call", server.url, "echo", "-k", "value=[1]"]) == 0
        assert capsys.readouterr().out == "[1]\n"
        assert cli_main(["--json", "rpc", "call", server.url, "blob", "2"]) == 0
        assert json.loads(capsys.readouterr().out) == {"result": {"base64": "AAA="}}
        assert cli_main(["rpc", "call", server.url, "numbers", "3"]) == 0
        assert capsys.readouterr().out == "0\n1\n2\n"
        assert cli_main(["rpc", "call", server.url, "fail", "oops"]) == 1
        assert "ValueError: oops" in capsys.readouterr().err
        # The real program, as a user runs it.
        result = subprocess.run(
            [sys.executable, "-m", "unixipc.cli.main", "--json", "rpc", "ls", server.url],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=True,
        )
        names_listed = [method["name"] for method in json.loads(result.stdout)["methods"]]
        assert "remaining" in names_listed


def test_example_service(names: Names) -> None:
    url = f"shm://{names.posix('example')[1:]}"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "rpc_service.py"), url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    output = result.stdout
    assert "add(2, 3) = 5" in output
    assert "8 concurrent slow_square calls: [0, 1, 4, 9, 16, 25, 36, 49]" in output
    assert "first three of countdown(1000): [1000, 999, 998]" in output
    assert "server: countdown closed" in output
    assert "divide(1, 0) raised remotely: ZeroDivisionError - division by zero" in output
    assert "asyncio gather: ['hello, a', 'hello, b', 'hello, c']" in output
    assert output.rstrip().endswith("done")
