"""Remote procedure calls: unixipc.rpc and what Python users pick instead.

Latency rows time one call of ``echo(64 bytes)`` returning its argument, one
client process, the server in the other (rows ``rpc-*``). The driver's link
makes the call in ``receive()`` with what ``send()`` gave it; the peer's link
serves until the driver calls ``stop``. Peers, each over a UNIX socket and used
the way its documentation shows, third-party ones imported only after the fork:
``multiprocessing.managers`` (a BaseManager proxy), ``xmlrpc`` (standard library
client and server), Pyro5 (marshal serializer, its fastest), rpyc (the bound
remote method kept), gRPC (a generic handler on raw bytes, no code generation).

Throughput rows run a program of their own (:func:`main`): one server process,
4 client processes with 16 calls in flight each (16 threads sharing one
connection), counting the calls completed in the measured time.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import http.client
import importlib
import json
import mmap
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ..transport import END, Link, Plan, Test, Transport
from ._common import quietly, remove_paths

_LATENCY: tuple[Test, ...] = ("latency",)
_THROUGHPUT: tuple[Test, ...] = ("throughput",)
_TIMEOUT = 30.0


class _CallerLink(Link):
    """The driver's end: ``send`` keeps the argument, ``receive`` makes the call."""

    def __init__(
        self,
        echo: Callable[[Any], Any],
        stop: Callable[[], Any],
        closers: tuple[Callable[[], Any], ...] = (),
    ) -> None:
        self._echo = echo
        self._stop = stop
        self._closers = closers
        self._argument: Any = b""

    def send(self, data: Any) -> None:
        if data[0] == END:
            self._stop()
        else:
            self._argument = data

    def receive(self) -> Any:
        return self._echo(self._argument)

    def close(self) -> None:
        for close in self._closers:
            quietly(close)


class _ServerLink(Link):
    """The peer's end: the server runs in threads; ``receive`` returns END once the
    driver called ``stop``."""

    def __init__(self, stopped: threading.Event, closers: tuple[Callable[[], Any], ...]) -> None:
        self._stopped = stopped
        self._closers = closers

    def receive(self) -> Any:
        self._stopped.wait()
        return bytes([END])

    def send(self, data: Any) -> None:
        raise AssertionError("an RPC server link never sends by itself")

    def close(self) -> None:
        for close in self._closers:
            quietly(close)


def _module(name: str) -> Any:
    return importlib.import_module(name)


def _in_thread(target: Callable[[], Any]) -> None:
    threading.Thread(target=target, name="bench-rpc-server", daemon=True).start()


class _RpcTransport(Transport):
    workload = "calls"
    tests = _LATENCY

    def cleanup(self, plan: Plan) -> None:
        remove_paths(plan)


# unixipc.rpc


class _UnixipcRpcTransport(_RpcTransport):
    family = "unixipc"

    def url(self, plan: Plan) -> str:
        raise NotImplementedError

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        from unixipc import rpc

        stopped = threading.Event()
        server = rpc.Server(self.url(plan))

        @server.function
        def echo(value: Any) -> Any:
            return value

        @server.function
        def stop() -> None:
            stopped.set()

        _in_thread(server.serve_forever)
        announce(server.url)
        return _ServerLink(stopped, (server.close,))

    def connect(self, plan: Plan, address: str) -> Link:
        from unixipc import rpc

        client = rpc.connect(address, timeout=_TIMEOUT)
        # A partial adds no Python frame: the peers' links call a bound method too.
        echo = functools.partial(client.call, "echo")
        return _CallerLink(echo, functools.partial(client.call, "stop"), (client.close,))

    def cleanup(self, plan: Plan) -> None:
        remove_paths(plan)
        for path in glob.glob(f"/dev/shm/{glob.escape(plan.prefix)}_rpc*"):
            quietly(os.unlink, path)


class RpcShmTransport(_UnixipcRpcTransport):
    name = "rpc-shm"
    summary = "unixipc.rpc over shm:// (client.call, msgpack)"

    def url(self, plan: Plan) -> str:
        return f"shm://{plan.prefix}_rpc"


class RpcUnixTransport(_UnixipcRpcTransport):
    name = "rpc-unix"
    summary = "unixipc.rpc over unix:// (client.call, msgpack)"

    def url(self, plan: Plan) -> str:
        return f"unix://{plan.path('rpc.sock')}"


# multiprocessing.managers


class Echo:  # no leading underscore: Pyro5 refuses to expose such classes
    def __init__(self, stopped: threading.Event) -> None:
        self._stopped = stopped

    def echo(self, value: Any) -> Any:
        return value

    def stop(self) -> None:
        self._stopped.set()


class MpManagerTransport(_RpcTransport):
    name = "rpc-mp-manager"
    summary = "multiprocessing.managers.BaseManager proxy (pickle, UNIX socket)"

    @staticmethod
    def _manager_class() -> Any:
        from multiprocessing.managers import BaseManager

        class Manager(BaseManager):
            pass

        return Manager

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        stopped = threading.Event()
        shared = Echo(stopped)
        manager = self._manager_class()
        manager.register("Echo", callable=lambda: shared)
        path = plan.path("manager.sock")
        server = manager(address=path, authkey=b"bench").get_server()
        _in_thread(server.serve_forever)
        announce(path)
        return _ServerLink(stopped, ())

    def connect(self, plan: Plan, address: str) -> Link:
        manager_type = self._manager_class()
        manager_type.register("Echo")
        manager = manager_type(address=address, authkey=b"bench")
        manager.connect()
        proxy = manager.Echo()
        return _CallerLink(proxy.echo, proxy.stop)


# xmlrpc


def _xmlrpc_server_class() -> Any:
    from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

    class Handler(SimpleXMLRPCRequestHandler):
        disable_nagle_algorithm = False  # TCP_NODELAY means nothing on a UNIX socket

    class UnixXMLRPCServer(SimpleXMLRPCServer):
        address_family = socket.AF_UNIX

        def __init__(self, path: str) -> None:
            address: Any = path  # a UNIX socket's address is its path
            super().__init__(
                address,
                requestHandler=Handler,
                logRequests=False,
                allow_none=True,
                use_builtin_types=True,
            )

    return UnixXMLRPCServer


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self._path)
        self.sock = sock


class XmlRpcTransport(_RpcTransport):
    name = "rpc-xmlrpc"
    summary = "xmlrpc.client.ServerProxy to SimpleXMLRPCServer over a UNIX socket"

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        stopped = threading.Event()
        path = plan.path("xmlrpc.sock")
        server = _xmlrpc_server_class()(path)
        server.register_instance(Echo(stopped))
        _in_thread(server.serve_forever)
        announce(path)
        # No shutdown(): it would wait for the driver's kept-alive connection, which
        # closes only after this side reported; the process exit closes everything.
        return _ServerLink(stopped, ())

    def connect(self, plan: Plan, address: str) -> Link:
        import xmlrpc.client

        class UnixTransport(xmlrpc.client.Transport):
            def make_connection(self, host: Any) -> http.client.HTTPConnection:
                if self._connection[1] is None:
                    self._connection = (host, _UnixHTTPConnection(address))
                connection = self._connection[1]
                assert connection is not None
                return connection

        proxy = xmlrpc.client.ServerProxy(
            "http://localhost/",
            transport=UnixTransport(use_builtin_types=True),
            allow_none=True,
        )
        return _CallerLink(proxy.echo, proxy.stop, (proxy("close"),))


# Pyro5


class Pyro5Transport(_RpcTransport):
    name = "rpc-pyro5"
    summary = "Pyro5 proxy over a UNIX socket (marshal serializer)"
    requires = ("Pyro5",)

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        pyro = _module("Pyro5.api")
        stopped = threading.Event()
        daemon = pyro.Daemon(unixsocket=plan.path("pyro.sock"))
        uri = daemon.register(pyro.expose(Echo)(stopped), "echo")
        _in_thread(daemon.requestLoop)
        announce(str(uri))
        return _ServerLink(stopped, (daemon.shutdown,))

    def connect(self, plan: Plan, address: str) -> Link:
        proxy = _module("Pyro5.api").Proxy(address)
        proxy._pyroSerializer = "marshal"
        proxy._pyroBind()
        return _CallerLink(proxy.echo, proxy.stop, (proxy._pyroRelease,))


# rpyc


class RpycTransport(_RpcTransport):
    name = "rpc-rpyc"
    summary = "rpyc service over a UNIX socket (the bound remote method kept)"
    requires = ("rpyc",)

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        stopped = threading.Event()

        def exposed_echo(self: Any, value: Any) -> Any:
            return value

        def exposed_stop(self: Any) -> None:
            stopped.set()

        service = type(
            "EchoService",
            (_module("rpyc").Service,),
            {"exposed_echo": exposed_echo, "exposed_stop": exposed_stop},
        )
        path = plan.path("rpyc.sock")
        server = _module("rpyc.utils.server").ThreadedServer(service, socket_path=path)
        _in_thread(server.start)
        # ThreadedServer binds in its constructor: clients may connect at once.
        announce(path)
        return _ServerLink(stopped, (server.close,))

    def connect(self, plan: Plan, address: str) -> Link:
        connection = _module("rpyc.utils.factory").unix_connect(address)
        root = connection.root
        return _CallerLink(root.echo, root.stop, (connection.close,))


# gRPC


class GrpcTransport(_RpcTransport):
    name = "rpc-grpc"
    summary = "gRPC unary call over a UNIX socket (generic handler, raw bytes, no codegen)"
    requires = ("grpc",)

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        from concurrent import futures

        grpc = _module("grpc")
        stopped = threading.Event()

        def stop(request: bytes, context: Any) -> bytes:
            stopped.set()
            return b""

        handler = grpc.method_handlers_generic_handler(
            "bench.Echo",
            {
                "Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
                "Stop": grpc.unary_unary_rpc_method_handler(stop),
            },
        )
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((handler,))
        address = f"unix:{plan.path('grpc.sock')}"
        server.add_insecure_port(address)
        server.start()
        announce(address)
        return _ServerLink(stopped, (lambda: server.stop(None),))

    def connect(self, plan: Plan, address: str) -> Link:
        channel = _module("grpc").insecure_channel(address)
        echo = channel.unary_unary("/bench.Echo/Echo")
        stop = channel.unary_unary("/bench.Echo/Stop")
        echo(b"", timeout=_TIMEOUT)  # connected before the clock starts
        return _CallerLink(echo, lambda: stop(b""), (channel.close,))


# Throughput: a program of its own.

CLIENTS = 4
IN_FLIGHT = 16


class _RpcThroughputTransport(_RpcTransport):
    family = "unixipc"
    tests = _THROUGHPUT
    scheme: ClassVar[str] = ""

    def max_size(self) -> int:
        return 64  # the RPC rows measure calls with a 64-byte argument and result

    def command(self, plan: Plan) -> list[str]:
        return [sys.executable, "-m", __name__, json.dumps(plan.to_json()), self.scheme]

    def cleanup(self, plan: Plan) -> None:
        remove_paths(plan)
        for path in glob.glob(f"/dev/shm/{glob.escape(plan.prefix)}_rpct*"):
            quietly(os.unlink, path)


class RpcShmThroughputTransport(_RpcThroughputTransport):
    name = "rpc-shm-4x16"
    summary = f"unixipc.rpc over shm://: {CLIENTS} client processes x {IN_FLIGHT} calls in flight"
    scheme = "shm"


class RpcUnixThroughputTransport(_RpcThroughputTransport):
    name = "rpc-unix-4x16"
    summary = f"unixipc.rpc over unix://: {CLIENTS} client processes x {IN_FLIGHT} calls in flight"
    scheme = "unix"


def _throughput_url(plan: Plan, scheme: str) -> str:
    if scheme == "shm":
        return f"shm://{plan.prefix}_rpct"
    return f"unix://{plan.path('rpct.sock')}"


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _serve_until_terminated(url: str, cpu: int | None, ready: int) -> None:
    from unixipc import rpc

    _pin(cpu)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with rpc.Server(url, max_concurrency=IN_FLIGHT) as server:

        @server.function
        def echo(value: Any) -> Any:
            return value

        os.write(ready, b"1")
        server.serve_forever()


# The shared page: start and end of the measured time (set once every client is
# connected), then per client: connected flag, calls counted, calls made.
_TIMES = struct.Struct("dd")
_SLOT = struct.Struct("qqq")


def _client(url: str, cpu: int | None, size: int, shared: mmap.mmap, slot: int) -> None:
    from unixipc import rpc

    _pin(cpu)
    payload = bytes(size)
    client = rpc.connect(url, timeout=_TIMEOUT)
    client.call("echo", payload)
    offset = _TIMES.size + _SLOT.size * slot
    _SLOT.pack_into(shared, offset, 1, 0, 0)
    while True:
        start, end = _TIMES.unpack_from(shared, 0)
        if end:
            break
        time.sleep(0.001)
    counted = [0] * IN_FLIGHT
    total = [0] * IN_FLIGHT

    def work(index: int) -> None:
        call = client.call
        monotonic = time.monotonic
        done = inside = 0
        while True:
            call("echo", payload)
            done += 1
            now = monotonic()
            if now >= end:
                break
            if now >= start:
                inside += 1
        counted[index], total[index] = inside, done

    threads = [threading.Thread(target=work, args=(index,)) for index in range(IN_FLIGHT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    _SLOT.pack_into(shared, offset, 1, sum(counted), sum(total))


def main(argv: list[str] | None = None) -> int:
    """Run one throughput measurement; print one JSON line (as the C baseline does)."""
    argv = sys.argv[1:] if argv is None else argv
    plan = Plan.from_json(json.loads(argv[0]))
    url = _throughput_url(plan, argv[1])
    shared = mmap.mmap(-1, mmap.PAGESIZE)
    read_end, write_end = os.pipe()
    children: list[int] = []
    try:
        server = os.fork()
        if server == 0:
            _exit_after(lambda: _serve_until_terminated(url, plan.peer_cpu, write_end))
        children.append(server)
        if os.read(read_end, 1) != b"1":
            raise RuntimeError("the RPC server did not start")
        for slot in range(CLIENTS):
            pid = os.fork()
            if pid == 0:
                client = functools.partial(_client, url, plan.driver_cpu, plan.size, shared, slot)
                _exit_after(client)
            children.append(pid)
        offsets = [_TIMES.size + _SLOT.size * slot for slot in range(CLIENTS)]
        give_up = time.monotonic() + _TIMEOUT
        while not all(_SLOT.unpack_from(shared, offset)[0] for offset in offsets):
            if time.monotonic() > give_up:
                raise RuntimeError("the clients did not connect")
            time.sleep(0.001)
        start = time.monotonic() + 0.1 * plan.seconds  # after a warm-up
        _TIMES.pack_into(shared, 0, start, start + plan.seconds)
        for pid in children[1:]:
            _, status = os.waitpid(pid, 0)
            if status != 0:
                raise RuntimeError(f"a client process failed (status {status})")
        os.kill(server, signal.SIGTERM)
        os.waitpid(server, 0)
        children.clear()
        counted = sum(_SLOT.unpack_from(shared, offset)[1] for offset in offsets)
        calls = sum(_SLOT.unpack_from(shared, offset)[2] for offset in offsets)
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = usage.ru_utime + usage.ru_stime
        rate = counted / plan.seconds
        result = {
            "messages_per_s": rate,
            "mb_per_s": rate * plan.size / 1e6,
            "messages": calls,
            "cpu_us_per_message": cpu / calls * 1e6,
        }
    except BaseException as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return 1
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    print(json.dumps(result))
    return 0


def _exit_after(function: Callable[[], Any]) -> None:
    """In a forked child: run ``function`` and leave without running the parent's
    cleanup (exit status 1 if it failed)."""
    status = 1
    try:
        function()
        status = 0
    except SystemExit as leaving:  # SIGTERM, as asked
        status = 0 if leaving.code in (0, None) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
