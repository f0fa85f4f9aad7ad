"""Classic server design 3: one process multiplexing every connection with epoll.

``selectors.DefaultSelector`` (epoll on Linux) sleeps until some socket is
ready, then the server handles exactly the ready ones: no process per client,
no spinning. Each readable connection gets one ``receive_message(timeout=0)``;
if only part of a frame has arrived it raises ``WouldBlock``, unixipc keeps
the part, and epoll wakes us again when more comes.

Run:  python examples/socket_server_selectors.py [CLIENTS] [REQUESTS_PER_CLIENT]
"""

from __future__ import annotations

import selectors
import socket
import sys

from _socket_clients import BAD_KINDS, MAX_REQUEST, Clients, answer

import unixipc
from unixipc import sockets


def serve(listener: sockets.Listener, connections: int) -> tuple[int, int, int]:
    """Serve until ``connections`` clients came and left.

    Returns (requests answered, clients rejected, wake-ups).
    """
    accepted = answered = rejected = wakeups = 0
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ)

        def drop(connection: socket.socket, error: Exception | None) -> None:
            nonlocal rejected
            if error is not None:
                print(f"rejected a client: {type(error).__name__}", flush=True)
                rejected += 1
            selector.unregister(connection)
            connection.close()

        while accepted < connections or len(selector.get_map()) > 1:
            ready = selector.select(timeout=60)
            if not ready:
                raise TimeoutError("no client activity for 60 s")
            wakeups += 1
            for key, _events in ready:
                if key.fileobj is listener:
                    connection, _ = listener.accept(timeout=0)
                    connection.setblocking(False)
                    selector.register(connection, selectors.EVENT_READ)
                    accepted += 1
                    continue
                connection = key.fileobj  # type: ignore[assignment]
                try:
                    request = sockets.receive_message(connection, max_size=MAX_REQUEST, timeout=0)
                except unixipc.WouldBlock:
                    continue  # part of a frame: kept until the rest arrives
                except unixipc.EndOfChannel as error:
                    drop(connection, error if error.partial else None)  # type: ignore[attr-defined]
                except (sockets.FramingError, unixipc.MessageTooLarge, ValueError) as error:
                    drop(connection, error)
                else:
                    sockets.send_message(connection, answer(request), timeout=30)
                    answered += 1
    return answered, rejected, wakeups


def main(clients: int = 4, per_client: int = 25) -> None:
    with sockets.tcp_listen("127.0.0.1", 0) as listener:
        running = Clients(listener.address[1], clients, per_client)
        answered, rejected, wakeups = serve(listener, clients + len(BAD_KINDS))
    received, expected, outcomes = running.result()
    print(f"selectors server ({selectors.DefaultSelector.__name__}): {wakeups} wake-ups")
    print(f"{answered} requests answered, {rejected} bad clients rejected ({', '.join(outcomes)})")
    print(f"sum of squares: clients {received}, expected {expected}")
    if received != expected or answered != clients * per_client or rejected != len(BAD_KINDS):
        raise SystemExit("mismatch")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
