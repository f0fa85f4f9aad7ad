"""One program over every transport: an echo server and its clients, chosen by a URL.

The server is the classic concurrent server (Stevens, UNP vol. 1, 4.8): it accepts
a connection and forks a child to serve it, so clients are served in parallel. The
clients are separate spawned processes that know nothing but the URL. Nothing in
the program depends on the transport: change the URL and the same code runs over a
UNIX socket, TCP, FIFOs, POSIX or System V message queues, or shared-memory rings.

Every answer is checked by its client (the request upper-cased), and every client
reports how many answers it verified; the server counts what it served.

Run:  python examples/echo_any_url.py [serve|clients] URL [CLIENTS] [REQUESTS]
      e.g. unix:///tmp/echo.sock  tcp://127.0.0.1:0  fifo:///tmp/echo  mq:///echo
           sysvmq://0x4543484f  shm://echo  nats://127.0.0.1:4222/echo

With ``serve`` the program only serves CLIENTS clients; with ``clients`` it only
runs them, against a server started elsewhere (another host: tcp:// or nats://).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time

import unixipc

TIMEOUT = 60  # seconds; generous, so that a loaded machine only slows the example


def client(url: str, number: int, requests: int, results: multiprocessing.Queue[int]) -> None:
    """Connect, send REQUESTS requests, check each answer, report how many were right."""
    verified = 0
    with unixipc.connect(url, timeout=TIMEOUT) as channel:
        for index in range(requests):
            request = f"client {number} request {index}".encode()
            channel.send(request, timeout=TIMEOUT)
            if channel.receive(timeout=TIMEOUT) == request.upper():
                verified += 1
    results.put(verified)


def serve(channel: unixipc.Channel) -> int:
    """Answer every request of one client until it closes; return how many."""
    answered = 0
    while True:
        try:
            request = channel.receive(timeout=TIMEOUT)
        except unixipc.EndOfChannel:  # the client closed after its last request
            return answered
        channel.send(request.upper(), timeout=TIMEOUT)
        answered += 1


def serve_clients(listener: unixipc.Listener, clients: int, requests: int) -> int:
    """Accept CLIENTS clients, each served by a forked child; return how many servers failed."""
    servers = []
    for _ in range(clients):
        channel = listener.accept(timeout=TIMEOUT)
        pid = os.fork()
        if pid == 0:  # the child serves this client, and reports through its exit status
            listener.close()
            answered = serve(channel)
            channel.close()
            os._exit(0 if answered == requests else 1)
        channel.close()  # the parent's copy: the child owns the connection now
        servers.append(pid)
    return sum(os.waitpid(pid, 0)[1] != 0 for pid in servers)


def run_clients(url: str, clients: int, requests: int) -> int:
    """Run CLIENTS spawned client processes against URL; return the answers verified."""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = context.Queue()
    workers = [
        context.Process(target=client, args=(url, number, requests, results))
        for number in range(clients)
    ]
    for worker in workers:
        worker.start()
    verified = sum(results.get(timeout=TIMEOUT) for _ in workers)
    for worker in workers:
        worker.join(TIMEOUT)
    return verified


def main(url: str, clients: int, requests: int, role: str = "both") -> None:
    started = time.monotonic()
    expected = clients * requests
    if role == "clients":
        verified = run_clients(url, clients, requests)
        print(f"{clients} clients x {requests} requests to {url}")
        print(f"answers verified {verified}, expected {expected}")
        return
    with unixipc.listen(url) as listener:
        if role == "serve":
            print(f"serving {clients} clients on {listener.url}", flush=True)
            failed_servers = serve_clients(listener, clients, requests)
            print(f"served {clients} clients; failed servers {failed_servers}")
            return
        # listener.url is where clients connect (for tcp://host:0, the port bound).
        context = multiprocessing.get_context("spawn")
        results: multiprocessing.Queue[int] = context.Queue()
        workers = [
            context.Process(target=client, args=(listener.url, number, requests, results))
            for number in range(clients)
        ]
        for worker in workers:
            worker.start()
        failed_servers = serve_clients(listener, clients, requests)
        verified = sum(results.get(timeout=TIMEOUT) for _ in workers)
        for worker in workers:
            worker.join(TIMEOUT)
        served_url = listener.url
    elapsed = time.monotonic() - started
    print(
        f"{clients} clients x {requests} requests over {served_url}, "
        "each client served by a forked server"
    )
    print(f"answers verified {verified}, expected {expected}; failed servers {failed_servers}")
    print(f"took {elapsed:.2f} s")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    role = arguments.pop(0) if arguments and arguments[0] in ("serve", "clients") else "both"
    if not arguments:
        sys.exit(__doc__)
    main(
        arguments[0],
        int(arguments[1]) if len(arguments) > 1 else 3,
        int(arguments[2]) if len(arguments) > 2 else 100,
        role,
    )
