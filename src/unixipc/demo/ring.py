"""Demo of the shared-memory ring: 64-byte messages streamed to a forked child."""

from __future__ import annotations

import os
import time

from ..ring import Ring
from ._common import DemoLine, fork_child, reap

MESSAGES = 1_000_000
BATCH = 256
MESSAGE = b"r" * 64


def run_ring() -> DemoLine:
    """Stream 64 B messages through a ring to a forked child, which counts them."""
    name = f"/unixipc-demo-ring-{os.getpid()}"
    producer = Ring.create(name, 1 << 18)
    try:

        def consume() -> None:
            with Ring.open(name) as consumer:
                received = 0
                while received < MESSAGES:
                    messages = consumer.receive_many(BATCH, timeout=30)
                    if messages.count(MESSAGE) != len(messages):
                        raise RuntimeError("ring demo: a message differs")
                    received += len(messages)

        pid = fork_child(consume)
        batch = [MESSAGE] * BATCH
        start = time.perf_counter()
        for _ in range(MESSAGES // BATCH):
            producer.send_many(batch, timeout=30)
        producer.send_many([MESSAGE] * (MESSAGES % BATCH), timeout=30)
        reap(pid)
        elapsed = time.perf_counter() - start
    finally:
        producer.unlink()
        producer.close()
    return DemoLine(
        "ring",
        f"{MESSAGES} messages of 64 B streamed to a forked child "
        f"({MESSAGES / elapsed / 1e6:.1f} M msg/s)",
        elapsed,
    )
