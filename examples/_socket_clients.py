"""Clients shared by the three socket server examples: honest ones and three bad ones.

An honest client sends numbers as frames (``unixipc.sockets.send_message``) and
expects their squares back. The bad clients send what a server meets in real
life: garbage (another protocol), a frame cut short by a crash, and a frame
announcing 4 GB. A good server answers every honest client whatever the bad
ones do.
"""

from __future__ import annotations

import multiprocessing
import socket
import struct
from multiprocessing.connection import Connection

import unixipc
from unixipc import sockets

MAX_REQUEST = 64
BAD_KINDS = ("garbage", "truncated", "huge")


def honest_client(port: int, numbers: list[int]) -> int:
    """Send each number, check each answer; return the sum of the squares received."""
    total = 0
    with sockets.tcp_connect("127.0.0.1", port, timeout=30) as sock:
        for number in numbers:
            sockets.send_message(sock, str(number).encode(), timeout=30)
            answer = int(sockets.receive_message(sock, max_size=MAX_REQUEST, timeout=30))
            if answer != number * number:
                raise RuntimeError(f"asked {number}, got {answer}")
            total += answer
    return total


def bad_client(port: int, kind: str) -> str:
    """Misbehave, then wait for the server to hang up on us."""
    with sockets.tcp_connect("127.0.0.1", port, timeout=30) as sock:
        if kind == "garbage":
            sockets.send_all(sock, b"GET / HTTP/1.0\r\n\r\n", timeout=30)
        elif kind == "truncated":  # a frame of 40 bytes, of which 10 arrive
            sockets.send_all(sock, struct.pack(">4sI", b"uxf1", 40) + b"0123456789", timeout=30)
            sock.shutdown(socket.SHUT_WR)  # as if the client died in the middle of the frame
        else:  # "huge": a header announcing 4 GB
            sockets.send_all(sock, struct.pack(">4sI", b"uxf1", 2**32 - 1), timeout=30)
        try:
            leftover = sockets.receive_some(sock, timeout=30)
        except unixipc.PeerDied:  # the server closed with our bytes unread: a reset
            leftover = b""
    return "hung up on" if leftover == b"" else f"got {leftover!r}"


def _run_clients(port: int, clients: int, per_client: int, report: Connection) -> None:
    report.send(run_clients(port, clients, per_client))
    report.close()


class Clients:
    """The clients, running in a process of their own so the server stays single-threaded."""

    def __init__(self, port: int, clients: int, per_client: int) -> None:
        context = multiprocessing.get_context("fork")
        self._results, report = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_run_clients, args=(port, clients, per_client, report)
        )
        self._process.start()
        report.close()

    def result(self) -> tuple[int, int, list[str]]:
        """(sum of squares the honest clients received, the expected sum, bad outcomes)."""
        if not self._results.poll(120):
            self._process.kill()
            raise RuntimeError("the clients did not finish")
        result: tuple[int, int, list[str]] = self._results.recv()
        self._results.close()
        self._process.join()
        return result


def run_clients(port: int, clients: int, per_client: int) -> tuple[int, int, list[str]]:
    """Run honest and bad clients at once in forked processes.

    Returns (sum of squares the clients received, the expected sum, bad outcomes).
    """
    work = [list(range(c * per_client, (c + 1) * per_client)) for c in range(clients)]
    context = multiprocessing.get_context("fork")
    with context.Pool(clients + len(BAD_KINDS)) as pool:
        honest = pool.starmap_async(honest_client, [(port, numbers) for numbers in work])
        bad = pool.starmap_async(bad_client, [(port, kind) for kind in BAD_KINDS])
        received = sum(honest.get(timeout=120))
        outcomes = bad.get(timeout=120)
    expected = sum(n * n for numbers in work for n in numbers)
    return received, expected, outcomes


def answer(request: bytes) -> bytes:
    """The service itself: the square of a decimal number."""
    return str(int(request) ** 2).encode()
