"""Sending from an event loop without ever blocking it (private).

A message goes out at once when the channel has room (``send(timeout=0)``, the
usual case); otherwise it waits in a queue that a helper thread drains in
order, and every later message queues behind it, so order is kept. The queue
holds only what the protocol allows in flight (replies to admitted calls,
stream items within the client's credit, cancellations), so it is bounded.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from .._thread_lock import ThreadLock
from ..channel import Channel
from ..errors import IPCError, WouldBlock
from ._slices import SLICE, send_slice


class Outbox:
    """Orderly, non-blocking sends on ``channel`` from one event-loop thread."""

    def __init__(
        self,
        channel: Channel,
        send_lock: threading.Lock | ThreadLock,
        stopping: Callable[[], bool],
    ) -> None:
        self._channel = channel
        self._send_lock = send_lock  # shared with threads that send directly
        self._stopping = stopping
        self._lock = threading.Lock()
        self._queue: deque[bytes] = deque()
        self._draining = False

    def queued(self) -> int:
        """How many messages wait for room."""
        return len(self._queue)

    def send(self, data: bytes) -> bool:
        """Send ``data`` now or queue it; False if the connection is gone."""
        if self._stopping():
            return False
        if not self._queue and self._send_lock.acquire(blocking=False):
            try:
                self._channel.send(data, timeout=0)
                return True
            except WouldBlock:
                pass  # nothing was sent: queue it
            except IPCError:
                return False
            finally:
                self._send_lock.release()
        with self._lock:
            self._queue.append(data)
            start = not self._draining
            self._draining = True
        if start:
            threading.Thread(target=self._drain, name="unixipc-rpc-send", daemon=True).start()
        return True

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._draining = False
                    return
                data = self._queue[0]
            sent = self._send_blocking(data)
            with self._lock:
                if not sent:
                    self._queue.clear()
                elif self._queue:
                    self._queue.popleft()

    def _send_blocking(self, data: bytes) -> bool:
        with self._send_lock:
            while not self._stopping():
                try:
                    send_slice(self._channel.send, data, SLICE)
                    return True
                except WouldBlock:
                    continue  # nothing was sent
                except IPCError:
                    return False
        return False
