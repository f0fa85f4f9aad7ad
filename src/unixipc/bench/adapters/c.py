"""The C baseline as transports: the physical limit every row is compared with."""

from __future__ import annotations

from typing import ClassVar

from ..cbuild import build
from ..transport import Plan, Test, Transport


class _CTransport(Transport):
    family = "C"
    mode: ClassVar[str] = ""

    def unavailable(self) -> str | None:
        binary = build()
        return binary if isinstance(binary, str) else None

    def command(self, plan: Plan) -> list[str]:
        binary = build()
        assert not isinstance(binary, str), binary

        def cpu(number: int | None) -> str:
            return str(-1 if number is None else number)

        return [
            str(binary),
            self.mode,
            str(plan.size),
            repr(plan.seconds),
            cpu(plan.driver_cpu),
            cpu(plan.peer_cpu),
        ]


_LATENCY: tuple[Test, ...] = ("latency",)
_THROUGHPUT: tuple[Test, ...] = ("throughput",)


class CSpinTransport(_CTransport):
    name = "c-spin"
    mode = "spin"
    summary = "C: shared memory, both sides spinning (pause instruction)"
    tests = _LATENCY


class CFutexTransport(_CTransport):
    name = "c-futex"
    mode = "futex"
    summary = "C: shared memory, both sides sleeping in futex(2)"
    tests = _LATENCY


class CHybridTransport(_CTransport):
    name = "c-hybrid"
    mode = "hybrid"
    summary = "C: shared memory, spin 50 us then futex(2)"
    tests = _LATENCY


class CPipeTransport(_CTransport):
    name = "c-pipe"
    mode = "pipe"
    summary = "C: two pipes, blocking read(2)/write(2)"
    tests = _LATENCY


class CSpscTransport(_CTransport):
    name = "c-spsc"
    mode = "spsc"
    summary = "C: single-producer single-consumer byte ring, memcpy in and out, both spinning"
    tests = _THROUGHPUT


class CRingTransport(_CTransport):
    name = "c-ring"
    mode = "ring"
    summary = "C: shared-memory ring of slots, spin then futex(2)"
    tests = _THROUGHPUT


class CMemcpyTransport(_CTransport):
    name = "c-memcpy"
    mode = "memcpy"
    summary = "C: memcpy of each message in one process (reference, not a transport)"
    tests = _THROUGHPUT
    reference_only = True
