"""A long multi-process soak of rings and channels, every message counted (not part of the tests).

    python benchmarks/soak.py [--seconds 3600] [--round 60] [--rate 0]
    make soak [SOAK_SECONDS=3600]

The time is cut into rounds; each round makes new objects and new processes:

- a ring (64 KiB) with two producers (send, send_many) and two consumers
  (receive, receive_into, receive_many, receive_view); every message carries
  its producer, its number and a length, and a body checked byte for byte;
  each consumer checks that every producer's messages come in order, and the
  round checks that each producer's count and the sums of its numbers (plain
  and squared) match what the consumers got: nothing lost, nothing twice;
- channels over ``shm://`` and ``unix://``: a listener process echoes for two
  client processes each, which send messages of 1 B to 1.5 MiB (larger than a
  ring record: split and reassembled) and check every echo; the round checks
  that the listener echoed exactly as many as the clients got back.

After each round: every process ended with status 0, nothing of the round is
left in /dev/shm, and this process's descriptors are as many as before. Each
worker reports its memory (VmRSS) when it starts and ends; the summary shows
the largest growth seen. ``--rate`` caps each producer and client at that many
messages per second (0: as fast as they go), to share a busy machine.

Exit status 0 if every check of every round passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import unixipc
from unixipc import EndOfChannel, Ring, ring

PATTERN = random.Random(11).randbytes(1 << 21)
HEADER = struct.Struct("<IQI")  # producer, number, body offset in PATTERN
RING_CAPACITY = 64 << 10
CLIENTS = 2


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def make_message(producer: int, number: int, size: int) -> bytes:
    offset = (producer * 7919 + number * 104729) % (len(PATTERN) - size)
    return HEADER.pack(producer, number, offset) + PATTERN[offset : offset + size]


def check_message(data: bytes | memoryview) -> tuple[int, int]:
    producer, number, offset = HEADER.unpack_from(data)
    body = data[HEADER.size :]
    if body != PATTERN[offset : offset + len(body)]:
        raise AssertionError(f"message {producer}/{number} is damaged")
    return producer, number


class Pacer:
    """At most `rate` calls per second (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate if rate > 0 else 0.0
        self.next = time.monotonic()

    def wait(self, count: int = 1) -> None:
        if self.interval:
            self.next += self.interval * count
            delay = self.next - time.monotonic()
            if delay > 0:
                time.sleep(delay)


# -- workers (forked; each writes one JSON report) ---------------------------------------


def ring_producer(name: str, ident: int, until: float, rate: float) -> dict[str, object]:
    rng = random.Random(ident)
    pacer = Pacer(rate)
    sent = total = 0
    sums = [0, 0]
    with Ring.open(name) as handle:
        largest = handle.max_message_size - HEADER.size
        while time.monotonic() < until:
            batch = rng.randrange(1, 16) if ident % 2 else 1
            sizes = [rng.choice((8, 64, 512, 4096, rng.randrange(largest))) for _ in range(batch)]
            messages = [make_message(ident, sent + i, size) for i, size in enumerate(sizes)]
            if batch == 1:
                handle.send(messages[0], timeout=60)
            else:
                handle.send_many(messages, timeout=60)
            for i in range(batch):
                sums[0] += sent + i
                sums[1] += (sent + i) ** 2
            sent += batch
            total += sum(map(len, messages))
            pacer.wait(batch)
    return {"sent": sent, "bytes": total, "sums": sums}


def ring_consumer(name: str, ident: int) -> dict[str, object]:
    rng = random.Random(-ident)
    buffer = bytearray(RING_CAPACITY)
    last: dict[int, int] = {}
    counts: dict[int, list[int]] = {}  # producer: [count, sum, sum of squares]
    with Ring.open(name) as handle:
        handle.declare(consumer=True)
        while True:
            how = rng.randrange(4)
            try:
                if how == 0:
                    got = [check_message(handle.receive(timeout=120))]
                elif how == 1:
                    length = handle.receive_into(buffer, timeout=120)
                    got = [check_message(bytes(buffer[:length]))]
                elif how == 2:
                    got = [check_message(m) for m in handle.receive_many(32, timeout=120)]
                else:
                    with handle.receive_view(timeout=120) as view:
                        got = [check_message(view)]
            except EndOfChannel:
                break
            for producer, number in got:
                if last.get(producer, -1) >= number:
                    raise AssertionError(f"producer {producer}: {number} after {last[producer]}")
                last[producer] = number
                tally = counts.setdefault(producer, [0, 0, 0])
                tally[0] += 1
                tally[1] += number
                tally[2] += number * number
    return {"counts": {str(k): v for k, v in counts.items()}}


def echo_server(url: str, connections: int) -> dict[str, object]:
    echoed = [0]
    failures: list[str] = []
    lock = threading.Lock()

    def serve(channel: unixipc.Channel) -> None:
        count = 0
        try:
            with channel:
                while True:
                    try:
                        channel.send(channel.receive(timeout=120), timeout=120)
                    except EndOfChannel:
                        break
                    count += 1
        except Exception:
            failures.append(traceback.format_exc())
        with lock:
            echoed[0] += count

    with unixipc.listen(url, max_message_size=2 << 20) as listener:
        threads = []
        for _ in range(connections):
            thread = threading.Thread(target=serve, args=(listener.accept(timeout=60),))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
    if failures:
        raise AssertionError("\n".join(failures))
    return {"echoed": echoed[0]}


def echo_client(url: str, ident: int, until: float, rate: float) -> dict[str, object]:
    rng = random.Random(ident * 31)
    pacer = Pacer(rate)
    trips = total = 0
    with unixipc.connect(url, timeout=60, max_message_size=2 << 20) as channel:
        while time.monotonic() < until:
            size = rng.choice((1, 100, 4096, 65536, rng.randrange(1, 3 << 19)))
            offset = rng.randrange(len(PATTERN) - size)
            message = PATTERN[offset : offset + size]
            channel.send(message, timeout=60)
            if channel.receive(timeout=60) != message:
                raise AssertionError(f"{url}: echo {trips} differs")
            trips += 1
            total += size
            pacer.wait()
    return {"trips": trips, "bytes": total}


# -- the parent --------------------------------------------------------------------------


@dataclass
class Worker:
    label: str
    pid: int
    report: str
    result: dict[str, object] = field(default_factory=dict)
    status: int | None = None


def fork(
    label: str, directory: str, work: Callable[..., dict[str, object]], *args: object
) -> Worker:
    report = os.path.join(directory, f"{label}.json")
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            before = rss_kib()
            result = work(*args)
            result["rss_kib"] = [before, rss_kib()]
        except BaseException:
            result = {"failed": traceback.format_exc()}
            status = 1
        with open(report, "w") as out:
            json.dump(result, out)
        os._exit(status)
    return Worker(label, pid, report)


def reap(workers: list[Worker], deadline: float) -> None:
    for worker in workers:
        while worker.status is None:
            pid, status = os.waitpid(worker.pid, os.WNOHANG)
            if pid:
                worker.status = status
            elif time.monotonic() > deadline:
                os.kill(worker.pid, signal.SIGKILL)
                os.waitpid(worker.pid, 0)
                worker.status = -1
            else:
                time.sleep(0.05)
        try:
            with open(worker.report) as report:
                worker.result = json.load(report)
        except (OSError, ValueError):
            worker.result = {}


def one_round(number: int, seconds: float, rate: float) -> tuple[list[str], dict[str, float]]:
    tag = f"unixipc-soak-{os.getpid()}-{number}"
    problems: list[str] = []
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="soak") as directory:
        until = time.monotonic() + seconds
        ring_name = f"/{tag}-ring"
        Ring.create(ring_name, RING_CAPACITY).close()
        workers = [
            fork(f"producer{i}", directory, ring_producer, ring_name, i, until, rate)
            for i in range(2)
        ]
        workers += [fork(f"consumer{i}", directory, ring_consumer, ring_name, i) for i in range(2)]
        urls = {"shm": f"shm://{tag}-channel", "unix": f"unix://{directory}/soak.sock"}
        for scheme, url in urls.items():
            workers.append(fork(f"{scheme}-server", directory, echo_server, url, CLIENTS))
            time.sleep(0.5)  # let it listen
            for i in range(CLIENTS):
                workers.append(
                    fork(f"{scheme}-client{i}", directory, echo_client, url, i, until, rate)
                )
        reap(workers, until + 300)
        ring.unlink(ring_name)
    for worker in workers:
        if worker.status != 0 or "failed" in worker.result:
            how = "hung" if worker.status == -1 else f"status {worker.status}"
            problems.append(f"{worker.label} {how}: {worker.result.get('failed', '')}")
    if problems:
        return problems, figures
    by_label = {worker.label: worker.result for worker in workers}
    # The ring: what each producer sent is exactly what the consumers got from it.
    for i in range(2):
        sent = by_label[f"producer{i}"]
        got = [0, 0, 0]
        for c in range(2):
            tally = by_label[f"consumer{c}"]["counts"].get(str(i), [0, 0, 0])  # type: ignore[union-attr]
            got = [a + b for a, b in zip(got, tally, strict=True)]
        if got != [sent["sent"], *sent["sums"]]:  # type: ignore[misc]
            problems.append(f"ring: producer {i} sent {sent['sent']}, consumers got {got[0]}")
    figures["ring messages"] = sum(by_label[f"producer{i}"]["sent"] for i in range(2))  # type: ignore[misc]
    figures["ring bytes"] = sum(by_label[f"producer{i}"]["bytes"] for i in range(2))  # type: ignore[misc]
    for scheme in urls:
        trips = sum(by_label[f"{scheme}-client{i}"]["trips"] for i in range(CLIENTS))  # type: ignore[misc]
        echoed = by_label[f"{scheme}-server"]["echoed"]
        if trips != echoed:
            problems.append(f"{scheme}: clients got {trips} echoes, the listener sent {echoed}")
        figures[f"{scheme} round trips"] = trips
        figures[f"{scheme} bytes"] = sum(
            by_label[f"{scheme}-client{i}"]["bytes"]
            for i in range(CLIENTS)  # type: ignore[misc]
        )
    figures["largest worker growth KiB"] = max(
        end - start
        for start, end in (w.result["rss_kib"] for w in workers)  # type: ignore[misc]
    )
    left = [entry for entry in os.listdir("/dev/shm") if tag in entry]
    if left:
        problems.append(f"left in /dev/shm: {left}")
    return problems, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--round", type=float, default=60, help="seconds per round (default 60)")
    parser.add_argument("--rate", type=float, default=0, help="messages/s per sender (0: no cap)")
    args = parser.parse_args()
    end = time.monotonic() + args.seconds
    descriptors = len(os.listdir("/proc/self/fd"))
    totals: dict[str, float] = {}
    failures = rounds = 0
    started = time.monotonic()
    while time.monotonic() < end - 1:
        rounds += 1
        seconds = min(args.round, end - time.monotonic())
        problems, figures = one_round(rounds, seconds, args.rate)
        now = len(os.listdir("/proc/self/fd"))
        if now != descriptors:
            problems.append(f"this process holds {now} descriptors, {descriptors} at the start")
        for key, value in figures.items():
            totals[key] = (
                max(totals.get(key, 0), value) if "growth" in key else totals.get(key, 0) + value
            )
        shown = ", ".join(f"{key} {value:,.0f}" for key, value in figures.items())
        print(
            f"round {rounds} ({seconds:.0f} s): {'OK' if not problems else 'PROBLEMS'}; {shown}",
            flush=True,
        )
        for problem in problems:
            print("  PROBLEM:", problem, flush=True)
        failures += bool(problems)
    elapsed = time.monotonic() - started
    print(f"soak: {rounds} rounds in {elapsed:.0f} s, {failures} with problems")
    for key, value in totals.items():
        rate = "" if "growth" in key else f" ({value / elapsed:,.0f}/s)"
        print(f"  {key}: {value:,.0f}{rate}")
    print("FAILED" if failures else "OK: every message counted")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
