"""The measurement loops, the same for every Python transport.

Latency: the driver sends a message and waits for the peer's echo, timing each
round trip with ``perf_counter_ns``; a tenth of the time is warm-up.

An asynchronous link (:class:`AsyncLink`) runs the same loops in an asyncio event
loop on each side, awaiting each send and receive.

Throughput: the peer sends as fast as the transport lets it; the driver
receives, times from its first message, and after a tenth of the time for
warm-up counts for ``seconds``, then raises a stop flag in shared memory. The
peer then sends one END message, so the driver drains what is in flight and the
count is exact.
"""

from __future__ import annotations

import asyncio
import mmap
import time
from array import array
from dataclasses import dataclass

from .transport import END, AsyncLink, Link

WARM_UP = 0.1  # fraction of the measured time spent warming up first
#: Fewer round trips than this leave too few samples beyond the 99.9th percentile
#: (ten) for it to mean anything: it is then not reported.
P999_MIN_SAMPLES = 10_000


def check_period(size: int) -> int:
    """How many messages between looks at the clock or the stop flag (about 256 KiB)."""
    return max(1, min(64, (256 << 10) // size))


def percentile(sorted_values: list[int], fraction: float) -> int:
    """The value below which ``fraction`` of the sorted values lie (nearest rank)."""
    index = min(len(sorted_values) - 1, int(len(sorted_values) * fraction))
    return sorted_values[index]


@dataclass
class Measured:
    """What one side of one run measured."""

    messages: int  # messages this side handled (both directions count for latency)
    cpu_seconds: float
    figures: dict[str, float | None]


def ping(link: Link, size: int, seconds: float) -> Measured:
    """Driver side of the latency test: round trips for ``seconds`` after a warm-up."""
    if isinstance(link, AsyncLink):
        return asyncio.run(_aping(link, size, seconds))
    payload = bytes(size)
    clock = time.perf_counter_ns
    send, receive = link.send, link.receive
    cpu_start = time.process_time()
    round_trips = 0
    warm_until = clock() + int(seconds * WARM_UP * 1e9)
    while clock() < warm_until:
        send(payload)
        receive()
        round_trips += 1
    # Samples go into an array of C integers, not a list of ints: a list keeps every
    # sample's int alive, so the run touches fresh memory as it goes (a page fault
    # costs about 1 us on the project's VM); with the array the ints are reused.
    samples = array("q")
    record = samples.append
    end = clock() + int(seconds * 1e9)
    while True:
        before = clock()
        send(payload)
        receive()
        after = clock()
        record(after - before)
        if after >= end:
            break
    round_trips += len(samples)
    send(bytes([END]) + bytes(size - 1))
    return _round_trips(samples, round_trips, time.process_time() - cpu_start)


async def _aping(link: AsyncLink, size: int, seconds: float) -> Measured:
    """ping() awaiting an asynchronous link."""
    payload = bytes(size)
    clock = time.perf_counter_ns
    send, receive = link.asend, link.areceive
    cpu_start = time.process_time()
    round_trips = 0
    warm_until = clock() + int(seconds * WARM_UP * 1e9)
    while clock() < warm_until:
        await send(payload)
        await receive()
        round_trips += 1
    samples = array("q")
    record = samples.append
    end = clock() + int(seconds * 1e9)
    while True:
        before = clock()
        await send(payload)
        await receive()
        after = clock()
        record(after - before)
        if after >= end:
            break
    round_trips += len(samples)
    await send(bytes([END]) + bytes(size - 1))
    return _round_trips(samples, round_trips, time.process_time() - cpu_start)


def _round_trips(samples: array[int], round_trips: int, cpu: float) -> Measured:
    """The driver's report of a latency run."""
    ordered = sorted(samples)
    return Measured(
        2 * round_trips,
        cpu,
        {
            "rtt_median_us": percentile(ordered, 0.5) / 1e3,
            "rtt_p99_us": percentile(ordered, 0.99) / 1e3,
            "rtt_p999_us": (
                percentile(ordered, 0.999) / 1e3 if len(ordered) >= P999_MIN_SAMPLES else None
            ),
            "round_trips": len(ordered),
        },
    )


def echo(link: Link) -> Measured:
    """Peer side of the latency test: send every message back until END."""
    if isinstance(link, AsyncLink):
        return asyncio.run(_aecho(link))
    send, receive = link.send, link.receive
    cpu_start = time.process_time()
    count = 0
    while True:
        message = receive()
        if message[0] == END:
            break
        send(message)
        count += 1
    return Measured(2 * count, time.process_time() - cpu_start, {})


async def _aecho(link: AsyncLink) -> Measured:
    """echo() awaiting an asynchronous link."""
    send, receive = link.asend, link.areceive
    cpu_start = time.process_time()
    count = 0
    while True:
        message = await receive()
        if message[0] == END:
            break
        await send(message)
        count += 1
    return Measured(2 * count, time.process_time() - cpu_start, {})


def consume(link: Link, size: int, seconds: float, stop: mmap.mmap, batch: bool) -> Measured:
    """Driver side of the throughput test."""
    clock = time.perf_counter
    period = check_period(size)
    cpu_start = time.process_time()
    first = link.receive_batch() if batch else (link.receive(),)
    if first[-1][0] == END:
        raise RuntimeError("the producer ended before sending anything")
    start = clock()
    warm_until = start + seconds * WARM_UP
    end = warm_until + seconds
    received = len(first)
    counted_from = 0
    warming = True
    if batch:
        receive_batch = link.receive_batch
        next_check = period
        while True:
            messages = receive_batch()
            received += len(messages)
            if messages[-1][0] == END:
                received -= 1
                break
            if received >= next_check:
                next_check = received + period
                now = clock()
                if warming and now >= warm_until:
                    warming, start, counted_from = False, now, received
                elif not warming and now >= end:
                    stop[0] = 1
    else:
        receive = link.receive
        done = False
        while not done:
            for _ in range(period):
                if receive()[0] == END:
                    done = True
                    break
                received += 1
            now = clock()
            if warming and now >= warm_until:
                warming, start, counted_from = False, now, received
            elif not warming and now >= end:
                stop[0] = 1
    finished = clock()
    cpu = time.process_time() - cpu_start
    if warming:
        raise RuntimeError("the stream ended before the warm-up did")
    rate = (received - counted_from) / (finished - start)
    return Measured(
        received,
        cpu,
        {
            "messages_per_s": rate,
            "mb_per_s": rate * size / 1e6,
            "seconds": finished - start,
            "counted": received - counted_from,
        },
    )


def produce(link: Link, size: int, stop: mmap.mmap, batch: bool) -> Measured:
    """Peer side of the throughput test: send until the stop flag, then END."""
    payload = bytes(size)
    period = check_period(size)
    cpu_start = time.process_time()
    sent = 0
    if batch:
        send_batch = link.send_batch
        while not stop[0]:
            send_batch(payload, period)
            sent += period
    else:
        send = link.send
        while True:
            for _ in range(period):
                send(payload)
            sent += period
            if stop[0]:
                break
    link.send(bytes([END]) + bytes(size - 1))
    return Measured(sent, time.process_time() - cpu_start, {})
