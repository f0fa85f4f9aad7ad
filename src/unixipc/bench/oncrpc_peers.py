"""The Sun RPC benchmark: one run, and the C programs it needs (built at run time).

``python -m unixipc.bench.oncrpc_peers PLAN_JSON python|c null|echo tcp|udp`` starts
the C server (made from ``oncrpc_bench.x`` by ``rpcgen -N`` and libtirpc) pinned to
the peer's CPU, then times NULL calls or 64-byte echoes to it for the plan's
seconds from the Python client (:class:`unixipc.oncrpc.Client`) or from the C
client, pinned to the driver's CPU, and prints one JSON line like the C baseline:
round trips (median, p99) and the CPU time of client and server per message.

The programs are cached like the baseline (``~/.cache/unixipc/bench``), keyed by
the sources, the compiler and the flags; without ``rpcgen``, a C compiler or the
libtirpc headers the rows are skipped with the reason.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from .cbuild import CFLAGS, cache_dir, compiler, compiler_version
from .transport import Plan

SOURCES = ("oncrpc_bench.x", "oncrpc_bench_server.c", "oncrpc_bench_client.c")
TIRPC_HEADERS = "/usr/include/tirpc"
PROGRAM, VERSION, ECHO = 0x20000103, 1, 1


@functools.cache
def build() -> tuple[Path, Path] | str:
    """Make the C server and client once; return them, or why there are none."""
    cc, rpcgen = compiler(), shutil.which("rpcgen")
    if cc is None:
        return "no C compiler: install cc (gcc or clang) or set CC"
    if rpcgen is None:
        return "rpcgen is missing (Debian: apt-get install rpcsvc-proto)"
    if not os.path.exists(f"{TIRPC_HEADERS}/rpc/rpc.h"):
        return "the libtirpc headers are missing (Debian: apt-get install libtirpc-dev)"
    texts = [resources.files(__package__).joinpath(name).read_bytes() for name in SOURCES]
    key = hashlib.sha256(
        b"".join(texts) + compiler_version(cc).encode() + " ".join(CFLAGS).encode()
    )
    directory = cache_dir() / f"oncrpc-{key.hexdigest()[:16]}"
    server, client = directory / "server", directory / "client"
    if server.exists() and client.exists():
        return server, client
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=cache_dir()))
        try:
            for name, text in zip(SOURCES, texts, strict=True):
                (scratch / name).write_bytes(text)
            steps = [
                [rpcgen, "-N", "-h", "-o", "oncrpc_bench.h", "oncrpc_bench.x"],
                [rpcgen, "-N", "-c", "-o", "xdr.c", "oncrpc_bench.x"],
                [rpcgen, "-N", "-l", "-o", "clnt.c", "oncrpc_bench.x"],
                [rpcgen, "-N", "-m", "-o", "svc.c", "oncrpc_bench.x"],
                [cc, *CFLAGS, f"-I{TIRPC_HEADERS}", "-o", "server", "svc.c",
                 "oncrpc_bench_server.c", "xdr.c", "-ltirpc"],
                [cc, *CFLAGS, f"-I{TIRPC_HEADERS}", "-o", "client", "oncrpc_bench_client.c",
                 "clnt.c", "xdr.c", "-ltirpc"],
            ]  # fmt: skip
            for step in steps:
                result = subprocess.run(
                    step, cwd=scratch, capture_output=True, text=True, timeout=120, check=False
                )
                if result.returncode != 0:
                    lines = (result.stderr or result.stdout).strip().splitlines()
                    return f"building the Sun RPC peers failed: {' '.join(lines[:3])}"
            try:
                os.rename(scratch, directory)  # atomic: a concurrent build sees all or nothing
            except OSError:
                if not (server.exists() and client.exists()):
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except (OSError, subprocess.SubprocessError) as error:
        return f"could not build the Sun RPC peers: {error}"
    return server, client


def _pinned(cpu: int | None) -> Any:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc (clock ticks)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _python_client(plan: Plan, call: str, protocol: str, port: int) -> dict[str, Any]:
    from .. import oncrpc
    from ..oncrpc import xdr

    if plan.driver_cpu is not None:
        os.sched_setaffinity(0, {plan.driver_cpu})
    blob = xdr.Opaque()
    payload = bytes(plan.size)
    samples: list[int] = []
    clock = time.perf_counter_ns
    cpu_start = time.process_time()
    round_trips = 0
    with oncrpc.Client("127.0.0.1", PROGRAM, VERSION, protocol=protocol, port=port) as client:
        if call == "null":

            def one() -> None:
                client.null()
        else:

            def one() -> None:
                if client._call_typed(ECHO, (blob,), (payload,), blob) != payload:
                    raise RuntimeError("the echo differs")

        warm_until = clock() + int(plan.seconds * 0.1 * 1e9)
        while clock() < warm_until:
            one()
            round_trips += 1
        end = clock() + int(plan.seconds * 1e9)
        while True:
            before = clock()
            one()
            after = clock()
            samples.append(after - before)
            if after >= end:
                break
    round_trips += len(samples)
    samples.sort()
    return {
        "rtt_median_us": samples[len(samples) // 2] / 1e3,
        "rtt_p99_us": samples[min(len(samples) - 1, len(samples) * 99 // 100)] / 1e3,
        "round_trips": len(samples),
        "messages": 2 * round_trips,
        "client_cpu_seconds": time.process_time() - cpu_start,
    }


def run(plan: Plan, client_kind: str, call: str, protocol: str) -> dict[str, Any]:
    """Start the C server, measure with the chosen client, stop the server."""
    built = build()
    if isinstance(built, str):
        return {"skipped": built}
    server_binary, client_binary = built
    server = subprocess.Popen(
        [str(server_binary)], stdout=subprocess.PIPE, text=True, preexec_fn=_pinned(plan.peer_cpu)
    )
    try:
        assert server.stdout is not None
        tcp_port, udp_port = (int(word) for word in server.stdout.readline().split())
        port = tcp_port if protocol == "tcp" else udp_port
        server_cpu_start = _cpu_seconds(server.pid)
        if client_kind == "python":
            figures = _python_client(plan, call, protocol, port)
        else:
            command = [
                str(client_binary),
                protocol,
                call,
                str(port),
                str(plan.size),
                repr(plan.seconds),
            ]
            result = subprocess.run(
                command, capture_output=True, text=True, check=False,
                preexec_fn=_pinned(plan.driver_cpu), timeout=60 + 3 * plan.seconds,
            )  # fmt: skip
            if result.returncode != 0:
                return {"error": f"C client: {result.stderr.strip()[-300:]}"}
            figures = json.loads(result.stdout.strip().splitlines()[-1])
        server_cpu = _cpu_seconds(server.pid) - server_cpu_start
    finally:
        server.kill()
        server.wait()
    cpu = figures.pop("client_cpu_seconds") + server_cpu
    figures["cpu_us_per_message"] = cpu / figures["messages"] * 1e6
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run one plan; print its JSON line; 0 unless it failed."""
    argv = sys.argv if argv is None else argv
    plan = Plan.from_json(json.loads(argv[1]))
    try:
        result = run(plan, argv[2], argv[3], argv[4])
    except Exception as error:  # the harness shows it as this row's error
        result = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
