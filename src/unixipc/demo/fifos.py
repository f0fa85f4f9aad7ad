"""Demo of the classic FIFO client-server: one server FIFO, a reply FIFO per client."""

from __future__ import annotations

import os
import tempfile
import time

from .. import fifo
from ..fifo import Fifo, FifoWriter
from ._common import DemoLine, fork_child, reap

CLIENTS = 3
REQUESTS = 100
RECORD = 128  # fixed-size requests, well under PIPE_BUF: each write is atomic


def _client(server_path: str, number: int) -> None:
    reply_path = f"{server_path}-reply-{os.getpid()}"
    fifo.mkfifo(reply_path)  # made before the first request, opened after it
    try:
        with Fifo.open(server_path, "w") as requests:
            replies = None
            for i in range(REQUESTS):
                value = number * REQUESTS + i
                requests.send_all(f"{reply_path} {value}".encode().ljust(RECORD))
                if replies is None:
                    replies = Fifo.open(reply_path, "r")
                if int(replies.receive_exactly(16)) != value * 2:
                    raise RuntimeError("fifo demo: wrong answer")
            if replies is not None:
                replies.close()
    finally:
        fifo.unlink(reply_path)


def run_fifo() -> DemoLine:
    """Forked clients send requests into one server FIFO; answers go back per client."""
    with tempfile.TemporaryDirectory(prefix="unixipc-demo-") as directory:
        server_path = os.path.join(directory, "server")
        fifo.mkfifo(server_path)
        start = time.perf_counter()
        pids = [fork_child(lambda n=n: _client(server_path, n)) for n in range(CLIENTS)]  # type: ignore[misc]
        answered: dict[str, FifoWriter] = {}
        try:
            # Keep a write end of our own FIFO open so that the server does not
            # see end-of-file when one client leaves (the textbook trick).
            with Fifo.open(server_path, "r") as server, Fifo.open(server_path, "w"):
                for _ in range(CLIENTS * REQUESTS):
                    path, value = server.receive_exactly(RECORD).decode().split()
                    if path not in answered:
                        answered[path] = Fifo.open(path, "w", timeout=30)
                    answered[path].send_all(str(int(value) * 2).encode().rjust(16))
        finally:
            for writer in answered.values():
                writer.close()
            for pid in pids:
                reap(pid)
        elapsed = time.perf_counter() - start
    return DemoLine(
        "fifo",
        f"{CLIENTS * REQUESTS} requests from {CLIENTS} client processes into one server FIFO, "
        "answers through a reply FIFO per client",
        elapsed,
    )
