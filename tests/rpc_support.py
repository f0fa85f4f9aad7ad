"""What the RPC tests share: a service with one method of every kind, URLs per scheme,
and servers run in a thread of the test process or in forked children."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import unixipc
from tests.channel_support import url_for
from tests.conftest import Names
from tests.helpers import Child
from unixipc import rpc

# Generous: a busy 2-core machine.
WAIT = 30.0

SCHEMES = ["unix", "unix-abstract", "tcp", "fifo", "mq", "sysvmq", "shm", "nats"]

# Small limits (so that "too large" is quick to reach) and small POSIX queues (the
# per-user RLIMIT_MSGQUEUE is shared with other test runs).
LISTEN_OPTIONS: dict[str, dict[str, Any]] = {
    "unix": {"max_message_size": 100_000},
    "unix-abstract": {"max_message_size": 100_000},
    "tcp": {"max_message_size": 100_000},
    "fifo": {"max_message_size": 100_000},
    "mq": {"max_message_size": 100_000, "backlog": 4},
    "shm": {"max_message_size": 100_000},
    "nats": {"max_message_size": 100_000},
}
CONNECT_OPTIONS: dict[str, dict[str, Any]] = {
    **LISTEN_OPTIONS,
    "mq": {"max_message_size": 100_000, "queue_length": 4, "queue_message_size": 1024},
    "shm": {"max_message_size": 100_000, "capacity": 65536},
}


class Service:
    """One method of every kind; what happened on the server side is recorded."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.parties: dict[str, threading.Barrier] = {}
        self._lock = threading.Lock()

    def add(self, a: Any, b: Any) -> Any:
        """Add two values."""
        return a + b

    def echo(self, value: Any = None, **keywords: Any) -> Any:
        return [value, keywords] if keywords else value

    def fail(self, text: str) -> None:
        raise ValueError(text)

    def blob(self, size: int) -> bytes:
        return bytes(size)

    def slow(self, seconds: float) -> float:
        self.started.set()
        time.sleep(seconds)
        return seconds

    def held(self) -> str:
        """Block until the test releases it."""
        self.started.set()
        self.release.wait(WAIT)
        self.events.append("held returned")
        return "released"

    def meet(self, parties: int) -> int:
        """Return only when `parties` calls are inside at once (proves concurrency)."""
        with self._lock:
            barrier = self.parties.setdefault(str(parties), threading.Barrier(parties))
        return barrier.wait(WAIT)

    def remaining(self) -> float | None:
        deadline = rpc.current_deadline()
        return None if deadline is None else deadline - time.monotonic()

    def record(self, event: str) -> None:
        self.events.append(event)

    def happened(self) -> list[str]:
        return list(self.events)

    def numbers(self, count: int) -> Iterator[int]:
        try:
            yield from range(count)
        finally:
            self.events.append(f"numbers({count}) closed")

    async def async_add(self, a: Any, b: Any) -> Any:
        await asyncio.sleep(0)
        return a + b

    async def hang(self) -> None:
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            self.events.append("hang cancelled")
            raise

    async def async_numbers(self, count: int) -> Any:
        try:
            for number in range(count):
                await asyncio.sleep(0)
                yield number
        finally:
            self.events.append(f"async_numbers({count}) closed")


def make_server(url: str, scheme: str, **options: Any) -> tuple[rpc.Server, Service]:
    server = rpc.Server(url, **{**LISTEN_OPTIONS.get(scheme, {}), **options})
    service = Service()
    server.register(service)
    return server, service


@contextlib.contextmanager
def serving(
    scheme: str, names: Names, **options: Any
) -> Iterator[tuple[rpc.Server, Service, Callable[..., rpc.Client]]]:
    """A server in a thread of this process; yields it, its service and a way to connect."""
    server, service = make_server(url_for(scheme, names), scheme, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    clients: list[rpc.Client] = []

    def connect(**extra: Any) -> rpc.Client:
        client = rpc.connect(
            server.url, timeout=WAIT, **{**CONNECT_OPTIONS.get(scheme, {}), **extra}
        )
        clients.append(client)
        return client

    try:
        yield server, service, connect
    finally:
        service.release.set()
        for client in clients:
            client.close()
        server.close()
        thread.join(WAIT)


def serve_inherited(server: rpc.Server) -> None:
    """Child process: serve with a server object made by the parent before fork."""
    server.serve_forever()


def start_child_server(server: rpc.Server, children: Callable[..., Child]) -> Child:
    return children(serve_inherited, server)


def raw_connect(url: str, scheme: str, **options: Any) -> unixipc.Channel:
    return unixipc.connect(url, timeout=WAIT, **{**CONNECT_OPTIONS.get(scheme, {}), **options})
