"""Shared pieces of the demo: the line each step reports, and a forked worker."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class DemoLine:
    """What one facility's step showed: what crossed, between which processes, how fast."""

    facility: str
    crossed: str
    seconds: float

    def __str__(self) -> str:
        return f"{self.facility:<10} {self.crossed} in {self.seconds * 1e3:.1f} ms"


def fork_child(work: Callable[[], None]) -> int:
    """Run ``work`` in a forked child process and return its pid.

    The child exits 0 when ``work`` returns and 1 if it raised (after printing
    the traceback), never returning into the caller's code.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            work()
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            os._exit(status)
    return pid


def reap(pid: int) -> None:
    """Wait for a child of fork_child and fail loudly if it failed."""
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"demo child {pid} failed with status {code}")
