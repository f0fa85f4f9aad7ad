"""Demo of message queues: POSIX (producers into one queue, with priorities) and
System V (one queue multiplexing clients by message type)."""

from __future__ import annotations

import os
import time

from .._sysv import IPC_PRIVATE
from ..posix_mq import PosixMessageQueue
from ..sysv_mq import SysVMessageQueue
from ._common import DemoLine, fork_child, reap

PRODUCERS = 2
PER_PRODUCER = 2000
MESSAGE = b"x" * 64

CLIENTS = 3
REQUESTS = 300
SERVER_TYPE = 1  # clients write to the server as type 1; the server answers as type = pid


def run_mq() -> DemoLine:
    """Forked producers stream 64-byte messages with priorities into one POSIX queue."""
    name = f"/unixipc-demo-{os.getpid()}"
    with PosixMessageQueue.create(name, max_messages=10, max_message_size=128) as queue:
        try:

            def produce(priority: int) -> None:
                with PosixMessageQueue.open(name, read=False) as writer:
                    for _ in range(PER_PRODUCER):
                        writer.send(MESSAGE, priority=priority, timeout=60)

            start = time.perf_counter()
            pids = [fork_child(lambda p=p: produce(p)) for p in range(PRODUCERS)]  # type: ignore[misc]
            counts = dict.fromkeys(range(PRODUCERS), 0)
            try:
                for _ in range(PRODUCERS * PER_PRODUCER):
                    data, priority = queue.receive(timeout=60)
                    if data != MESSAGE:
                        raise RuntimeError("mq demo: a message was corrupted")
                    counts[priority] += 1
            finally:
                for pid in pids:
                    reap(pid)
            elapsed = time.perf_counter() - start
        finally:
            queue.unlink()
    if set(counts.values()) != {PER_PRODUCER}:
        raise RuntimeError(f"mq demo: lost messages: {counts}")
    total = PRODUCERS * PER_PRODUCER
    return DemoLine(
        "mq",
        f"{total} messages of 64 B from {PRODUCERS} forked producers at priorities 0 and 1, "
        f"none lost ({total / elapsed / 1e3:.0f} k msg/s)",
        elapsed,
    )


def run_sysv_mq() -> DemoLine:
    """Forked clients ask a server over one System V queue; replies go back by type = pid."""
    with SysVMessageQueue.create(IPC_PRIVATE) as queue:
        try:

            def client() -> None:
                me = os.getpid()
                for i in range(REQUESTS):
                    queue.send(f"{me} {i}".encode(), type=SERVER_TYPE, timeout=60)
                    answer = queue.receive(type=me, timeout=60).data
                    if int(answer) != i * i:
                        raise RuntimeError("sysv-mq demo: wrong answer")

            start = time.perf_counter()
            pids = [fork_child(client) for _ in range(CLIENTS)]
            try:
                for _ in range(CLIENTS * REQUESTS):
                    sender, number = queue.receive(type=SERVER_TYPE, timeout=60).data.split()
                    queue.send(str(int(number) ** 2).encode(), type=int(sender), timeout=60)
            finally:
                for pid in pids:
                    reap(pid)
            elapsed = time.perf_counter() - start
        finally:
            queue.unlink()
    return DemoLine(
        "sysv-mq",
        f"{CLIENTS * REQUESTS} requests from {CLIENTS} forked clients through one queue, "
        "each answer addressed by message type = client pid",
        elapsed,
    )
