"""``unixipc demo``: a tour of every facility, each crossing real process boundaries.

Each facility has a module here with ``run() -> DemoLine``; STEPS lists them in
the order the tour shows them. A new facility adds its module and one line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ._common import DemoLine as DemoLine

# (facility, module): each module has run() -> DemoLine.
STEPS: tuple[tuple[str, str], ...] = (
    ("pipe", "pipes"),
    ("popen", "pipes"),
    ("fifo", "fifos"),
    ("shm", "memory"),
    ("sysv-shm", "memory"),
    ("mmap", "memory"),
    ("sem", "semaphores"),
    ("sysv-sem", "semaphores"),
    ("mq", "queues"),
    ("sysv-mq", "queues"),
    ("mutex", "locks"),
    ("file-lock", "locks"),
    # channels: the same program over several URLs
    ("ch-pipe", "channels"),
    ("ch-socketpair", "channels"),
    ("ch-unix", "channels"),
    ("ch-tcp", "channels"),
    ("ch-fifo", "channels"),
    ("ch-mq", "channels"),
    ("ch-sysvmq", "channels"),
    ("ch-shm-pair", "channels"),
    ("ch-shm", "channels"),
    ("ring", "ring"),
    ("unix-socket", "sockets"),
    ("tcp", "sockets"),
    ("signal", "signals"),
)


def step_runner(facility: str, module: str) -> Callable[[], DemoLine]:
    """The function that runs one facility's part of the tour."""
    loaded = importlib.import_module(f"{__package__}.{module}")
    runner: Callable[[], DemoLine] = getattr(loaded, f"run_{facility.replace('-', '_')}")
    return runner
