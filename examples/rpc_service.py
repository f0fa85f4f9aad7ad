"""A small RPC service and its clients, over any channel URL.

    python examples/rpc_service.py [URL]          (default: shm://rpc-example-<pid>)

The server process offers a few functions (a plain one, a slow one, one that
fails, a generator, an ``async def`` one); clients in this process call them:
one call, many threads sharing one connection, a stream stopped early, a
deadline, a remote error, and asyncio's gather over one connection. Try the
same program with unix:///tmp/calc.sock, tcp://127.0.0.1:0, mq:///calc,
sysvmq://0x43414c43: nothing else changes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection

import unixipc
from unixipc import rpc


def serve(url: str, announce: Connection) -> None:
    """The server process: offer the functions, serve until SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through `with`: clean up
    with rpc.Server(url) as server:
        offer(server)
        announce.send(server.url)  # for tcp://...:0, the port actually bound
        server.serve_forever()


def offer(server: rpc.Server) -> None:

    @server.function
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    @server.function
    def slow_square(x: float) -> float:
        """x * x, after a tenth of a second (shows that calls run concurrently)."""
        time.sleep(0.1)
        return x * x

    @server.function
    def divide(a: float, b: float) -> float:
        """a / b."""
        return a / b

    @server.function
    def countdown(start: int) -> Iterator[int]:
        """start, start - 1, ... 1: a stream."""
        try:
            yield from range(start, 0, -1)
        finally:
            print("server: countdown closed", flush=True)

    @server.function(name="remaining")
    def time_left() -> float | None:
        """Seconds until the caller's deadline (None without one)."""
        deadline = rpc.current_deadline()
        return None if deadline is None else round(deadline - time.monotonic(), 1)

    @server.function
    async def greet(name: str) -> str:
        """Runs on the server's event loop."""
        await asyncio.sleep(0.01)
        return f"hello, {name}"


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else f"shm://rpc-example-{os.getpid()}"
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    server = context.Process(target=serve, args=(url, sender), daemon=True)
    server.start()
    try:
        if not receiver.poll(30):
            raise SystemExit("the server did not start")
        run_clients(receiver.recv())
    finally:
        server.terminate()  # SIGTERM: the server closes and removes its names
        server.join()


def run_clients(url: str) -> None:
    with rpc.connect(url, timeout=30) as client:
        print("add(2, 3) =", client.call("add", 2, 3))
        print("api.add(0.5, 0.25) =", client.api.add(0.5, 0.25))
        print("methods:", ", ".join(m.name for m in client.methods()))

        # Many threads share the connection: 8 slow calls take about one call's time.
        results: list[float] = []
        started = time.monotonic()
        threads = [
            threading.Thread(target=lambda x=x: results.append(client.call("slow_square", x)))
            for x in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        print(f"8 concurrent slow_square calls: {sorted(results)} ({elapsed:.2f} s)")

        with client.call("countdown", 1000) as stream:  # stop early: the generator is closed
            print("first three of countdown(1000):", [next(stream) for _ in range(3)])

        print("remaining() with timeout=5:", client.call("remaining", timeout=5))
        try:
            client.call("divide", 1, 0)
        except rpc.RemoteError as error:
            print("divide(1, 0) raised remotely:", error.type_name, "-", error.message)
        try:
            client.call("no_such_method")
        except rpc.MethodNotFound as error:
            print("no_such_method:", error)

    async def with_asyncio() -> None:
        async with await unixipc.aio.rpc.connect(url, timeout=30) as client:
            greetings = await asyncio.gather(*(client.call("greet", n) for n in "abc"))
            print("asyncio gather:", greetings)

    asyncio.run(with_asyncio())
    print("done")


if __name__ == "__main__":
    main()
