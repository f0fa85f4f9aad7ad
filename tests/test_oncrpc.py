"""Sun RPC between Python peers and hostile raw sockets: replies, errors, deadlines,
retransmission, record marking, .x files. (C peers and rpcbind: test_oncrpc_interop.)"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import assert_elapsed
from unixipc import ClosedResourceError, MessageTooLarge, TimeoutExpired, WouldBlock, oncrpc
from unixipc.oncrpc import xdr

PROGRAM = 0x20000199
#: Arguments of SLEEP that wait for the test instead of the clock.
HOLD, MEET = -1.0, -2.0
#: How long anything may take on a loaded machine.
WAIT = 120.0

SPEC = """
/* comments, constants and every definition kind */
const LIMIT = 8;          // a C++ comment
%#include "ignored by us, passed to C by rpcgen"
enum mode { SLOW = 1, FAST };
struct args { string text<LIMIT>; mode how; };
union answer switch (mode how) { case SLOW: string text<>; case FAST: void; };
typedef args many<2>;
typedef opaque blob<>;
program TEST_PROG {
    version TEST_V1 {
        string SHOUT(args) = 1;
        answer ASK(mode) = 2;
        void SLEEP(double) = 3;
        int FAIL(void) = 4;
        string WHO(void) = 5;
        blob ECHO(blob) = 6;
        int CLOSE(many) = 7;
    } = 1;
    version TEST_V3 { void PING(void) = 1; } = 3;
} = 0x20000199;
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("x") / "test.x"
    path.write_text(SPEC)
    return oncrpc.load(path)


def make_service(spec: Any) -> Any:
    class Test(spec.TEST_V1_Service):  # type: ignore[misc, name-defined]
        def shout(self, arguments: Any, call: oncrpc.CallInfo) -> str:
            return str(arguments.text.upper() + "!" * arguments.how)

        def ask(self, how: Any, call: oncrpc.CallInfo) -> Any:
            return spec.answer(how, "slowly" if how == spec.SLOW else None)

        def sleep(self, seconds: float, call: oncrpc.CallInfo) -> None:
            # Negative: no clock, but events the test controls (the machine may be slow).
            if seconds == HOLD:
                assert self.release.wait(WAIT), "never released"
            elif seconds == MEET:
                self.meeting.wait(WAIT)  # BrokenBarrierError (SYSTEM_ERR) if calls take turns
            else:
                time.sleep(seconds)

        def fail(self, call: oncrpc.CallInfo) -> int:
            if call.auth_sys is None:
                raise oncrpc.AuthError(oncrpc.AuthStat.TOOWEAK)
            raise RuntimeError("this procedure always fails")

        def who(self, call: oncrpc.CallInfo) -> str:
            cred = call.auth_sys
            assert cred is not None
            return f"{cred.machine_name} {cred.uid} {cred.gid} {cred.gids} {call.protocol}"

        def echo(self, data: bytes, call: oncrpc.CallInfo) -> bytes:
            return data

        def close_(self, items: list[Any], call: oncrpc.CallInfo) -> int:
            return len(items)

    service = Test()
    service.release = threading.Event()
    service.meeting = threading.Barrier(4)
    return service


@pytest.fixture(scope="module")
def server(spec: Any) -> Iterator[oncrpc.Server]:
    with oncrpc.Server(make_service(spec), spec.TEST_V3_Service(), register=False) as running:
        running.start()
        yield running


@pytest.fixture(params=["tcp", "udp"])
def client(request: pytest.FixtureRequest, spec: Any, server: oncrpc.Server) -> Iterator[Any]:
    protocol = request.param
    with spec.TEST_V1_Client(
        "127.0.0.1", protocol=protocol, port=server.ports[protocol], timeout=WAIT
    ) as made:
        yield made


def test_generated_client_and_service_agree(spec: Any, client: Any) -> None:
    client.null()
    assert client.shout(spec.args("hey", spec.FAST)) == "HEY!!"
    assert client.ask(spec.SLOW).text == "slowly"
    answer = client.ask(spec.FAST)
    assert (answer.how, answer.value) == (spec.FAST, None)
    with pytest.raises(AttributeError, match="not selected"):
        _ = answer.text
    assert client.close_([spec.args("a", spec.SLOW)] * 2) == 2  # CLOSE does not hide close()
    assert spec.FAST == 2
    assert spec.TEST_PROG == PROGRAM


def test_the_server_sees_auth_sys_credentials(spec: Any, server: oncrpc.Server) -> None:
    auth = oncrpc.AuthSys("somehost", 1001, 1002, (5, 6, 2**32 - 1))
    for protocol in ("tcp", "udp"):
        with spec.TEST_V1_Client(
            "127.0.0.1", protocol=protocol, port=server.ports[protocol], auth=auth
        ) as client:
            assert client.who() == f"somehost 1001 1002 (5, 6, 4294967295) {protocol}"
    assert oncrpc.AuthSys.current().uid >= 0


def test_every_refusal_has_its_exception(spec: Any, client: Any, server: oncrpc.Server) -> None:
    with pytest.raises(oncrpc.AuthError) as denied:
        client.fail()  # AUTH_NONE: the procedure refuses the caller
    assert denied.value.status == oncrpc.AuthStat.TOOWEAK
    client.auth = oncrpc.AuthSys("h", 1, 1)
    client._credentials = client.auth.to_xdr() + oncrpc.AUTH_NONE.to_xdr()
    with pytest.raises(oncrpc.RemoteSystemError):
        client.fail()
    with pytest.raises(oncrpc.ProcedureUnavailable):
        client.call(42)
    with pytest.raises(oncrpc.GarbageArguments):
        client.call(1, b"\0\0\0\x09too long for string<8>\0")
    with pytest.raises(oncrpc.GarbageArguments):
        client.call(2, b"\0\0\0\x01extra")  # trailing bytes
    port = server.ports[client.protocol]
    with oncrpc.Client("127.0.0.1", PROGRAM, 2, protocol=client.protocol, port=port) as other:
        with pytest.raises(oncrpc.ProgramMismatch) as mismatch:
            other.null()
        assert (mismatch.value.low, mismatch.value.high) == (1, 3)
    other = oncrpc.Client("127.0.0.1", PROGRAM + 1, 1, protocol=client.protocol, port=port)
    with other, pytest.raises(oncrpc.ProgramUnavailable):
        other.null()


def test_a_late_reply_is_dropped_and_the_next_call_works(
    spec: Any, client: Any, server: oncrpc.Server
) -> None:
    service = server.services[0]
    service.release = threading.Event()
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        client.call(3, xdr.DOUBLE.encode(HOLD), timeout=0.2)  # answered only when released
    assert_elapsed(started, 0.2, slack=WAIT)
    with pytest.raises(WouldBlock):
        client.call(3, xdr.DOUBLE.encode(HOLD), timeout=0)
    service.release.set()  # the two late replies come now, before the next reply
    assert client.shout(spec.args("x", spec.SLOW)) == "X!"


def test_the_server_runs_calls_concurrently(spec: Any, server: oncrpc.Server) -> None:
    server.services[0].meeting = threading.Barrier(4)
    failures: list[BaseException] = []

    def meet(protocol: str) -> None:
        try:
            with spec.TEST_V1_Client(
                "127.0.0.1", protocol=protocol, port=server.ports[protocol], timeout=WAIT
            ) as client:
                client.sleep(MEET)  # returns once all four calls are in the server at once
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=meet, args=(p,)) for p in ("tcp", "tcp", "udp", "udp")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_large_messages_in_small_fragments(spec: Any, server: oncrpc.Server) -> None:
    data = bytes(range(256)) * 1000
    with spec.TEST_V1_Client("127.0.0.1", port=server.ports["tcp"]) as client:
        assert client._stream is not None
        client._stream.fragment_size = 1000  # 256 fragments, reassembled by the server
        assert client.echo(data) == data
        with pytest.raises(MessageTooLarge):
            client.echo(bytes(2 << 20))  # over the default 1 MiB limit
        assert client.echo(b"still usable") == b"still usable"
    client = spec.TEST_V1_Client("127.0.0.1", protocol="udp", port=server.ports["udp"])
    with client, pytest.raises(MessageTooLarge):
        client.echo(bytes(70000))  # more than a datagram


def test_closing_from_another_thread_ends_a_waiting_call(spec: Any, server: oncrpc.Server) -> None:
    service = server.services[0]
    for protocol in ("tcp", "udp"):
        service.release = threading.Event()
        client = spec.TEST_V1_Client("127.0.0.1", protocol=protocol, port=server.ports[protocol])
        timer = threading.Timer(0.2, client.close)
        timer.start()
        with pytest.raises(ClosedResourceError):
            client.sleep(HOLD)  # the server holds the call until the end of the test
        assert not service.release.is_set()
        service.release.set()
        timer.join()
        with pytest.raises(ClosedResourceError):
            client.null()


@pytest.mark.parametrize(
    ("arguments", "options", "error"),
    [
        (("127.0.0.1", -1, 1), {}, ValueError),
        (("127.0.0.1", PROGRAM, 2**32), {}, ValueError),
        (("127.0.0.1", "1", 1), {}, TypeError),
        (("127.0.0.1",), {}, TypeError),
        ((b"127.0.0.1", PROGRAM, 1), {}, TypeError),
        (("127.0.0.1", PROGRAM, 1), {"protocol": "sctp"}, ValueError),
        (("127.0.0.1", PROGRAM, 1), {"port": 0}, ValueError),
        (("127.0.0.1", PROGRAM, 1), {"timeout": "1"}, TypeError),
        (("127.0.0.1", PROGRAM, 1), {"timeout": -1}, ValueError),
        (("127.0.0.1", PROGRAM, 1), {"auth": "root"}, TypeError),
        (("127.0.0.1", PROGRAM, 1), {"retransmit": 0}, ValueError),
        (("/some/socket", PROGRAM, 1), {"protocol": "udp"}, ValueError),
    ],
)
def test_bad_client_arguments_are_refused_before_any_system_call(
    arguments: tuple[Any, ...], options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        oncrpc.Client(*arguments, port=options.pop("port", 9), **options)


def test_bad_server_arguments_are_refused(spec: Any) -> None:
    service = make_service(spec)
    with pytest.raises(TypeError, match="at least one"):
        oncrpc.Server()
    with pytest.raises(TypeError, match="Service"):
        oncrpc.Server(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two services"):
        oncrpc.Server(service, make_service(spec), register=False)
    with pytest.raises(ValueError, match="protocols"):
        oncrpc.Server(service, protocols=("tcp", "http"), register=False)
    with pytest.raises(TypeError, match="Service"):
        oncrpc.Server(spec.TEST_V1_AsyncService(), register=False)  # the asyncio kind


def _raw_call(xid: int, program: int, procedure: int, credential: bytes = b"\0" * 8) -> bytes:
    return struct.pack(">6I", xid, 0, 2, program, 1, procedure) + credential + b"\0" * 8


def test_hostile_peers_get_an_answer_or_are_cut_off(server: oncrpc.Server) -> None:
    tcp_port, udp_port = server.ports["tcp"], server.ports["udp"]
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=WAIT) as sock:
        sock.sendall(struct.pack(">I", 0x80000000 | 0x7FFFFFFF))  # a 2 GiB fragment
        assert sock.recv(16) == b""  # the server hung up without reading it
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=WAIT) as sock:
        # RPC version 3, then a malformed AUTH_SYS (17 groups): refused, and answered.
        wrong_version = bytearray(_raw_call(1, PROGRAM, 0))
        wrong_version[8:12] = struct.pack(">I", 3)
        bad_credential = struct.pack(">IIIIIII", 1, 28, 0, 0, 0, 0, 17) + bytes(8)
        for message in (bytes(wrong_version), _raw_call(2, PROGRAM, 0, bad_credential[:36])):
            sock.sendall(struct.pack(">I", 0x80000000 | len(message)) + message)
        replies = b""
        while len(replies) < 52:  # two record-marked replies, of 24 and 20 bytes
            replies += sock.recv(1000)
    assert struct.unpack_from(">IIIIII", replies, 4) == (1, 1, 1, 0, 2, 2)  # RPC_MISMATCH 2-2
    assert struct.unpack_from(">IIIII", replies, 32) == (2, 1, 1, 1, 1)  # AUTH_ERROR BADCRED
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(WAIT)
        sock.sendto(b"garbage", ("127.0.0.1", udp_port))  # ignored
        sock.sendto(_raw_call(77, PROGRAM, 0), ("127.0.0.1", udp_port))
        assert sock.recv(100) == struct.pack(">6I", 77, 1, 0, 0, 0, 0)
    with oncrpc.Client("127.0.0.1", PROGRAM, 1, port=tcp_port) as client:
        client.null()  # still serving


class FakeServer:
    """A raw socket answering like a misbehaving server, to test the client."""

    def __init__(self, protocol: str) -> None:
        kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        if protocol == "tcp":
            self.sock.listen(1)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


def _reply(xid: int, result: bytes = b"") -> bytes:
    return struct.pack(">6I", xid, 1, 0, 0, 0, 0) + result


def test_udp_retransmits_and_matches_transaction_ids() -> None:
    fake = FakeServer("udp")
    seen: list[bytes] = []

    def answer_the_second() -> None:
        first, peer = fake.sock.recvfrom(1000)
        second, _ = fake.sock.recvfrom(1000)  # the retransmission: same bytes, same xid
        seen.extend((first, second))
        xid = struct.unpack_from(">I", second)[0]
        fake.sock.sendto(_reply(xid + 1, xdr.INT.encode(1)), peer)  # someone else's
        fake.sock.sendto(b"\1\2", peer)  # garbage
        fake.sock.sendto(_reply(xid, xdr.INT.encode(2)), peer)

    thread = threading.Thread(target=answer_the_second)
    thread.start()
    try:
        with oncrpc.Client(
            "127.0.0.1", PROGRAM, 1, protocol="udp", port=fake.port, retransmit=0.1, timeout=WAIT
        ) as client:
            assert client.call(5) == xdr.INT.encode(2)
    finally:
        thread.join()
        fake.close()
    assert seen[0] == seen[1]


def test_tcp_replies_in_tiny_fragments_and_lying_lengths() -> None:
    fake = FakeServer("tcp")

    def serve() -> None:
        connection, _ = fake.sock.accept()
        with connection:
            for answer in ("fragments", "lie"):
                header = connection.recv(4)
                length = struct.unpack(">I", header)[0] & 0x7FFFFFFF
                call = b""
                while len(call) < length:
                    call += connection.recv(length - len(call))
                reply = _reply(struct.unpack_from(">I", call)[0], xdr.String().encode("hi"))
                if answer == "fragments":
                    for index, byte in enumerate(reply):
                        last = 0x80000000 if index == len(reply) - 1 else 0
                        connection.sendall(struct.pack(">I", last | 1) + bytes([byte]))
                else:
                    connection.sendall(struct.pack(">I", 0x80000000 | 0x7FFFFFF0))
            time.sleep(0.5)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with oncrpc.Client("127.0.0.1", PROGRAM, 1, port=fake.port, timeout=WAIT) as client:
            assert xdr.String().decode(client.call(1)) == "hi"
            with pytest.raises(MessageTooLarge):
                client.call(1)
    finally:
        thread.join()
        fake.close()


def test_asyncio_client_multiplexes_and_asyncio_service_awaits(spec: Any) -> None:
    class Gathering(spec.TEST_V1_AsyncService):  # type: ignore[misc, name-defined]
        async def sleep(self, seconds: float, call: oncrpc.CallInfo) -> None:
            if seconds == MEET:  # return once ten calls are in the server at once
                self.arrived += 1
                if self.arrived == 10:
                    self.everyone.set()
                await asyncio.wait_for(self.everyone.wait(), WAIT)
            else:
                await asyncio.sleep(seconds)

        def shout(self, arguments: Any, call: oncrpc.CallInfo) -> str:  # a plain method works
            return str(arguments.text.upper())

    async def main() -> None:
        service = Gathering()
        async with oncrpc.aio.AsyncServer(service, register=False) as running:
            for protocol in ("tcp", "udp"):
                service.arrived, service.everyone = 0, asyncio.Event()
                client = await spec.TEST_V1_AsyncClient.open(
                    "127.0.0.1", protocol=protocol, port=running.ports[protocol], timeout=WAIT
                )
                async with client:
                    await asyncio.gather(*(client.sleep(MEET) for _ in range(10)))
                    assert await client.shout(spec.args("a", spec.SLOW)) == "A"
                    with pytest.raises(TimeoutExpired):
                        await client.call(3, xdr.DOUBLE.encode(WAIT), timeout=0.1)
                    with pytest.raises(oncrpc.ProcedureUnavailable):
                        await client.call(4)  # FAIL is not overridden here
                with pytest.raises(ClosedResourceError):
                    await client.null()

    asyncio.run(main())


def test_x_file_mistakes_name_the_line(tmp_path: Path) -> None:
    cases = {
        "struct a { int x; }\nconst B = 1;": "test.x:2: expected ';'",
        "\n\nstruct a { quadruple q; };": "test.x:3: quadruple",
        "typedef missing name;": "test.x:1: unknown type 'missing'",
        "const A = 1;\nconst A = 2;": "test.x:2: 'A' is defined twice",
        "enum e { X = Y };": "cannot resolve the value of 'X'",
        "union u switch (int d) { case 1: int a; case 1: int b; };": "case 1 appears twice",
        "program P { version V { void F(void) = 1; void G(void) = 1; } = 1; } = 9;": "twice",
        "struct s { int a; } @": "unexpected character '@'",
    }
    for source, message in cases.items():
        path = tmp_path / "test.x"
        path.write_text(source)
        with pytest.raises(oncrpc.XFileError) as raised:
            oncrpc.load(path)
        assert message in str(raised.value), source
    with pytest.raises(TypeError):
        oncrpc.load(3)  # type: ignore[arg-type]


def test_python_keywords_and_forward_references(tmp_path: Path) -> None:
    path = tmp_path / "odd.x"
    path.write_text(
        "typedef later *ptr;\n"
        "struct later { int from; ptr next; bool class; };\n"
        "enum kind { None = 0, pass = 1 };\n"
    )
    odd = oncrpc.load(path)
    value = odd.later(1, odd.later(2, None, False), True)
    assert value.from_ == 1
    assert odd.ptr.decode(odd.ptr.encode(value)) == value
    assert odd.kind.pass_ == 1
    assert odd.None_ == 0


@pytest.mark.timeout(900)  # mypy takes seconds, or minutes on a loaded machine
def test_rpcgen_writes_a_module_that_type_checks(tmp_path: Path) -> None:
    source = tmp_path / "test.x"
    source.write_text(SPEC)
    target = tmp_path / "test_rpc.py"
    command = [sys.executable, "-m", "unixipc.cli.main", "rpcgen", str(source), "-o", str(target)]
    subprocess.run(command, check=True, timeout=60)
    user = tmp_path / "user.py"
    user.write_text(
        "import test_rpc\n"
        "class Server(test_rpc.TEST_V1_Service):\n"
        "    def shout(self, arg: test_rpc.args, call: object, /) -> str:\n"
        "        return arg.text\n"
        "def use(client: test_rpc.TEST_V1_Client) -> str:\n"
        "    text = client.shout(test_rpc.args('a', test_rpc.SLOW))\n"
        "    return text + client.ask(test_rpc.FAST).text\n"
    )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(target), str(user)],
        capture_output=True, text=True, timeout=800, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "unixipc.cli.main", "rpcgen", str(tmp_path / "missing.x")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "missing.x" in bad.stderr


@pytest.mark.timeout(600)
def test_the_benchmark_rows_measure_both_clients_against_the_c_server(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "unixipc.cli.main", "bench",
        "--transports", "oncrpc-echo-udp,c-oncrpc-null-tcp",
        "--tests", "latency", "--placements", "unpinned",
        "--repeats", "1", "--seconds", "0.05", "--time-limit", "300", "--json-file", str(report),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    rows = {row["transport"]: row for row in json.loads(report.read_text())["results"]}
    assert set(rows) == {"oncrpc-echo-udp", "c-oncrpc-null-tcp"}
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["rtt_median_us"] > 0
        assert row["cpu_us_per_message"] > 0


def test_the_public_names_are_exactly_these_and_documented() -> None:
    import inspect

    from unixipc.oncrpc import aio, rpcbind

    assert set(oncrpc.__all__) == {
        "AUTH_NONE", "CLIENT_TIMEOUT", "DEFAULT_TIMEOUT", "AuthError", "AuthStat", "AuthSys",
        "CallInfo", "Client", "GarbageArguments", "OpaqueAuth", "Procedure",
        "ProcedureUnavailable", "ProgramMismatch", "ProgramNotRegistered", "ProgramUnavailable",
        "RemoteSystemError", "RpcError", "RpcMismatch", "Server", "Service", "XFileError",
        "XdrError", "aio", "load", "rpcbind", "xdr",
    }  # fmt: skip
    assert set(aio.__all__) == {"AsyncClient", "AsyncServer", "AsyncService"}
    for module in (oncrpc, xdr, rpcbind, aio):
        assert inspect.getdoc(module)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
                assert inspect.getdoc(obj), f"{module.__name__}.{name}"
            if inspect.isclass(obj):
                for attribute, member in vars(obj).items():
                    if not attribute.startswith("_") and callable(member):
                        assert inspect.getdoc(member), f"{name}.{attribute}"
    assert issubclass(oncrpc.XdrError, ValueError)
    assert issubclass(oncrpc.ProgramNotRegistered, oncrpc.ProgramUnavailable)
