"""Classic server design 2: non-blocking sockets polled in a loop, in one process.

Every socket is non-blocking; the server walks over the listener and each
connection, trying each operation once (``timeout=0``), which either succeeds
or raises ``WouldBlock`` at once. Nothing ever waits, so one slow or malicious
client cannot stall the others; the price is the loop itself, which spins
(here it naps 1 ms when a whole pass found nothing to do). Half of a frame
that has arrived is kept by unixipc until the rest comes.

Run:  python examples/socket_server_polling.py [CLIENTS] [REQUESTS_PER_CLIENT]
"""

from __future__ import annotations

import socket
import sys
import time

from _socket_clients import BAD_KINDS, MAX_REQUEST, Clients, answer

import unixipc
from unixipc import sockets


def serve(listener: sockets.Listener, connections: int) -> tuple[int, int, int, int]:
    """Serve until ``connections`` clients came and left.

    Returns (requests answered, clients rejected, passes over the sockets, idle passes).
    """
    open_connections: list[socket.socket] = []
    accepted = answered = rejected = passes = idle = 0
    while accepted < connections or open_connections:
        passes += 1
        progress = False
        if accepted < connections:
            try:
                connection, _ = listener.accept(timeout=0)
            except unixipc.WouldBlock:
                pass
            else:
                connection.setblocking(False)
                open_connections.append(connection)
                accepted += 1
                progress = True
        for connection in list(open_connections):
            try:
                request = sockets.receive_message(connection, max_size=MAX_REQUEST, timeout=0)
            except unixipc.WouldBlock:
                continue  # nothing (or only part of a frame) yet
            except unixipc.EndOfChannel as error:
                if error.partial:  # type: ignore[attr-defined]
                    print(f"rejected a client: {type(error).__name__}", flush=True)
                    rejected += 1
                open_connections.remove(connection)
                connection.close()
            except (sockets.FramingError, unixipc.MessageTooLarge, ValueError) as error:
                print(f"rejected a client: {type(error).__name__}", flush=True)
                rejected += 1
                open_connections.remove(connection)
                connection.close()
            else:
                # Replies are small: the socket buffer takes them at once.
                sockets.send_message(connection, answer(request), timeout=30)
                answered += 1
            progress = True
        if not progress:
            idle += 1
            time.sleep(0.001)
    return answered, rejected, passes, idle


def main(clients: int = 4, per_client: int = 25) -> None:
    with sockets.tcp_listen("127.0.0.1", 0) as listener:
        running = Clients(listener.address[1], clients, per_client)
        answered, rejected, passes, idle = serve(listener, clients + len(BAD_KINDS))
    received, expected, outcomes = running.result()
    print(f"polling server: {passes} passes over the sockets, {idle} of them found nothing")
    print(f"{answered} requests answered, {rejected} bad clients rejected ({', '.join(outcomes)})")
    print(f"sum of squares: clients {received}, expected {expected}")
    if received != expected or answered != clients * per_client or rejected != len(BAD_KINDS):
        raise SystemExit("mismatch")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
