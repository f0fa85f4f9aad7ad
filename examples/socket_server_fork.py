"""Classic server design 1: a process per connection (fork after accept).

The parent only accepts; each connection gets a forked child that serves it
and exits, so a client that misbehaves (or crashes the child) harms nobody
else. The child closes its copy of the listening socket (which, with
unixipc, never removes a UNIX socket's file) and the parent closes its copy
of the connection. The parent reaps children as they finish (waitpid with
WNOHANG) so that none is left a zombie.

Run:  python examples/socket_server_fork.py [CLIENTS] [REQUESTS_PER_CLIENT]
"""

from __future__ import annotations

import os
import socket
import sys

from _socket_clients import BAD_KINDS, MAX_REQUEST, Clients, answer

import unixipc
from unixipc import sockets

SERVED, REJECTED = 0, 3  # child exit statuses


def serve_connection(connection: socket.socket) -> int:
    """In the child: answer requests until the client leaves; return the exit status."""
    try:
        while True:
            request = sockets.receive_message(connection, max_size=MAX_REQUEST, timeout=60)
            sockets.send_message(connection, answer(request), timeout=60)
    except unixipc.EndOfChannel as error:
        if not error.partial:  # type: ignore[attr-defined]
            return SERVED  # the client left between two requests
        reason: Exception = error
    except (sockets.FramingError, unixipc.MessageTooLarge, ValueError) as error:
        reason = error
    # One write(2) per line: the children share stdout, and short writes do not interleave.
    os.write(1, f"child {os.getpid()} rejected a client: {type(reason).__name__}\n".encode())
    return REJECTED


def serve(listener: sockets.Listener, connections: int) -> dict[int, int]:
    """Accept ``connections`` connections, one forked child each; return exit statuses."""
    statuses: dict[int, int] = {}
    running: set[int] = set()
    for _ in range(connections):
        connection, _address = listener.accept(timeout=60)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the child
            status = 1
            try:
                listener.close()
                status = serve_connection(connection)
            finally:
                os._exit(status)
        connection.close()  # the parent's copy: only the child talks to this client
        running.add(pid)
        while running:  # reap whoever has finished, without waiting
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            running.discard(pid)
            statuses[pid] = os.waitstatus_to_exitcode(status)
    for pid in running:
        _, status = os.waitpid(pid, 0)
        statuses[pid] = os.waitstatus_to_exitcode(status)
    return statuses


def main(clients: int = 4, per_client: int = 25) -> None:
    with sockets.tcp_listen("127.0.0.1", 0) as listener:
        port = listener.address[1]
        running = Clients(port, clients, per_client)
        statuses = serve(listener, clients + len(BAD_KINDS))
    received, expected, outcomes = running.result()
    served = sum(1 for status in statuses.values() if status == SERVED)
    rejected = sum(1 for status in statuses.values() if status == REJECTED)
    print(f"fork server: {len(statuses)} connections, each in its own process")
    print(f"{served} clients served, {rejected} bad clients rejected ({', '.join(outcomes)})")
    print(f"sum of squares: clients {received}, expected {expected}")
    if received != expected or served != clients or rejected != len(BAD_KINDS):
        raise SystemExit("mismatch")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
