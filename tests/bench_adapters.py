"""Test-only benchmark adapters (imported by the benchmark's worker processes too)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from unixipc import PosixSharedMemory, posix_shm
from unixipc.bench.transport import Link, Plan, Role, Transport, Unsupported


class _ForeverLink(Link):
    def send(self, data: object) -> None:
        pass

    def receive(self) -> bytes:
        threading.Event().wait()  # never returns: the harness must kill us
        raise AssertionError("unreachable")


class HangTransport(Transport):
    """Creates a named object, records its pids, then blocks forever in receive."""

    name = "test-hang"
    family = "unixipc"
    summary = "test only: never delivers a message"

    def setup(self, plan: Plan) -> None:
        PosixSharedMemory.create(plan.posix_name("hang"), 64).close()
        self._record_pid(plan)

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        self._record_pid(plan)
        return _ForeverLink()

    def cleanup(self, plan: Plan) -> None:
        with contextlib.suppress(FileNotFoundError):
            posix_shm.unlink(plan.posix_name("hang"))

    @staticmethod
    def _record_pid(plan: Plan) -> None:
        with open(plan.path("pids"), "a") as pids:
            pids.write(f"{os.getpid()}\n")


class FailingPeerTransport(Transport):
    """The peer raises as soon as it starts: the run must fail at once, not time out."""

    name = "test-failing-peer"
    family = "peer"
    summary = "test only: the peer raises"

    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        raise RuntimeError("the peer broke on purpose")

    def connect(self, plan: Plan, address: str) -> Link:
        return _ForeverLink()


class UnsupportedTransport(Transport):
    """Refuses every configuration from inside the worker: the row is skipped."""

    name = "test-unsupported"
    family = "peer"
    summary = "test only: refuses to run"

    def setup(self, plan: Plan) -> None:
        raise Unsupported("not on a Tuesday")
