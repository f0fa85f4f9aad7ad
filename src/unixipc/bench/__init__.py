"""``unixipc bench``: every facility and the libraries users pick instead, side by side.

Round-trip latency of 64-byte messages (median and p99; the two processes on
different cores, on one core, and unpinned) and one-way throughput from 64 B
to 1 MiB, with the CPU time each message costs, for every transport in
:mod:`unixipc.bench.registry`, and a C program compiled on the spot as the
physical limit. Each configuration runs in fresh processes, repeated and
interleaved; a transport that hangs is killed and reported.

    from unixipc.bench import Options, run
    report = run(Options(transports=["pipe", "c-spin"], quick=True))
"""

from __future__ import annotations

from .runner import Options as Options
from .runner import Report as Report
from .runner import Row as Row
from .runner import run as run

__all__ = ("Options", "Report", "Row", "run")
