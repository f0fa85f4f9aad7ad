"""Measure unixipc.Ring against the C limit on this machine (not part of the tests).

    python benchmarks/ring_bench.py [--repeat 5] [--quick] [--only SECTION,...]
    python benchmarks/ring_bench.py --scaling [--producers 1,2,4,8] [--consumers 1,2,4,8]

The C limit is the benchmark's own (``unixipc/bench/baseline.c``, compiled once
per machine with the machine's cc, see ``unixipc.bench.cbuild``). Sections:

- ``latency``: 64 B round trips between two processes pinned to two cores, each
  timed on its own: median, p99 and p99.9 of the Ring (send / receive), of the C
  spin on two shared cache lines (``c-spin``) and median of a pure-Python spin;
- ``stream``: one-way throughput between two pinned processes: 64 B messages with
  send/receive and with send_many/receive_many (256 per call), 4 KiB, 64 KiB and
  1 MiB with receive_into, against the C single-producer single-consumer ring
  (``c-spsc``: memcpy in, memcpy out, both spinning) and ``memcpy`` alone;
- ``overhead``: what a call costs in one process, no peer: an empty loop turn, an
  almost empty method call of the Ring, one ``send`` and one ``receive`` of 64 B
  on an uncontended ring, and per message in batches of 256: the floor under the
  unbatched rate;
- ``idle``: the CPU a receiver blocked on an empty ring uses;
- ``aio`` (``--only aio``): 64 B round trips with ``unixipc.aio`` on both sides over
  ``shm://`` (the rings' doorbells) and over ``mq://`` (the queues' descriptors),
  against the synchronous ``unix://`` round trip, pinned cross-core as above;
  and the CPU an asyncio task awaiting ``receive`` on an idle ``shm://`` channel uses;
- ``scaling`` (``--scaling``): P producers x C consumers on one ring, unpinned,
  64 B messages with send / receive_many(256); a bounded number of messages per
  run (``--messages``) and a time limit per run (``--time-limit``); every message
  is counted (and its id checked with ``--verify``).

Ring and C runs alternate (the ``--repeat`` runs of each are interleaved), so that
both see the same load; figures are medians, ratios medians of per-pair ratios.
The load average is printed before and after: other processes on the machine
skew everything, the tails most.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import mmap
import os
import resource
import signal
import statistics
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import unixipc
from unixipc import EndOfChannel, Ring, TimeoutExpired, aio
from unixipc.bench.cbuild import build
from unixipc.bench.measure import P999_MIN_SAMPLES, percentile
from unixipc.bench.transport import buffer_capacity

CPU_PARENT, CPU_CHILD = 0, 1
#: Every ring this script makes is named /NAME_PREFIX_...: unique to this process.
NAME_PREFIX = f"ringbench{os.getpid()}"
SECTIONS = ("latency", "stream", "overhead", "idle", "scaling", "aio")
DEFAULT_SECTIONS = ("latency", "stream", "overhead", "idle")


def pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


@contextlib.contextmanager
def pinned(cpu: int) -> Iterator[None]:
    """This process on ``cpu`` only, for the block (then as before)."""
    before = os.sched_getaffinity(0)
    pin(cpu)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def in_child(work: Callable[[], None], cpu: int | None = CPU_CHILD) -> int:
    """Run ``work`` in a forked child (pinned to ``cpu`` unless None); return its pid."""
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            if cpu is not None:
                pin(cpu)
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
    return f"/{NAME_PREFIX}_{stem}_{time.monotonic_ns()}"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- the C limit ---------------------------------------------------------------------


def c_baseline() -> Path:
    binary = build()
    if isinstance(binary, str):
        raise SystemExit(f"the C baseline is needed: {binary}")
    return binary


def c_run(mode: str, size: int, seconds: float) -> dict[str, float]:
    """One run of the C baseline, pinned to CPU_PARENT (driver) and CPU_CHILD (peer)."""
    out = subprocess.run(
        [str(c_baseline()), mode, str(size), repr(seconds), str(CPU_PARENT), str(CPU_CHILD)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


# -- latency -------------------------------------------------------------------------


@dataclass
class Latency:
    """Round trip percentiles in microseconds (p999 is None with too few samples)."""

    median: float
    p99: float
    p999: float | None
    samples: int

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Latency:
        ordered = sorted(samples_ns)
        enough = len(ordered) >= P999_MIN_SAMPLES
        return cls(
            percentile(ordered, 0.5) / 1e3,
            percentile(ordered, 0.99) / 1e3,
            percentile(ordered, 0.999) / 1e3 if enough else None,
            len(ordered),
        )


def ring_pingpong(rounds: int, warm_up: int | None = None) -> Latency:
    """64 B round trips parent -> child -> parent over two rings, each one timed.

    The warm-up goes twice round the rings: the first lap of a fresh ring takes a
    page fault every 4 KiB in each process (about 1 us each here), which would show
    in the tail. Samples go into a preallocated array, so that storing them touches
    no fresh memory during the run.
    """
    there, back = unique("ping"), unique("pong")
    capacity = buffer_capacity(64)
    outbound = Ring.create(there, capacity)
    inbound = Ring.create(back, capacity)
    message = b"p" * 64
    if warm_up is None:
        warm_up = max(rounds // 10, 2 * capacity // 80)  # 80-byte records

    def echo() -> None:
        with Ring.open(there) as requests, Ring.open(back) as replies:
            receive, send = requests.receive, replies.send
            for _ in range(warm_up + rounds):
                send(receive())

    pid = in_child(echo)
    samples = array("q", bytes(8 * rounds))
    try:
        with pinned(CPU_PARENT):
            send, receive, clock = outbound.send, inbound.receive, time.perf_counter_ns
            for _ in range(warm_up):
                send(message)
                receive()
            for index in range(rounds):
                started = clock()
                send(message)
                receive()
                samples[index] = clock() - started
        reap(pid)
    finally:
        for handle in (outbound, inbound):
            handle.unlink()
            handle.close()
    return Latency.of(samples)


def python_spin_pingpong(rounds: int) -> float:
    """Median round trip (us) through a shared mmap, both sides spinning in pure Python:
    the message is copied in, then a sequence byte published; the reader spins on
    the byte and copies the message out."""
    memory = mmap.mmap(-1, 4096)
    view = memoryview(memory)
    message = b"p" * 64

    def echo() -> None:
        for i in range(1, rounds + 1):
            tick = i & 0xFF
            while view[0] != tick:
                pass
            request = bytes(view[64:128])
            view[192:256] = request
            view[128] = tick

    pid = in_child(echo)
    clock = time.perf_counter_ns
    samples = array("q", bytes(8 * rounds))
    with pinned(CPU_PARENT):
        for i in range(1, rounds + 1):
            started = clock()
            tick = i & 0xFF
            view[64:128] = message
            view[0] = tick
            while view[128] != tick:
                pass
            bytes(view[192:256])
            samples[i - 1] = clock() - started
    reap(pid)
    view.release()
    memory.close()
    return Latency.of(samples[rounds // 10 :]).median


def c_pingpong(seconds: float) -> Latency:
    figures = c_run("spin", 64, seconds)
    p999 = figures.get("rtt_p999_us")
    return Latency(
        figures["rtt_median_us"], figures["rtt_p99_us"], p999, int(figures["round_trips"])
    )


def latency_section(repeat: int, scale: int) -> None:
    rounds = 300_000 // scale
    pairs = [(ring_pingpong(rounds), c_pingpong(1.0 / scale)) for _ in range(repeat)]
    py = statistics.median(python_spin_pingpong(50_000 // scale) for _ in range(repeat))

    def med(values: Sequence[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if len(present) == len(values) else None

    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    print(
        f"64 B ping-pong round trip, cross-core ({rounds} timed round trips per Ring run, "
        f"C for {1.0 / scale:g} s; {repeat} runs):"
    )
    print("  percentile   Ring us    C spin us   Ring/C")
    for label, pick in (
        ("median", lambda x: x.median),
        ("p99", lambda x: x.p99),
        ("p99.9", lambda x: x.p999),
    ):
        ring = med([pick(r) for r, _ in pairs])
        c = med([pick(c) for _, c in pairs])
        ratios = [pick(r) / pick(c) for r, c in pairs if pick(r) is not None and pick(c)]
        ratio = f"{statistics.median(ratios):.1f}x" if len(ratios) == len(pairs) else "-"
        print(f"  {label:<10} {show(ring):>9} {show(c):>12} {ratio:>8}")
    print(f"  pure-Python spin, median: {py:.2f} us")


# -- streaming -----------------------------------------------------------------------


def ring_stream(size: int, count: int, batch: int) -> float:
    """Messages per second from a child producer to this process (pinned apart):
    send_many/receive_many with ``batch`` > 1, else send and receive (receive_into a
    reused buffer from 4 KiB up)."""
    name = unique("stream")
    consumer = Ring.create(name, buffer_capacity(size))
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
        with pinned(CPU_PARENT):
            consumer.declare(consumer=True)
            pid = in_child(produce)
            expected = count // batch * batch if batch > 1 else count
            if batch > 1:
                receive_many = consumer.receive_many
                received = len(receive_many(batch))
                started = time.perf_counter()
                first = received
                while received < expected:
                    received += len(receive_many(batch))
            elif size >= 4096:
                buffer = bytearray(size)
                receive_into = consumer.receive_into
                receive_into(buffer)
                started = time.perf_counter()
                first = 1
                for _ in range(count - 1):
                    receive_into(buffer)
                received = count
            else:  # small messages: receive(), a new bytes object each
                receive = consumer.receive
                receive()
                started = time.perf_counter()
                first = 1
                for _ in range(count - 1):
                    receive()
                received = count
            elapsed = time.perf_counter() - started
        reap(pid)
    finally:
        consumer.unlink()
        consumer.close()
    return (received - first) / elapsed


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


def stream_section(repeat: int, scale: int) -> None:
    seconds = 0.5 / scale
    n64 = 3_000_000 // scale
    single, c64, ratio1 = paired(
        repeat,
        lambda: ring_stream(64, n64, 1),
        lambda: c_run("spsc", 64, seconds)["messages_per_s"],
    )
    batched, _, ratio256 = paired(
        repeat,
        lambda: ring_stream(64, n64 * 4, 256),
        lambda: c_run("spsc", 64, seconds)["messages_per_s"],
    )
    print("One-way streaming, cross-core (C: c-spsc, memcpy in and out, both spinning):")
    print(
        f"  64 B: send/receive {single / 1e6:.2f} M msg/s | send_many/receive_many (256) "
        f"{batched / 1e6:.2f} M msg/s | C {c64 / 1e6:.1f} M msg/s "
        f"(Ring/C {ratio1:.2f}, batched {ratio256:.2f})"
    )
    for size, count in ((4096, 1_000_000), (65536, 100_000), (1 << 20, 6_000)):
        count //= scale
        python, native, ratio = paired(
            repeat,
            lambda: ring_stream(size, count, 1) * size,  # noqa: B023
            lambda: c_run("spsc", size, seconds)["mb_per_s"] * 1e6,  # noqa: B023
        )
        copy = statistics.median(
            c_run("memcpy", size, seconds)["mb_per_s"] * 1e6 for _ in range(max(1, repeat // 2))
        )
        label = f"{size // 1024} KiB" if size < 1 << 20 else "1 MiB"
        print(
            f"  {label} (ring of {buffer_capacity(size) >> 10} KiB, receive_into): "
            f"Ring {python / 1e9:.2f} GB/s | C {native / 1e9:.2f} GB/s "
            f"(Ring/C {ratio:.2f}) | memcpy alone {copy / 1e9:.2f} GB/s"
        )


# -- the cost of a call --------------------------------------------------------------


def per_call_ns(count: int, loop: Callable[[int], None]) -> float:
    """Time one ``loop(count)``, in ns per iteration."""
    started = time.perf_counter_ns()
    loop(count)
    return (time.perf_counter_ns() - started) / count


def overhead_section(scale: int) -> dict[str, float]:
    """What each call costs with no peer and warm caches (one process on CPU_PARENT);
    the best of five timings of each."""
    message = b"m" * 64
    name = unique("overhead")
    count = 102_400 // scale  # a multiple of 256 (for scale 1, 10, 100)
    ring = Ring.create(name, 1 << 24)  # holds 102,400 records of 80 bytes
    try:
        busy, send, receive = ring._busy, ring.send, ring.receive
        send_many, receive_many = ring.send_many, ring.receive_many
        batch = [message] * 256

        def empty(n: int) -> None:
            for _ in range(n):
                pass

        def call(n: int) -> None:
            for _ in range(n):
                busy()

        def sends(n: int) -> None:
            for _ in range(n):
                send(message)

        def receives(n: int) -> None:
            for _ in range(n):
                receive()

        def pairs(n: int) -> None:
            for _ in range(n):
                send(message)
                receive()

        def batches(n: int) -> None:
            for _ in range(n // 256):
                send_many(batch)
                receive_many(256)

        timings: dict[str, list[float]] = {}
        with pinned(CPU_PARENT):
            for _ in range(5):
                for label, loop in (
                    ("empty loop turn", empty),
                    ("almost empty method call: Ring._busy()", call),
                    ("send(64 B), uncontended", sends),
                    ("receive() of 64 B, uncontended", receives),  # what sends() left
                    ("send + receive, same process", pairs),
                    ("send_many + receive_many (256 a call), per message", batches),
                ):
                    timings.setdefault(label, []).append(per_call_ns(count, loop))
    finally:
        ring.unlink()
        ring.close()
    return {label: min(values) for label, values in timings.items()}


def print_overhead(figures: dict[str, float]) -> None:
    print("What a call costs in one process (no peer, warm caches; best of 5):")
    for label, value in figures.items():
        print(f"  {label:<52} {value:7.1f} ns")
    slower = max(figures["send(64 B), uncontended"], figures["receive() of 64 B, uncontended"])
    print(
        f"  => unbatched 64 B between two cores: at most {1e3 / slower:.1f} M msg/s, the rate of "
        "the slower side's calls alone (the rest is moving cache lines between the cores)"
    )


# -- idle ----------------------------------------------------------------------------


def _cpu_seconds(function: Callable[[], object]) -> float:
    """CPU time (user and system) this process spends in ``function()``."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    function()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _in_child_value(work: Callable[[], float]) -> float:
    """``work()`` run in a child process; the float it returns."""
    read_end, write_end = os.pipe()

    def report() -> None:
        os.write(write_end, f"{work()}".encode())

    try:
        reap(in_child(report))
        return float(os.read(read_end, 100))
    finally:
        os.close(read_end)
        os.close(write_end)


def idle_receiver_cpu(seconds: float) -> float:
    """Percent of one core used by a receiver blocked on an empty ring for ``seconds``."""
    name = unique("idle")
    handle = Ring.create(name, 1 << 16)

    def wait() -> float:
        with Ring.open(name) as idle:

            def blocked() -> None:
                with contextlib.suppress(TimeoutExpired):
                    idle.receive(timeout=seconds)

            return _cpu_seconds(blocked)

    try:
        used = _in_child_value(wait)
    finally:
        handle.unlink()
        handle.close()
    return used / seconds * 100


# -- asyncio over channels -----------------------------------------------------------


def channel_url(scheme: str) -> str:
    if scheme == "unix":
        return f"unix:///tmp/{NAME_PREFIX}_{time.monotonic_ns()}.sock"
    return f"{scheme}://{unique('aio')[1:]}"


async def _aio_echo(channel: unixipc.Channel) -> None:
    async with aio.AsyncChannel(channel) as peer:
        buffer = bytearray(64)
        with contextlib.suppress(EndOfChannel):
            while True:
                size = await peer.receive_into(buffer)
                await peer.send(memoryview(buffer)[:size])


def _sync_echo(channel: unixipc.Channel) -> None:
    with channel:
        buffer = bytearray(64)
        with contextlib.suppress(EndOfChannel):
            while True:
                size = channel.receive_into(buffer)
                channel.send(memoryview(buffer)[:size])


async def _aio_drive(channel: unixipc.Channel, rounds: int, warm_up: int) -> array[int]:
    samples = array("q")
    clock = time.perf_counter_ns
    payload = bytes(64)
    buffer = bytearray(64)
    async with aio.AsyncChannel(channel) as driver:
        for turn in range(warm_up + rounds):
            before = clock()
            await driver.send(payload)
            await driver.receive_into(buffer)
            if turn >= warm_up:
                samples.append(clock() - before)
    return samples


def _sync_drive(channel: unixipc.Channel, rounds: int, warm_up: int) -> array[int]:
    samples = array("q")
    clock = time.perf_counter_ns
    payload = bytes(64)
    buffer = bytearray(64)
    with channel:
        for turn in range(warm_up + rounds):
            before = clock()
            channel.send(payload)
            channel.receive_into(buffer)
            if turn >= warm_up:
                samples.append(clock() - before)
    return samples


def channel_pingpong(scheme: str, asynchronous: bool, rounds: int) -> Latency:
    """64 B round trips over a connected ``scheme://`` channel, the peer in a pinned child."""
    url = channel_url(scheme)
    listener = unixipc.listen(url)
    try:

        def peer() -> None:
            channel = unixipc.connect(listener.url, timeout=30)
            if asynchronous:
                asyncio.run(_aio_echo(channel))
            else:
                _sync_echo(channel)

        pid = in_child(peer)
        with pinned(CPU_PARENT):
            channel = listener.accept(timeout=30)
            warm_up = rounds // 10
            if asynchronous:
                samples = asyncio.run(_aio_drive(channel, rounds, warm_up))
            else:
                samples = _sync_drive(channel, rounds, warm_up)
        reap(pid)
    finally:
        listener.close()
    return Latency.of(samples)


def idle_aio_waiter_cpu(seconds: float) -> float:
    """Percent of one core used by an asyncio task awaiting receive on an idle shm:// channel."""
    near, far = unixipc.channel_pair("shm")

    async def idle() -> None:
        with contextlib.suppress(TimeoutExpired):
            await aio.AsyncChannel(near).receive(timeout=seconds)

    try:
        used = _in_child_value(lambda: _cpu_seconds(lambda: asyncio.run(idle())))
    finally:
        near.close()
        far.close()
    return used / seconds * 100


AIO_ROWS = (("shm", True), ("mq", True), ("unix", False))


def aio_section(repeat: int, scale: int) -> None:
    rounds = 20_000 // scale
    runs: dict[tuple[str, bool], list[Latency]] = {row: [] for row in AIO_ROWS}
    for _ in range(repeat):  # interleaved: every row sees the same load
        for scheme, asynchronous in AIO_ROWS:
            runs[scheme, asynchronous].append(channel_pingpong(scheme, asynchronous, rounds))
    print(
        f"64 B round trip over channels, cross-core, both sides alike ({rounds} round trips "
        f"per run, {repeat} runs interleaved, medians):"
    )
    medians = {}
    for (scheme, asynchronous), latencies in runs.items():
        label = f"{'asyncio' if asynchronous else 'sync'} {scheme}://"
        median = statistics.median(x.median for x in latencies)
        p99 = statistics.median(x.p99 for x in latencies)
        medians[scheme] = median
        print(f"  {label:<16} median {median:7.2f} us   p99 {p99:7.2f} us")
    print(
        f"  asyncio shm / asyncio mq: {medians['shm'] / medians['mq']:.2f} (target <= 1); "
        f"asyncio shm / sync unix: {medians['shm'] / medians['unix']:.2f} (target <= 2)"
    )
    idle = statistics.median(idle_aio_waiter_cpu(2.0) for _ in range(max(1, repeat // 2)))
    print(f"idle asyncio waiter on shm:// for 2 s: {idle:.3f}% of a core")


# -- scaling -------------------------------------------------------------------------

_ID = struct.Struct("<Q56x")  # a scaling message: its id, then 56 bytes of padding
_RESULT = struct.Struct("<QQq")  # per consumer: messages, sum of ids, end time (ns)


@dataclass
class ScalingRun:
    """One run of P producers and C consumers on one ring."""

    producers: int
    consumers: int
    sent: int
    received: int
    id_sum: int | None  # sum of the ids received (with verify), else None
    seconds: float  # from the start signal to the last consumer's EndOfChannel
    cpu_seconds: float  # every child's user + system time
    timed_out: bool

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0


def scaling_run(
    producers: int,
    consumers: int,
    messages: int,
    *,
    time_limit: float = 60.0,
    verify: bool = False,
    batch: int = 256,
) -> ScalingRun:
    """Send ``messages`` 64 B messages (split among the producers) through one ring to
    ``consumers`` processes (send / receive_many(batch)); every process unpinned.

    Producers number their messages (ids 0 .. messages-1); consumers count what they
    get (and with ``verify`` add up the ids) until the ring ends (EndOfChannel, once
    the last producer closed it and it is empty). All processes open the ring and
    declare their role before a common start; a run still going after ``time_limit``
    seconds is killed and reported as timed out.
    """
    name = unique(f"scale{producers}x{consumers}")
    ring = Ring.create(name, buffer_capacity(64))
    results = mmap.mmap(-1, max(mmap.PAGESIZE, 64 * (consumers + 1)))
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    share, extra = divmod(messages, producers)
    ranges, first = [], 0
    for index in range(producers):
        count = share + (index < extra)
        ranges.append((first, first + count))
        first += count

    def start(role: str) -> Ring:
        handle = Ring.open(name)
        handle.declare(producer=role == "producer", consumer=role == "consumer")
        os.close(ready_read)
        os.write(ready_write, b"r")
        os.close(go_write)
        os.read(go_read, 1)  # returns at end of file: the parent closed its end
        return handle

    def producer(low: int, high: int) -> Callable[[], None]:
        def work() -> None:
            payloads = [_ID.pack(i) for i in range(low, high)]
            handle = start("producer")
            send = handle.send
            for payload in payloads:
                send(payload)
            handle.close()  # the last producer's close ends the consumers' wait

        return work

    def consumer(index: int) -> Callable[[], None]:
        def work() -> None:
            handle = start("consumer")
            receive_many = handle.receive_many
            count = total = 0
            while True:
                try:
                    got = receive_many(batch)
                except EndOfChannel:
                    break
                count += len(got)
                if verify:
                    total += sum(memoryview(b"".join(got)).cast("Q")[::8])
            ended = time.monotonic_ns()
            _RESULT.pack_into(results, 64 * (index + 1), count, total & (2**64 - 1), ended)
            handle.close()

        return work

    children: list[int] = []
    try:
        for low, high in ranges:
            children.append(in_child(producer(low, high), cpu=None))
        for index in range(consumers):
            children.append(in_child(consumer(index), cpu=None))
        os.close(ready_write)
        os.close(go_read)
        for _ in children:  # every child has opened the ring and declared its role
            if not os.read(ready_read, 1):
                break
        started = time.monotonic_ns()
        os.close(go_write)  # start
        deadline = time.monotonic() + time_limit
        cpu = 0.0
        timed_out = False
        waiting = set(children)
        while waiting:
            for pid in list(waiting):
                done, status, usage = os.wait4(pid, os.WNOHANG)
                if done:
                    waiting.discard(pid)
                    cpu += usage.ru_utime + usage.ru_stime
                    if os.waitstatus_to_exitcode(status) != 0 and not timed_out:
                        raise RuntimeError(f"a scaling child failed ({status})")
            if waiting and time.monotonic() > deadline and not timed_out:
                timed_out = True
                for pid in waiting:
                    os.kill(pid, signal.SIGKILL)
            if waiting:
                time.sleep(0.002)
        counts = [_RESULT.unpack_from(results, 64 * (i + 1)) for i in range(consumers)]
        received = sum(count for count, _, _ in counts)
        ended = max((end for _, _, end in counts), default=started)
        id_sum = sum(total for _, total, _ in counts) & (2**64 - 1) if verify else None
        return ScalingRun(
            producers,
            consumers,
            messages,
            received,
            id_sum,
            max(ended - started, 0) / 1e9,
            cpu,
            timed_out,
        )
    finally:
        for fd in (ready_read, ready_write, go_read, go_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        for pid in children:  # only if something above failed: they are ours
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        results.close()
        ring.unlink()
        ring.close()


def scaling_section(
    producers: Sequence[int],
    consumers: Sequence[int],
    messages: int,
    repeat: int,
    time_limit: float,
    verify: bool,
) -> None:
    grid = [(p, c) for p in producers for c in consumers]
    runs: dict[tuple[int, int], list[ScalingRun]] = {cell: [] for cell in grid}
    for _ in range(repeat):  # interleaved: a noisy minute spreads over every cell
        for p, c in grid:
            run = scaling_run(p, c, messages, time_limit=time_limit, verify=verify)
            if not run.timed_out and run.received != run.sent:
                raise RuntimeError(f"{p}x{c}: sent {run.sent}, received {run.received}")
            if verify and run.id_sum != messages * (messages - 1) // 2 % 2**64:
                raise RuntimeError(f"{p}x{c}: the ids received are not those sent")
            runs[p, c].append(run)

    def rate(cell: tuple[int, int]) -> float | None:
        good = [run.rate for run in runs[cell] if not run.timed_out]
        return statistics.median(good) if len(good) == len(runs[cell]) else None

    def cpu(cell: tuple[int, int]) -> float:
        return statistics.median(run.cpu_seconds / run.sent * 1e9 for run in runs[cell])

    print(
        f"Scaling: P producers x C consumers on one ring of {buffer_capacity(64) >> 20} MiB, "
        f"64 B messages, send / receive_many(256), unpinned on {os.cpu_count()} CPUs; "
        f"{messages:,} messages per run, median of {repeat} (M msg/s; CPU ns per message)"
    )
    print("  P \\ C " + "".join(f"{c:>14}" for c in consumers))
    for p in producers:
        cells = []
        for c in consumers:
            value = rate((p, c))
            text = "timed out" if value is None else f"{value / 1e6:.2f} ({cpu((p, c)):.0f})"
            cells.append(f"{text:>14}")
        print(f"  {p:>5} " + "".join(cells))
    base = rate((1, 1)) if (1, 1) in runs else None
    if base:
        for cell, target in (((1, 8), 0.5), ((4, 4), 0.8), ((8, 1), None), ((2, 2), None)):
            value = rate(cell) if cell in runs else None
            if value is not None:
                goal = f" (target >= {target:.0%})" if target else ""
                print(f"  {cell[0]} + {cell[1]}: {value / base:.0%} of 1 + 1{goal}")


# -- main ----------------------------------------------------------------------------


def counts(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"a list of counts >= 1, like 1,2,4,8: {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages per run")
    parser.add_argument(
        "--only",
        type=lambda text: [part for part in text.split(",") if part],
        default=list(DEFAULT_SECTIONS),
        help=f"sections to run, of {','.join(SECTIONS)} (default: all but scaling)",
    )
    parser.add_argument("--scaling", action="store_true", help="run the scaling section only")
    parser.add_argument("--producers", type=counts, default=[1, 2, 4, 8], metavar="N,N")
    parser.add_argument("--consumers", type=counts, default=[1, 2, 4, 8], metavar="N,N")
    parser.add_argument(
        "--messages", type=int, default=400_000, help="messages per scaling run (all producers)"
    )
    parser.add_argument(
        "--time-limit", type=float, default=60.0, help="seconds before a scaling run is killed"
    )
    parser.add_argument("--verify", action="store_true", help="check every scaling message's id")
    args = parser.parse_args()
    sections = ["scaling"] if args.scaling else args.only
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {SECTIONS}")
    scale = 10 if args.quick else 1

    print(f"load average: {load()}, cpus: {os.cpu_count()}")
    if "latency" in sections:
        latency_section(args.repeat, scale)
    if "stream" in sections:
        stream_section(args.repeat, scale)
    if "overhead" in sections:
        print_overhead(overhead_section(scale))
    if "idle" in sections:
        idle = statistics.median(idle_receiver_cpu(2.0) for _ in range(max(1, args.repeat // 2)))
        print(f"idle receiver blocked 2 s: {idle:.3f}% of a core")
    if "aio" in sections:
        aio_section(args.repeat, scale)
    if "scaling" in sections:
        scaling_section(
            args.producers,
            args.consumers,
            args.messages // scale,
            args.repeat,
            args.time_limit,
            args.verify,
        )
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
