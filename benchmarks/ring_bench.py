"""Measure unixipc.Ring against C baselines on this machine (not part of the tests).

    python benchmarks/ring_bench.py [--repeat 5] [--quick]

Every figure is the median of ``--repeat`` runs, each between two processes
pinned to two different cores (CPUs 0 and 1); Ring and C runs alternate, and
ratios are medians of the per-pair ratios, so that both see the same load. The
C baselines (benchmarks/ring_baseline.c) are compiled with gcc at run time:

- ping-pong: median round trip of a 64-byte message (timed per batch of 100, so
  that the clock's cost stays out), Ring versus a C spin on two shared cache
  lines, and versus a pure-Python spin on a shared mmap;
- streaming: 64 B messages per second with send/receive and with
  send_many/receive_many; 4 KiB, 64 KiB and 1 MiB in bytes per second
  (receive_into a reused buffer), versus a C single-producer ring;
- idle: the CPU a receiver blocked on an empty ring uses (percent of one core).

The load average is printed first: other processes on the machine skew everything.
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from unixipc import Ring, TimeoutExpired

HERE = Path(__file__).resolve().parent
CPU_PARENT, CPU_CHILD = 0, 1


def pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


def in_child(work: Callable[[], None]) -> int:
    """Run ``work`` in a forked child pinned to CPU_CHILD; return its pid."""
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            pin(CPU_CHILD)
            work()
        except BaseException as error:  # report, never return into the caller
            print(f"child failed: {error!r}", file=sys.stderr)
            status = 1
        finally:
            os._exit(status)
    return pid


def reap(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("benchmark child failed")


def unique(stem: str) -> str:
    return f"/ringbench{os.getpid()}_{stem}_{time.monotonic_ns()}"


# -- C baselines --------------------------------------------------------------------


def build_baseline(directory: Path) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("the C baselines need gcc")
    binary = directory / "ring_baseline"
    subprocess.run(
        [gcc, "-O2", "-Wall", "-Wextra", "-o", str(binary), str(HERE / "ring_baseline.c")],
        check=True,
    )
    return binary


def c_pingpong(binary: Path, rounds: int) -> float:
    out = subprocess.run(
        [str(binary), "pingpong", str(rounds), str(CPU_PARENT), str(CPU_CHILD)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out) / 1000  # microseconds


def c_stream(binary: Path, size: int, count: int, capacity: int) -> tuple[float, float]:
    out = subprocess.run(
        [str(binary), "stream", str(size), str(count), str(capacity), "0", "1"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


# -- Ring ----------------------------------------------------------------------------


BATCH = 100  # round trips per timing: keeps the clock's own cost out of the figure


def ring_pingpong(rounds: int) -> float:
    """Median round trip in microseconds of 64 B: parent -> child -> parent."""
    there, back = unique("ping"), unique("pong")
    outbound = Ring.create(there, 1 << 16)
    inbound = Ring.create(back, 1 << 16)
    message = b"p" * 64
    batches = rounds // BATCH

    def echo() -> None:
        with Ring.open(there) as requests, Ring.open(back) as replies:
            receive, send = requests.receive, replies.send
            for _ in range((batches + 10) * BATCH):
                send(receive())

    pid = in_child(echo)
    try:
        pin(CPU_PARENT)
        send, receive, clock = outbound.send, inbound.receive, time.perf_counter_ns
        trips = []
        for batch in range(batches + 10):
            started = clock()
            for _ in range(BATCH):
                send(message)
                receive()
            if batch >= 10:  # the first batches warm up both sides
                trips.append((clock() - started) / BATCH)
        reap(pid)
    finally:
        for handle in (outbound, inbound):
            handle.unlink()
            handle.close()
    return statistics.median(trips) / 1000


def python_spin_pingpong(rounds: int) -> float:
    """The same round trip through a shared mmap, both sides spinning in pure Python:
    the message is copied in, then a sequence byte published; the reader spins on
    the byte and copies the message out."""
    memory = mmap.mmap(-1, 4096)
    view = memoryview(memory)
    message = b"p" * 64
    batches = rounds // BATCH

    def echo() -> None:
        for i in range(1, (batches + 10) * BATCH + 1):
            tick = i & 0xFF
            while view[0] != tick:
                pass
            request = bytes(view[64:128])
            view[192:256] = request
            view[128] = tick

    pid = in_child(echo)
    pin(CPU_PARENT)
    clock = time.perf_counter_ns
    trips = []
    i = 0
    for batch in range(batches + 10):
        started = clock()
        for _ in range(BATCH):
            i += 1
            tick = i & 0xFF
            view[64:128] = message
            view[0] = tick
            while view[128] != tick:
                pass
            bytes(view[192:256])
        if batch >= 10:
            trips.append((clock() - started) / BATCH)
    reap(pid)
    view.release()
    memory.close()
    return statistics.median(trips) / 1000


def ring_stream(size: int, count: int, capacity: int, batch: int) -> tuple[float, float]:
    """(messages/s, bytes/s) from a child producer to this process."""
    name = unique("stream")
    consumer = Ring.create(name, capacity)
    message = b"s" * size

    def produce() -> None:
        with Ring.open(name) as producer:
            if batch > 1:
                messages = [message] * batch
                for _ in range(count // batch):
                    producer.send_many(messages)
            else:
                send = producer.send
                for _ in range(count):
                    send(message)

    try:
        pin(CPU_PARENT)
        consumer.declare(consumer=True)
        pid = in_child(produce)
        received = 0
        started = 0.0
        if batch > 1:
            receive_many = consumer.receive_many
            received = len(receive_many(batch))
            started = time.perf_counter()
            while received < count:
                received += len(receive_many(batch))
        elif size >= 4096:
            buffer = bytearray(size)
            receive_into = consumer.receive_into
            receive_into(buffer)
            started = time.perf_counter()
            for _ in range(count - 1):
                receive_into(buffer)
            received = count
        else:
            receive = consumer.receive
            receive()
            started = time.perf_counter()
            for _ in range(count - 1):
                receive()
            received = count
        elapsed = time.perf_counter() - started
        reap(pid)
    finally:
        consumer.unlink()
        consumer.close()
    rate = (received - 1) / elapsed
    return rate, rate * size


def idle_receiver_cpu(seconds: float) -> float:
    """Percent of one core used by a receiver blocked on an empty ring for ``seconds``."""
    name = unique("idle")
    handle = Ring.create(name, 1 << 16)
    read_end, write_end = os.pipe()

    def wait() -> None:
        with Ring.open(name) as idle:
            before = resource.getrusage(resource.RUSAGE_SELF)
            with contextlib.suppress(TimeoutExpired):
                idle.receive(timeout=seconds)
            after = resource.getrusage(resource.RUSAGE_SELF)
            used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            os.write(write_end, f"{used}".encode())

    try:
        pid = in_child(wait)
        reap(pid)
        used = float(os.read(read_end, 100))
    finally:
        os.close(read_end)
        os.close(write_end)
        handle.unlink()
        handle.close()
    return used / seconds * 100


# -- report --------------------------------------------------------------------------


def paired(
    repeat: int, ours: Callable[[], float], theirs: Callable[[], float]
) -> tuple[float, float, float]:
    """Run the two measurements alternately (so that both see the same load);
    return their medians and the median of the per-pair ratios ours/theirs."""
    pairs = [(ours(), theirs()) for _ in range(repeat)]
    return (
        statistics.median(a for a, _ in pairs),
        statistics.median(b for _, b in pairs),
        statistics.median(a / b for a, b in pairs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--quick", action="store_true", help="fewer messages per run")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    repeat = args.repeat

    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, cpus: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as directory:
        binary = build_baseline(Path(directory))
        ring_rtt, c_rtt, ratio = paired(
            repeat,
            lambda: ring_pingpong(100_000 // scale),
            lambda: c_pingpong(binary, 200_000 // scale),
        )
        py_rtt = statistics.median(python_spin_pingpong(50_000 // scale) for _ in range(repeat))
        print(
            f"64 B ping-pong round trip, median: Ring {ring_rtt:.2f} us | C spin {c_rtt:.2f} us "
            f"(Ring/C {ratio:.1f}x) | pure-Python spin {py_rtt:.2f} us "
            f"(Ring {py_rtt / ring_rtt:.1f}x faster)"
        )

        n64 = 2_000_000 // scale
        single = statistics.median(ring_stream(64, n64, 1 << 18, 1)[0] for _ in range(repeat))
        batched, c64, _ = paired(
            repeat,
            lambda: ring_stream(64, n64 * 4, 1 << 18, 256)[0],
            lambda: c_stream(binary, 64, n64 * 4, 1 << 18)[0],
        )
        print(
            f"64 B streaming: send/receive {single / 1e6:.2f} M msg/s | send_many/receive_many "
            f"(256 per call) {batched / 1e6:.2f} M msg/s | C ring {c64 / 1e6:.1f} M msg/s"
        )

        for size, count, capacity in (
            (4096, 400_000, 1 << 20),
            (65536, 40_000, 4 << 20),
            (1 << 20, 3_000, 8 << 20),
        ):
            count //= scale
            python, native, ratio = paired(
                repeat,
                lambda: ring_stream(size, count, capacity, 1)[1],  # noqa: B023
                lambda: c_stream(binary, size, count, capacity)[1],  # noqa: B023
            )
            label = f"{size // 1024} KiB" if size < 1 << 20 else "1 MiB"
            print(
                f"{label} streaming (ring of {capacity >> 10} KiB, receive_into): "
                f"Ring {python / 1e9:.2f} GB/s | C ring {native / 1e9:.2f} GB/s "
                f"(Ring/C {ratio * 100:.0f}%)"
            )

    idle = statistics.median(idle_receiver_cpu(2.0) for _ in range(max(1, repeat // 2)))
    print(f"idle receiver blocked 2 s: {idle:.3f}% of a core")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
