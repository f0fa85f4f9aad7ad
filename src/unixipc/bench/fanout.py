"""Fan-out: one publisher, several subscriber processes (``unixipc bench --fanout``).

Rows, each a fresh set of processes forked from this one:

- ``topic 64 B``: ``Publisher.publish`` -> N ``Subscriber.receive_many`` with
  ``overflow="block"``; every subscriber must get every message (checked).
- ``topic 1 MiB loans``: the publisher fills each message in place
  (``with pub.loan(size)``) once; each subscriber copies it out (``receive_into``).
  Aggregate GB/s counts every subscriber's bytes; ``memcpy`` is the same machine's
  copy bandwidth in one process, for comparison.
- peers: iceoryx2 publish-subscribe (blocking publisher, polling subscribers) and
  pyzmq PUB/SUB over ``ipc://`` (which drops what a slow subscriber cannot take:
  the loss is reported).
- idle: the CPU a subscriber blocked in ``receive()`` (and an asyncio task
  awaiting ``AsyncSubscriber.receive()``) uses while nothing is published.

Each subscriber times from its first message to the END message (first byte 1),
so start-up is not counted. Processes are not pinned: with fewer CPUs than
processes they share, which the report says.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import importlib
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .. import topic as topics
from ..aio import AsyncSubscriber
from ..topic import Topic

DATA, END = 0, 1


@dataclass
class FanoutRow:
    """One fan-out measurement."""

    name: str
    size: int
    subscribers: int
    published: int = 0
    rates: list[float] = field(default_factory=list)  # messages/s per subscriber
    received: list[int] = field(default_factory=list)
    note: str = ""

    @property
    def lost(self) -> int:
        return sum(self.published - count for count in self.received)

    @property
    def aggregate_gb_per_s(self) -> float:
        return sum(self.rates) * self.size / 1e9


# -- topics --------------------------------------------------------------------------------


def _topic_subscriber(name: str, size: int, ready: Connection, report: Connection) -> None:
    with Topic.open(name) as handle:
        subscriber = handle.subscribe(history=False)
        ready.send(True)
        count = 0
        first = last = 0.0
        if size <= 4096:
            receive_many = subscriber.receive_many
            while True:
                messages = receive_many(4096)
                if not count:
                    first = time.perf_counter()
                count += len(messages)
                if messages[-1][0] == END:
                    break
        else:
            buffer = bytearray(size)
            receive_into = subscriber.receive_into
            while True:
                receive_into(buffer)
                if not count:
                    first = time.perf_counter()
                count += 1
                if buffer[0] == END:
                    break
        last = time.perf_counter()
    report.send((count - 1, (count - 1) / (last - first) if last > first else 0.0))


def _topic_publish(handle: Topic, size: int, seconds: float) -> int:
    publisher = handle.publisher()
    payload = bytes(size)
    count = 0
    until = time.perf_counter() + seconds
    if size <= 4096:
        publish = publisher.publish
        while time.perf_counter() < until:
            for _ in range(256):
                publish(payload)
            count += 256
        publish(bytes([END]) + bytes(size - 1))
    else:
        while time.perf_counter() < until:
            with publisher.loan(size) as buffer:
                buffer[:] = payload  # written once, in place
            count += 1
        with publisher.loan(size) as buffer:
            buffer[0] = END
    publisher.close()
    return count


def _run(
    row: FanoutRow,
    subscriber: Callable[..., None],
    arguments: tuple[Any, ...],
    publish: Callable[[], int],
) -> FanoutRow:
    """Fork the subscribers, wait until each is ready, publish, collect their reports."""
    context = multiprocessing.get_context("fork")
    readies, reports, processes = [], [], []
    for _ in range(row.subscribers):
        ready_read, ready_write = context.Pipe(duplex=False)
        report_read, report_write = context.Pipe(duplex=False)
        process = context.Process(
            target=subscriber, args=(*arguments, ready_write, report_write), daemon=True
        )
        process.start()
        ready_write.close()
        report_write.close()
        readies.append(ready_read)
        reports.append(report_read)
        processes.append(process)
    try:
        for ready in readies:
            ready.recv()
        row.published = publish()
        for report in reports:
            if not report.poll(60):
                raise RuntimeError(f"{row.name}: a subscriber did not finish")
            count, rate = report.recv()
            row.received.append(count)
            row.rates.append(rate)
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
    return row


def topic_fanout(prefix: str, size: int, subscribers: int, seconds: float) -> FanoutRow:
    name = f"/{prefix}_fanout_{size}"
    capacity = 4096 if size <= 4096 else 8
    handle = Topic.create(name, capacity=capacity, max_message_size=size)
    label = "topic publish -> receive_many" if size <= 4096 else "topic loan -> receive_into"
    try:
        return _run(
            FanoutRow(label, size, subscribers, note="overflow=block: no loss allowed"),
            _topic_subscriber,
            (name, size),
            lambda: _topic_publish(handle, size, seconds),
        )
    finally:
        handle.close()
        with contextlib.suppress(OSError):
            topics.unlink(name)


# -- iceoryx2 ------------------------------------------------------------------------------


def _iceoryx_service(prefix: str, workdir: str, size: int, subscribers: int) -> tuple[Any, ...]:
    iox: Any = importlib.import_module("iceoryx2")
    iox.set_log_level(iox.LogLevel.Error)
    config = iox.config.default()
    config.global_cfg.prefix = iox.FileName.new(f"{prefix}_")
    config.global_cfg.root_path = iox.Path.new(f"{workdir}/")
    node = (
        iox.NodeBuilder.new()
        .config(config)
        .signal_handling_mode(iox.SignalHandlingMode.Disabled)
        .create(iox.ServiceType.Ipc)
    )
    service = (
        node.service_builder(iox.ServiceName.new("fanout"))
        .publish_subscribe(iox.Slice[ctypes.c_uint8])
        .enable_safe_overflow(False)
        .subscriber_max_buffer_size(256)
        .max_subscribers(subscribers)
        .open_or_create()
    )
    return iox, node, service


def _iceoryx_subscriber(
    prefix: str, workdir: str, size: int, subscribers: int, ready: Connection, report: Connection
) -> None:
    _, node, service = _iceoryx_service(prefix, workdir, size, subscribers)
    subscriber = service.subscriber_builder().buffer_size(256).create()
    ready.send(True)
    count = 0
    first = 0.0
    receive = subscriber.receive
    while True:
        sample = receive()
        if sample is None:
            continue
        if not count:
            first = time.perf_counter()
        count += 1
        end = ctypes.c_uint8.from_address(sample.payload().as_ptr()).value == END
        sample.delete()
        if end:
            break
    last = time.perf_counter()
    subscriber.delete()
    del node
    report.send((count - 1, (count - 1) / (last - first) if last > first else 0.0))


def iceoryx_fanout(
    prefix: str, workdir: str, size: int, subscribers: int, seconds: float
) -> FanoutRow:
    iox, node, service = _iceoryx_service(prefix, workdir, size, subscribers)
    publisher = (
        service.publisher_builder()
        .initial_max_slice_len(size)
        .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered)
        .create()
    )
    payload = bytes(size)

    def publish() -> int:
        count = 0
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            sample = publisher.loan_slice_uninit(size)
            ctypes.memmove(sample.payload().as_ptr(), payload, size)
            sample.assume_init().send()
            count += 1
        sample = publisher.loan_slice_uninit(size)
        ctypes.memmove(sample.payload().as_ptr(), bytes([END]) + payload[1:], size)
        sample.assume_init().send()
        return count

    try:
        return _run(
            FanoutRow(
                "iceoryx2 publish-subscribe",
                size,
                subscribers,
                note="blocking publisher; subscribers poll (no blocking receive)",
            ),
            _iceoryx_subscriber,
            (prefix, workdir, size, subscribers),
            publish,
        )
    finally:
        publisher.delete()
        del node


# -- pyzmq PUB/SUB -------------------------------------------------------------------------


def _zmq_subscriber(endpoint: str, ready: Connection, report: Connection) -> None:
    import zmq

    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(endpoint)
    # PUB/SUB joins late: wait for the publisher's greetings before saying ready.
    while socket.recv()[0] != DATA + 2:
        pass
    ready.send(True)
    count = 0
    first = 0.0
    while True:
        message = socket.recv()
        kind = message[0]
        if kind == DATA + 2:
            continue
        if not count:
            first = time.perf_counter()
        count += 1
        if kind == END:
            break
    last = time.perf_counter()
    socket.close(linger=0)
    context.term()
    report.send((count - 1, (count - 1) / (last - first) if last > first else 0.0))


def zmq_fanout(workdir: str, size: int, subscribers: int, seconds: float) -> FanoutRow:
    import threading

    import zmq

    endpoint = f"ipc://{workdir}/fanout.zmq"
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.bind(endpoint)
    payload = bytes(size)
    greeting = bytes([DATA + 2]) + payload[1:]
    greeting_stop = threading.Event()

    def greet() -> None:  # until every subscriber said it is ready
        while not greeting_stop.wait(0.01):
            socket.send(greeting)

    def publish() -> int:
        greeting_stop.set()
        greeter.join()
        count = 0
        until = time.perf_counter() + seconds
        send = socket.send
        while time.perf_counter() < until:
            for _ in range(64):
                send(payload)
            count += 64
        time.sleep(0.05)
        for _ in range(1000):  # END may be dropped too: repeat it
            send(bytes([END]) + payload[1:])
        return count

    greeter = threading.Thread(target=greet, daemon=True)
    greeter.start()
    try:
        row = FanoutRow("pyzmq PUB/SUB ipc://", size, subscribers, note="drops when a SUB lags")
        # The greetings flow until publish() starts; subscribers wait for one to be ready.
        return _run(row, _zmq_subscriber, (endpoint,), publish)
    finally:
        greeting_stop.set()
        socket.close(linger=0)
        context.term()


# -- idle CPU ------------------------------------------------------------------------------


def _idle_subscriber(name: str, use_asyncio: bool, seconds: float, report: Connection) -> None:
    with Topic.open(name) as handle:
        subscriber = handle.subscribe(history=False)
        cpu = time.process_time()
        wall = time.perf_counter()
        if use_asyncio:

            async def idle() -> None:
                with contextlib.suppress(TimeoutError):
                    await AsyncSubscriber(subscriber).receive(timeout=seconds)

            asyncio.run(idle())
        else:
            with contextlib.suppress(TimeoutError):
                subscriber.receive(timeout=seconds)
        report.send((time.process_time() - cpu) / (time.perf_counter() - wall))


def idle_cpu(prefix: str, use_asyncio: bool, seconds: float) -> float:
    """The share of a core a subscriber waiting for ``seconds`` uses (0.01 = 1%)."""
    name = f"/{prefix}_idle"
    handle = Topic.create(name, capacity=4, max_message_size=64)
    context = multiprocessing.get_context("fork")
    reading, writing = context.Pipe(duplex=False)
    try:
        process = context.Process(
            target=_idle_subscriber, args=(name, use_asyncio, seconds, writing), daemon=True
        )
        process.start()
        writing.close()
        share: float = reading.recv()
        process.join(5)
        return share
    finally:
        handle.close()
        with contextlib.suppress(OSError):
            topics.unlink(name)


def memcpy_gb_per_s(size: int, seconds: float = 0.3) -> float:
    """Copy bandwidth of this machine in one process (bytearray slice assignment)."""
    source = bytes(size)
    target = bytearray(size)
    copies = 0
    until = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < until:
        target[:] = source
        copies += 1
    return copies * size / (time.perf_counter() - start) / 1e9


# -- the section ---------------------------------------------------------------------------


def run_fanout(
    subscribers: int = 4, seconds: float = 1.0, peers: bool = True
) -> tuple[list[FanoutRow], dict[str, float]]:
    """Measure every fan-out row and the idle costs; return (rows, figures)."""
    prefix = f"uxfan{os.getpid()}"
    workdir = f"/tmp/{prefix}"
    os.makedirs(workdir, exist_ok=True)
    rows: list[FanoutRow] = []
    figures: dict[str, float] = {}
    try:
        rows.append(topic_fanout(prefix, 64, subscribers, seconds))
        rows.append(topic_fanout(prefix, 1 << 20, subscribers, seconds))
        figures["memcpy_1mib_gb_per_s"] = memcpy_gb_per_s(1 << 20)
        if peers:
            makers: list[Callable[[], FanoutRow]] = [
                lambda: iceoryx_fanout(prefix, workdir, 64, subscribers, seconds),
                lambda: zmq_fanout(workdir, 64, subscribers, seconds),
            ]
            for make in makers:
                try:
                    rows.append(make())
                except ImportError as missing:
                    rows.append(FanoutRow(str(missing), 64, subscribers, note="skipped"))
        figures["idle_subscriber_cpu"] = idle_cpu(prefix, False, 2 * seconds)
        figures["idle_asyncio_cpu"] = idle_cpu(prefix, True, 2 * seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        for path in glob.glob(f"/dev/shm/{prefix}_*") + glob.glob(f"/dev/shm/iox2_{prefix}*"):
            with contextlib.suppress(OSError):
                os.unlink(path)
    return rows, figures


def format_fanout(rows: list[FanoutRow], figures: dict[str, float]) -> str:
    """The fan-out section as text."""
    lines = [
        f"Fan-out: 1 publisher -> {rows[0].subscribers if rows else 0} subscriber processes "
        f"({os.cpu_count()} CPUs, unpinned)",
        f"  {'transport':<32} {'size':>7} {'msg/s each (min)':>17} {'aggregate':>11} "
        f"{'lost':>9}  note",
    ]
    for row in rows:
        if not row.rates:
            lines.append(f"  {row.name:<32} {'':>7} {'-':>17} {'-':>11} {'-':>9}  {row.note}")
            continue
        size = f"{row.size} B" if row.size < 1024 else f"{row.size >> 20} MiB"
        lines.append(
            f"  {row.name:<32} {size:>7} {_rate(min(row.rates)):>17} "
            f"{row.aggregate_gb_per_s:>7.2f} GB/s {row.lost:>9}  {row.note}"
        )
    if "memcpy_1mib_gb_per_s" in figures:
        lines.append(f"  memcpy 1 MiB in one process: {figures['memcpy_1mib_gb_per_s']:.2f} GB/s")
    if "idle_subscriber_cpu" in figures:
        lines.append(
            f"  idle subscriber blocked in receive(): {figures['idle_subscriber_cpu']:.2%} of a "
            f"core; idle asyncio receive: {figures['idle_asyncio_cpu']:.2%}"
        )
    return "\n".join(lines)


def _rate(value: float) -> str:
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"
