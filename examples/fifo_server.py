"""The classic FIFO client-server (TLPI 44.8): one well-known server FIFO, a reply FIFO per client.

Clients write fixed-size requests (smaller than PIPE_BUF, so each write is atomic
even with many clients) naming their own reply FIFO; the server answers each
client through it. The server holds a write end of its own FIFO so that it does
not see end-of-file when the last client leaves.

Run:  python examples/fifo_server.py [CLIENTS] [REQUESTS_PER_CLIENT]
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import sys
import tempfile

import unixipc
from unixipc import Fifo, fifo

REQUEST_SIZE = 64
assert REQUEST_SIZE <= unixipc.PIPE_BUF


def serve(server_path: str, total_requests: int) -> int:
    """Answer ``total_requests`` requests "<reply fifo> <n>" with n squared; return the sum."""
    answered = 0
    replies: dict[str, unixipc.FifoWriter] = {}
    with Fifo.open(server_path, "r") as requests, Fifo.open(server_path, "w", timeout=0):
        for _ in range(total_requests):
            reply_path, number = requests.receive_exactly(REQUEST_SIZE).decode().split()
            if reply_path not in replies:
                replies[reply_path] = Fifo.open(reply_path, "w", timeout=30)
            try:
                replies[reply_path].send_all(f"{int(number) ** 2:>{REQUEST_SIZE}}".encode())
            except unixipc.PeerDied:  # that client left: forget it, serve the others
                replies.pop(reply_path).close()
                continue
            answered += int(number) ** 2
    for writer in replies.values():
        writer.close()
    return answered


def client(server_path: str, numbers: list[int]) -> int:
    """Send each number to the server and return the sum of the squares it answered."""
    reply_path = f"{server_path}.{os.getpid()}.{secrets.token_hex(4)}"
    fifo.mkfifo(reply_path)
    total = 0
    try:
        with Fifo.open(server_path, "w", timeout=30) as requests:
            replies = None
            for number in numbers:
                requests.send_all(f"{reply_path} {number}".encode().ljust(REQUEST_SIZE))
                replies = replies or Fifo.open(reply_path, "r", timeout=30)
                total += int(replies.receive_exactly(REQUEST_SIZE, timeout=30))
            if replies is not None:
                replies.close()
    finally:
        fifo.unlink(reply_path)
    return total


def main(clients: int = 4, per_client: int = 25) -> None:
    with tempfile.TemporaryDirectory(prefix="fifo-server-") as directory:
        server_path = os.path.join(directory, "server")
        fifo.mkfifo(server_path)
        work = [list(range(c * per_client, (c + 1) * per_client)) for c in range(clients)]
        with multiprocessing.get_context("spawn").Pool(clients) as pool:
            results = pool.starmap_async(client, [(server_path, numbers) for numbers in work])
            served = serve(server_path, clients * per_client)
            client_totals = results.get(timeout=60)
    expected = sum(n * n for numbers in work for n in numbers)
    print(f"server answered {clients * per_client} requests from {clients} clients")
    print(f"sum of squares: server {served}, clients {sum(client_totals)}, expected {expected}")
    if served != expected or sum(client_totals) != expected:
        raise SystemExit("mismatch")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
