"""Waiting on a channel in slices, so that a waiting thread can notice close() (private).

The channels have no way to wake a thread blocked on them, so every RPC thread
waits for at most ``SLICE`` seconds at a time. After a slice that brought
nothing, one more look with ``timeout=0`` checks that the peer still lives: a
shared-memory ring checks its peers only every 0.2 s of a single wait, so
shorter waits alone would never notice a peer that died.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import TimeoutExpired

#: How long a waiting thread blocks at a time.
SLICE = 0.1


def receive_slice(receive: Callable[..., bytes], wait: float) -> bytes:
    """``receive`` for at most ``wait`` seconds, then one look that checks the peer.

    Raises:
        WouldBlock: nothing came. Otherwise as ``Channel.receive``.
    """
    try:
        return receive(timeout=wait)
    except TimeoutExpired:
        return receive(timeout=0)


def send_slice(send: Callable[..., None], data: Any, wait: float) -> None:
    """``send`` waiting at most ``wait`` seconds for room, then one try that checks
    the peer.

    Raises:
        WouldBlock: no room (nothing was sent). Otherwise as ``Channel.send``.
    """
    try:
        send(data, timeout=wait)
    except TimeoutExpired:
        send(data, timeout=0)
