"""The harness: plans the configurations, runs each in fresh processes, aggregates.

Every configuration (transport, test, size, placement) runs ``repeats`` times;
repetitions are interleaved (all configurations once, then all again...), so a
slow minute on a shared machine spreads over every row instead of spoiling one.
Each run is a new process group (the worker and its peer, or the C program),
killed when it exceeds the time limit: the row is reported as failed, the
transport's cleanup removes what it created, and its remaining runs are not
attempted.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .transport import (
    PLACEMENTS,
    TESTS,
    Placement,
    Plan,
    Test,
    Transport,
)

SIZES: tuple[int, ...] = (64, 4096, 65536, 1 << 20)
LATENCY_SIZE = 64

#: A progress callback: (runs done, runs in total, what is running now).
Progress = Callable[[int, int, str], None]


@dataclass
class Options:
    """What to measure. ``None`` fields take the defaults of a full (or quick) run."""

    transports: Sequence[str] | None = None
    tests: Sequence[Test] = TESTS
    sizes: Sequence[int] | None = None
    placements: Sequence[Placement] | None = None
    repeats: int | None = None
    seconds: float | None = None
    time_limit: float | None = None
    peers: bool = True
    c_baseline: bool = True
    quick: bool = False
    name_prefix: str | None = None
    extra_transports: tuple[Transport, ...] = ()

    def resolved_repeats(self) -> int:
        return self.repeats if self.repeats is not None else (1 if self.quick else 3)

    def resolved_seconds(self) -> float:
        return self.seconds if self.seconds is not None else (0.1 if self.quick else 0.5)

    def resolved_time_limit(self) -> float:
        if self.time_limit is not None:
            return self.time_limit
        return 15.0 + 3 * self.resolved_seconds()

    def resolved_sizes(self) -> tuple[int, ...]:
        return tuple(self.sizes) if self.sizes else SIZES

    def placements_for(self, test: Test) -> tuple[Placement, ...]:
        """Latency runs at every placement; throughput across cores (unless told)."""
        if self.placements:
            return tuple(self.placements)
        if test == "latency" and not self.quick:
            return PLACEMENTS
        return ("cross-core",)

    def to_json(self) -> dict[str, Any]:
        return {
            "transports": list(self.transports) if self.transports else None,
            "tests": list(self.tests),
            "sizes": list(self.resolved_sizes()),
            "placements": {test: list(self.placements_for(test)) for test in self.tests},
            "repeats": self.resolved_repeats(),
            "seconds": self.resolved_seconds(),
            "time_limit": self.resolved_time_limit(),
            "peers": self.peers,
            "c_baseline": self.c_baseline,
            "quick": self.quick,
        }


@dataclass
class Row:
    """One configuration's result, aggregated over its runs (the JSON record)."""

    transport: str
    family: str
    summary: str
    test: Test
    size: int
    placement: Placement
    status: str = "ok"  # "ok", "skipped" or "failed"
    workload: str = "messages"  # "calls": an RPC row, whose "x peer" is relative to RPC peers
    skipped_reason: str | None = None
    error: str | None = None
    reference_only: bool = False
    rtt_median_us: float | None = None
    rtt_p99_us: float | None = None
    rtt_p999_us: float | None = None  # None when a run had too few samples for it
    round_trips: int | None = None  # timed round trips (samples), all runs together
    messages_per_s: float | None = None
    mb_per_s: float | None = None
    cpu_us_per_message: float | None = None
    spread_pct: float | None = None
    ratio_to_best_peer: float | None = None
    best_peer: str | None = None
    ratio_to_c: float | None = None
    c_limit: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[Test, int, Placement]:
        return (self.test, self.size, self.placement)

    def score(self) -> float | None:
        """Higher is better: 1 / round trip, or messages per second."""
        if self.status != "ok":
            return None
        if self.test == "latency":
            return 1.0 / self.rtt_median_us if self.rtt_median_us else None
        return self.messages_per_s


@dataclass
class Report:
    environment: dict[str, Any]
    options: dict[str, Any]
    rows: list[Row]
    elapsed_s: float = 0.0


class Cpus:
    """Which CPUs each placement uses, from this process's affinity."""

    def __init__(self) -> None:
        self.available = sorted(os.sched_getaffinity(0))

    def assign(self, placement: Placement) -> tuple[int | None, int | None] | str:
        """(driver CPU, peer CPU), or why the placement is impossible here."""
        if placement == "unpinned":
            return (None, None)
        if placement == "same-core":
            return (self.available[0], self.available[0])
        if len(self.available) < 2:
            return f"needs two CPUs; this process may use only {self.available}"
        return (self.available[0], self.available[1])


def select_transports(options: Options) -> list[Transport]:
    """The transports to run, in report order; unknown names raise ValueError."""
    known = registry.by_name(options.extra_transports)
    if options.transports:
        unknown = [name for name in options.transports if name not in known]
        if unknown:
            raise ValueError(
                f"unknown transport(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        chosen = [known[name] for name in options.transports]
    else:
        chosen = list(registry.TRANSPORTS)
    if not options.peers:
        chosen = [t for t in chosen if t.family != "peer"]
    if not options.c_baseline:
        chosen = [t for t in chosen if t.family != "C"]
    return chosen


def _unused_sysv_key() -> int:
    used: set[int] = set()
    for table in ("msg", "sem", "shm"):
        with contextlib.suppress(OSError), open(f"/proc/sysvipc/{table}") as lines:
            next(lines, None)
            used.update(int(line.split()[0]) for line in lines if line.strip())
    while True:
        key = random.randint(0x10000000, 0x7FFFFFFF)
        if key not in used:
            return key


@dataclass
class _Config:
    transport: Transport
    row: Row


def plan_rows(options: Options, transports: Sequence[Transport]) -> list[_Config]:
    """Every configuration to report, with the reason when it cannot run."""
    cpus = Cpus()
    configs = []
    for transport in transports:
        missing = transport.unavailable()
        for test in options.tests:
            if test not in transport.tests:
                continue
            sizes = (LATENCY_SIZE,) if test == "latency" else options.resolved_sizes()
            for placement in options.placements_for(test):
                for size in sizes:
                    row = Row(
                        transport.name,
                        transport.family,
                        transport.summary,
                        test,
                        size,
                        placement,
                        reference_only=transport.reference_only,
                        workload=transport.workload,
                    )
                    limit = transport.max_size()
                    assigned = cpus.assign(placement)
                    if missing:
                        row.skipped_reason = missing
                    elif limit is not None and size > limit:
                        row.skipped_reason = f"messages larger than its limit of {limit} bytes"
                    elif isinstance(assigned, str):
                        row.skipped_reason = assigned
                    if row.skipped_reason:
                        row.status = "skipped"
                    configs.append(_Config(transport, row))
    return configs


def _last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                result: dict[str, Any] = json.loads(line)
                return result
    return None


def _wait_exit(pid: int, timeout: float, *, own_child: bool) -> bool:
    """Wait until process ``pid`` exits, without reaping it; False on timeout."""
    deadline = time.monotonic() + timeout
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        if not own_child:
            raise
        pidfd = -1
    try:
        while True:
            if own_child:
                if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            elif select.select([pidfd], [], [], 0)[0]:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if pidfd >= 0:
                select.select([pidfd], [], [], left)  # readable once the process exits
            else:
                time.sleep(min(left, 0.01))
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _can_wait_for_any_process() -> bool:
    """pidfd_open(2) works here (Linux 5.3+), so we can wait for the launcher's children."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


class LauncherGone(Exception):
    """The fork server stopped answering."""


class Launcher:
    """Client of :mod:`unixipc.bench.launcher`, the fork server that starts the runs."""

    def __init__(self) -> None:
        import unixipc

        source = os.path.dirname(os.path.dirname(os.path.abspath(unixipc.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (source, env.get("PYTHONPATH"))))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "unixipc.bench.launcher"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except OSError as error:
            raise LauncherGone(str(error)) from None
        if not line:
            raise LauncherGone(f"exit status {self.process.poll()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _start_run(
    transport: Transport, plan: Plan, out: str, err: str, launcher: Launcher | None
) -> tuple[int, Callable[[], int], bool]:
    """Start one run; return (pid, how to reap it, whether it is our own child)."""
    command = transport.command(plan)
    if command is None and launcher is not None:
        with contextlib.suppress(LauncherGone):
            reply = launcher.request(
                {"op": "run", "plan": plan.to_json(), "stdout": out, "stderr": err}
            )
            pid = int(reply["pid"])
            return pid, lambda: int(launcher.request({"op": "reap", "pid": pid})["status"]), False
    if command is None:
        command = [sys.executable, "-m", "unixipc.bench.worker", json.dumps(plan.to_json())]
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, start_new_session=True)
    return process.pid, process.wait, True


def execute(
    transport: Transport, plan: Plan, time_limit: float, launcher: Launcher | None = None
) -> dict[str, Any]:
    """Run one plan in a new process group; kill it after ``time_limit`` seconds.

    Python transports start from the ``launcher`` (a fork server) when given,
    else as ``python -m unixipc.bench.worker``; the C baseline runs its program.
    Returns the figures, or ``{"skipped": ...}`` / ``{"error": ...}``, plus
    ``elapsed_s``. The transport's cleanup always runs afterwards.
    """
    # Files, not pipes: a straggler holding a pipe open cannot make us wait.
    out, err = f"{plan.workdir}/{plan.prefix}.stdout", f"{plan.workdir}/{plan.prefix}.stderr"
    started = time.monotonic()
    pid, reap, own_child = _start_run(transport, plan, out, err, launcher)
    returncode: int | None = None
    try:
        hung = not _wait_exit(pid, time_limit, own_child=own_child)
    finally:
        # The leader is not reaped yet, so its group id cannot have been reused.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # the run, its peer, any straggler
        with contextlib.suppress(LauncherGone):
            returncode = reap()
        with contextlib.suppress(Exception):
            transport.cleanup(plan)
    elapsed = time.monotonic() - started
    try:
        with open(out) as stdout_file, open(err) as stderr_file:
            stdout, stderr = stdout_file.read(), stderr_file.read()
    finally:
        for path in (out, err):
            with contextlib.suppress(OSError):
                os.unlink(path)
    if hung:
        return {"error": f"hung: killed after the time limit of {time_limit:g} s", "hung": True}
    result = _last_json_line(stdout)
    if result is None:
        detail = (stderr.strip().splitlines() or ["no output"])[-1]
        result = {"error": f"exit status {returncode}: {detail}"}
    elif returncode not in (0, None) and "error" not in result:
        result = {"error": f"exit status {returncode}"}
    result["elapsed_s"] = round(elapsed, 3)
    return result


def _aggregate(row: Row, outcomes: list[dict[str, Any]]) -> None:
    row.runs = outcomes
    good = [run for run in outcomes if "error" not in run and "skipped" not in run]
    problems = [run for run in outcomes if "error" in run]
    skipped = [run for run in outcomes if "skipped" in run]
    if not good:
        if skipped and not problems:
            row.status, row.skipped_reason = "skipped", skipped[0]["skipped"]
        else:
            row.status = "failed"
            row.error = problems[0]["error"] if problems else "no run completed"
        return
    if problems:
        row.error = f"{len(problems)} of {len(outcomes)} runs failed: {problems[0]['error']}"

    def median(name: str) -> float | None:
        values = [run[name] for run in good if run.get(name) is not None]
        return statistics.median(values) if values else None

    row.cpu_us_per_message = median("cpu_us_per_message")
    if row.test == "latency":
        row.rtt_median_us = median("rtt_median_us")
        row.rtt_p99_us = median("rtt_p99_us")
        # Only when every run had enough samples: a median over fewer runs would
        # favour the runs that happened to go well.
        if all(run.get("rtt_p999_us") is not None for run in good):
            row.rtt_p999_us = median("rtt_p999_us")
        row.round_trips = sum(int(run.get("round_trips", 0)) for run in good)
        main = [run["rtt_median_us"] for run in good]
    else:
        row.messages_per_s = median("messages_per_s")
        row.mb_per_s = row.messages_per_s * row.size / 1e6 if row.messages_per_s else None
        main = [run["messages_per_s"] for run in good]
    middle = statistics.median(main)
    if len(main) > 1 and middle:
        row.spread_pct = (max(main) - min(main)) / middle * 100


def add_ratios(rows: Sequence[Row]) -> None:
    """Relative speed to the best peer and to the C limit of the same configuration.

    Both are "how many times as fast" (higher is better): for latency the
    reference's round trip divided by this row's, for throughput this row's
    messages per second divided by the reference's.
    """
    best: dict[tuple[str, str, tuple[Test, int, Placement]], Row] = {}
    for row in rows:
        score = row.score()
        if score is None or row.reference_only or row.family == "unixipc":
            continue
        slot = (row.family, row.workload if row.family == "peer" else "", row.key)
        current = best.get(slot)
        if current is None or score > (current.score() or 0.0):
            best[slot] = row
    for row in rows:
        score = row.score()
        if score is None or row.reference_only:
            continue
        peer = best.get(("peer", row.workload, row.key))
        limit = best.get(("C", "", row.key))
        if peer is not None:
            row.best_peer = peer.transport
            row.ratio_to_best_peer = score / (peer.score() or 1.0)
        if limit is not None:
            row.c_limit = limit.transport
            row.ratio_to_c = score / (limit.score() or 1.0)


def run(options: Options, progress: Progress | None = None) -> Report:
    """Measure every selected configuration and return the report.

    Raises:
        ValueError: an unknown transport name or an impossible option.
    """
    from .environment import describe_environment

    started = time.monotonic()
    transports = select_transports(options)
    configs = plan_rows(options, transports)
    runnable = [config for config in configs if config.row.status == "ok"]
    repeats = options.resolved_repeats()
    seconds = options.resolved_seconds()
    time_limit = options.resolved_time_limit()
    prefix = options.name_prefix or f"uxb{os.getpid()}"
    cpus = Cpus()
    outcomes: dict[int, list[dict[str, Any]]] = {id(config): [] for config in runnable}
    hung: dict[str, str] = {}
    total = len(runnable) * repeats
    done = 0
    workdir = tempfile.mkdtemp(prefix="unixipc-bench-")
    python_runs = any(type(c.transport).command is Transport.command for c in runnable)
    launcher = Launcher() if python_runs and _can_wait_for_any_process() else None
    try:
        for repetition in range(repeats):
            for number, config in enumerate(runnable):
                row, transport = config.row, config.transport
                label = f"{row.transport} {row.test} {_size_label(row.size)} {row.placement}"
                if progress is not None:
                    progress(done, total, label)
                if row.transport in hung:
                    outcome: dict[str, Any] = {"error": f"not run: {hung[row.transport]}"}
                else:
                    assigned = cpus.assign(row.placement)
                    assert not isinstance(assigned, str)
                    plan = Plan(
                        transport=row.transport,
                        adapter=transport.spec(),
                        test=row.test,
                        size=row.size,
                        placement=row.placement,
                        seconds=seconds,
                        driver_cpu=assigned[0],
                        peer_cpu=assigned[1],
                        prefix=f"{prefix}r{repetition}n{number}",
                        workdir=workdir,
                        sysv_key=_unused_sysv_key(),
                        python_path=[entry for entry in sys.path if entry],
                    )
                    outcome = execute(transport, plan, time_limit, launcher)
                    if outcome.pop("hung", False):
                        hung[row.transport] = f"it hung earlier ({label})"
                outcomes[id(config)].append(outcome)
                done += 1
        if progress is not None:
            progress(done, total, "done")
    finally:
        if launcher is not None:
            launcher.close()
        shutil.rmtree(workdir, ignore_errors=True)
    for config in runnable:
        _aggregate(config.row, outcomes[id(config)])
    rows = [config.row for config in configs]
    add_ratios(rows)
    return Report(
        describe_environment(transports),
        options.to_json(),
        rows,
        time.monotonic() - started,
    )


def _size_label(size: int) -> str:
    from .report import size_label

    return size_label(size)
