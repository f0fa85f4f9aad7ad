"""Stress unixipc.Ring across processes, killing some of them (not part of the tests).

    python benchmarks/ring_stress.py [--seconds 120] [--capacity 4096] [--seed 1]

Producers (send and send_many) and consumers of every kind (receive,
receive_into, receive_many, receive_view, and one that mixes them) run in forked
processes on one small ring; message sizes range up to the maximum, so records
often need padding at a lap's end. About every ``--kill-every`` seconds one of:
a process is SIGKILLed at a random moment (one of the same kind replaces it); a
new process stops itself at a chosen point of the protocol (claimed, half
written, written but not committed, claimed by a reader, copied by a reader, woken
one at a time while others sleep, before passing the wake-up on) and
is SIGKILLed there; or it is let go on after a pause there, as if descheduled
(that pause exposed padding freed under a reader). A new ring every ``--round``
seconds.

Checks, at the end:
- every message that arrived is intact (payload, length) and arrived once;
- each consumer saw each producer's messages in order;
- every message a producer's send returned for arrived, except at most one
  call's worth per killed consumer (a killed reader loses what it had taken);
- nothing arrived that a killed producer had not at least begun to send;
- afterwards the whole capacity can be used again (dead readers' space comes back)
  and the ring ends empty;
- no child failed (nor reported an AddressSanitizer error: run it on the
  sanitized build with ``python tools/sanitize.py exec -- python
  benchmarks/ring_stress.py``, which fails if any process wrote a report).

Exit status 0 if every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import glob
import mmap
import os
import random
import signal
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field

from unixipc import EndOfChannel, PeerDied, Ring, TimeoutExpired, WouldBlock, ring

PATTERN = bytes(random.Random(7).randbytes(1 << 16))
HEADER = struct.Struct("<IIII")  # producer, number, length, pattern offset
LOG = struct.Struct("<II")  # producer, number (consumer logs)
CONSUMER_KINDS = ("receive", "into", "many", "view", "mixed")
PRODUCER_KINDS = ("send", "send_many")
PRODUCER_POINTS = ("producer-claimed", "producer-half-written", "producer-written")
CONSUMER_POINTS = ("consumer-claimed", "consumer-copied", "consumer-woken")
MAX_BATCH = 24  # send_many and receive_many take at most this many at once


def message(producer: int, number: int, size: int) -> bytes:
    offset = (producer * 7919 + number * 131) % (len(PATTERN) - size)
    body = PATTERN[offset : offset + size - HEADER.size]
    return HEADER.pack(producer, number, size, offset) + body


def check(data: bytes | memoryview) -> tuple[int, int]:
    producer, number, size, offset = HEADER.unpack_from(data)
    if size != len(data) or data[HEADER.size :] != PATTERN[offset : offset + size - HEADER.size]:
        raise AssertionError(f"torn message: producer {producer} number {number}")
    return producer, number


def pick_size(rng: random.Random, largest: int) -> int:
    roll = rng.random()
    if roll < 0.5:
        return rng.randint(HEADER.size, 96)
    if roll < 0.8:
        return rng.randint(96, largest // 3)
    return rng.randint(largest // 3, largest)


# -- children: each writes what it did to its own file, one os.write per call -----------


def produce(
    name: str, producer: int, kind: str, stop: mmap.mmap, log: str, point: str, pause: bool
) -> None:
    rng = random.Random(producer)
    with Ring.open(name) as handle, open(log, "wb", buffering=0) as out:
        largest = handle.max_message_size
        number = 0
        after = rng.randint(0, 300) if point else -1
        while stop[0] == 0:
            if number >= after >= 0:
                ring._stop_at(point)
                after = -1
            elif pause:  # the parent let us go on (SIGCONT) after the stop: stop no more
                ring._stop_at(None)
            batch = rng.randint(1, MAX_BATCH) if kind == "send_many" else 1
            messages = [
                message(producer, number + i, pick_size(rng, largest)) for i in range(batch)
            ]
            try:
                if batch == 1 and kind == "send":
                    handle.send(messages[0], timeout=1)
                else:
                    handle.send_many(messages, timeout=1)
            except TimeoutExpired as error:  # full for a while: count what went out
                number += getattr(error, "messages_sent", 0)
                out.write(struct.pack("<Q", number))
                continue
            number += batch
            out.write(struct.pack("<Q", number))  # confirmed: these must arrive


def consume(name: str, consumer: int, kind: str, log: str, point: str, pause: bool) -> None:
    rng = random.Random(-consumer)
    buffer = bytearray(1 << 16)
    with Ring.open(name) as handle, open(log, "wb", buffering=0) as out:
        handle.declare(consumer=True)
        after = rng.randint(0, 300) if point else -1
        count = 0
        while True:
            if count >= after >= 0:
                ring._stop_at(point)
                after = -1
            elif pause:
                ring._stop_at(None)
            how = rng.choice(CONSUMER_KINDS[:4]) if kind == "mixed" else kind
            try:
                if how == "many":
                    got = [check(m) for m in handle.receive_many(rng.randint(1, MAX_BATCH))]
                elif how == "view":
                    with handle.receive_view() as view:
                        got = [check(view)]
                elif how == "into":
                    got = [check(memoryview(buffer)[: handle.receive_into(buffer)])]
                else:
                    got = [check(handle.receive())]
            except (EndOfChannel, PeerDied):
                return
            count += len(got)
            out.write(b"".join(LOG.pack(*item) for item in got))


def fork(work: object, *args: object) -> int:
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            work(*args)  # type: ignore[operator]
        except BaseException as error:
            print(f"child {os.getpid()} failed: {error!r}", file=sys.stderr, flush=True)
            status = 2
        finally:
            os._exit(status)
    return pid


# -- the parent -------------------------------------------------------------------------


@dataclass
class Worker:
    role: str  # "producer" or "consumer"
    ident: int
    kind: str
    log: str
    point: str = ""
    pid: int = 0
    killed: bool = False
    status: int | None = None


@dataclass
class Run:
    name: str
    directory: str
    stop: mmap.mmap
    rng: random.Random
    workers: list[Worker] = field(default_factory=list)
    next_id: int = 0

    def start(self, role: str, kind: str, point: str = "", pause: bool = False) -> Worker:
        self.next_id += 1
        worker = Worker(role, self.next_id, kind, f"{self.directory}/{role}-{self.next_id}", point)
        if role == "producer":
            worker.pid = fork(
                produce, self.name, worker.ident, kind, self.stop, worker.log, point, pause
            )
        else:
            worker.pid = fork(consume, self.name, worker.ident, kind, worker.log, point, pause)
        self.workers.append(worker)
        return worker

    def disturb(self) -> str:
        """One of: kill a worker at a random moment (and start one of the same kind in
        its place); start a worker that stops itself at a point of the protocol, and
        kill it there; or let it go on after a pause there (as if descheduled)."""
        action = self.rng.choice(("kill", "kill at", "pause at"))
        if action == "kill":
            live = [w for w in self.workers if w.status is None and not w.killed]
            victim = self.rng.choice(live)
            self.start(victim.role, victim.kind)
            os.kill(victim.pid, signal.SIGKILL)
            victim.killed = True
            return f"killed {victim.role} {victim.ident} ({victim.kind}) at a random moment"
        role = self.rng.choice(("producer", "consumer"))
        if role == "producer":
            kind, point = self.rng.choice(PRODUCER_KINDS), self.rng.choice(PRODUCER_POINTS)
        else:  # receive_view has no stop point
            kind, point = (
                self.rng.choice(("receive", "into", "many")),
                self.rng.choice(CONSUMER_POINTS),
            )
        worker = self.start(role, kind, point, pause=action == "pause at")
        deadline = time.monotonic() + 10
        while not stopped(worker.pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        where = f"at {point}" if stopped(worker.pid) else f"(it never reached {point})"
        if action == "pause at":
            time.sleep(self.rng.uniform(0.01, 0.5))
            os.kill(worker.pid, signal.SIGCONT)
            # send_many stops at each message of the batch while its call lasts.
            until = time.monotonic() + 0.5
            while time.monotonic() < until:
                if stopped(worker.pid):
                    os.kill(worker.pid, signal.SIGCONT)
                time.sleep(0.002)
            return f"paused {role} {worker.ident} ({kind}) {where}, then let it go on"
        os.kill(worker.pid, signal.SIGKILL)
        worker.killed = True
        return f"killed {role} {worker.ident} ({kind}) {where}"


def dump(name: str) -> str:
    """The ring's positions, the records at free and head, and the slots in use (for hangs)."""
    with open(f"/dev/shm/{name[1:]}", "rb") as memory:
        raw = memory.read()
    capacity, key = struct.unpack_from("<Q", raw, 16)[0], struct.unpack_from("<Q", raw, 40)[0]
    tail, head, free = (struct.unpack_from("<Q", raw, at)[0] for at in (64, 128, 192))
    data = 4096 + 128 * 64
    lines = [f"free {free} head {head} tail {tail} (capacity {capacity})"]
    for what, position in (("free", free), ("head", head)):
        length, size, tag = struct.unpack_from("<IIQ", raw, data + position % capacity)
        base = tag_base(position, key)
        kind = tag ^ base if tag & ~15 == base else f"stale {tag:#x}"
        lines.append(f"record at {what}: length {length} size {size} kind {kind}")
    for index in range(128):
        slot = struct.unpack_from("<IIII6Q", raw, 4096 + index * 64)
        if slot[0]:
            lines.append(
                f"slot {index}: state {slot[0]} roles {slot[1]} pid {slot[2]} "
                f"waiting {slot[3]:#x} claim {slot[4:6]} read {slot[6:8]} view {slot[8:]}"
            )
    return "\n    ".join(lines)


def tag_base(position: int, key: int) -> int:
    """A record's tag without its kind bits, as ring.c computes it (tag_base)."""
    mask = (1 << 64) - 1
    z = position ^ key
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) & ~15


def stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def reap(workers: list[Worker], deadline: float) -> bool:
    """Wait for every worker; False if some are still running at the deadline."""
    while True:
        for worker in workers:
            if worker.status is None:
                pid, status = os.waitpid(worker.pid, os.WNOHANG)
                if pid:
                    worker.status = status
        if all(w.status is not None for w in workers):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def read_records(path: str, record: struct.Struct) -> list[tuple[int, ...]]:
    with open(path, "rb") as log:
        data = log.read()
    usable = len(data) - len(data) % record.size  # a kill may cut the last write
    return [record.unpack_from(data, at) for at in range(0, usable, record.size)]


def verify(run: Run, handle: Ring) -> list[str]:
    problems = []
    for worker in run.workers:
        if not worker.killed and worker.status != 0:
            problems.append(f"{worker.role} {worker.ident} ended with status {worker.status}")
    arrivals: dict[tuple[int, int], int] = {}
    lost_budget = 0
    for worker in run.workers:
        if worker.role != "consumer":
            continue
        if worker.killed:
            lost_budget += MAX_BATCH if worker.kind in ("many", "mixed") else 1
        last: dict[int, int] = {}
        for producer, number in read_records(worker.log, LOG):
            arrivals[(producer, number)] = arrivals.get((producer, number), 0) + 1
            if last.get(producer, -1) >= number:
                problems.append(f"consumer {worker.ident}: {producer}/{number} out of order")
            last[producer] = number
    duplicates = [key for key, times in arrivals.items() if times > 1]
    if duplicates:
        problems.append(f"{len(duplicates)} messages arrived twice or more: {duplicates[:5]}")
    missing = 0
    producers = {w.ident: w for w in run.workers if w.role == "producer"}
    for ident, worker in producers.items():
        confirmed = max([0] + [n for (n,) in read_records(worker.log, struct.Struct("<Q"))])
        got = sorted(n for (p, n) in arrivals if p == ident)
        missing += len(set(range(confirmed)) - set(got))
        limit = confirmed + (MAX_BATCH if worker.killed else 0)
        beyond = [n for n in got if n >= limit]
        if beyond:
            problems.append(f"producer {ident}: {len(beyond)} arrived but never sent: {beyond[:5]}")
    unknown = {p for (p, _) in arrivals} - set(producers)
    if unknown:
        problems.append(f"messages from unknown producers {unknown}")
    if missing > lost_budget:
        problems.append(
            f"{missing} confirmed messages never arrived (killed readers: {lost_budget})"
        )
    # The space of dead readers and writers comes back: fill the whole ring, empty it.
    fill = message(0, 0, handle.max_message_size // 4)
    waiting = 0
    try:
        for sent in range(1, 2 * handle.capacity // len(fill) + 1):
            handle.send(fill, timeout=5)
            waiting += 1
            if sent % 3 == 0:  # keep the ring nearly full, so every byte is used
                check(handle.receive(timeout=5))
                check(handle.receive(timeout=5))
                waiting -= 2
        for _ in range(waiting):
            check(handle.receive(timeout=5))
    except (TimeoutExpired, WouldBlock) as error:
        problems.append(f"the ring does not give its space back: {error}")
    info = handle.info()
    if (info.used_bytes, info.messages) != (0, 0):
        problems.append(f"the ring should be empty: {info}")
    total = sum(arrivals.values())
    print(f"  {total} messages arrived; {missing} confirmed ones lost with killed readers")
    return problems


def one_run(args: argparse.Namespace, seed: int) -> list[str]:
    rng = random.Random(seed)
    name = f"/ringstress{os.getpid()}_{seed}"
    handle = Ring.create(name, args.capacity)
    # The parent is a producer and a consumer that never acts: consumers do not see
    # "every producer is gone" while replacements start, nor producers the reverse.
    handle.declare(producer=True, consumer=True)
    stop = mmap.mmap(-1, 1)
    try:
        with tempfile.TemporaryDirectory(prefix="ringstress") as directory:
            run = Run(name, directory, stop, rng)
            for i in range(args.producers):
                run.start("producer", PRODUCER_KINDS[i % 2])
            for i in range(args.consumers):
                run.start("consumer", CONSUMER_KINDS[i % len(CONSUMER_KINDS)])
            end = time.monotonic() + args.seconds
            disturbances = 0
            while time.monotonic() < end:
                time.sleep(rng.uniform(0.2, 2) * args.kill_every)
                print(" ", run.disturb(), flush=True)
                disturbances += 1
            stop[0] = 1
            producers = [w for w in run.workers if w.role == "producer"]
            problems = []
            if not reap(producers, time.monotonic() + 60):
                problems.append(f"producers did not finish within 60 s: {dump(name)}")
            handle.close()  # the last producer: consumers end once the ring is empty
            handle = Ring.open(name)
            if not reap(run.workers, time.monotonic() + 60):
                problems.append(f"consumers did not finish within 60 s: {dump(name)}")
            for worker in run.workers:
                if worker.status is None:
                    os.kill(worker.pid, signal.SIGKILL)
                    os.waitpid(worker.pid, 0)
                    worker.status = -1
            if not problems:
                problems += verify(run, handle)
            print(f"  seed {seed}: {disturbances} disturbances, {len(run.workers)} processes")
            return problems
    finally:
        handle.close()
        ring.unlink(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120, help="total time (default 120)")
    parser.add_argument("--round", type=float, default=20, help="seconds per ring (default 20)")
    parser.add_argument("--capacity", type=int, default=4096)
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=0.5, help="mean seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--asan-dir",
        default=os.environ.get("UNIXIPC_SANITIZER_REPORTS"),
        help="fail if a sanitizer wrote a report here (set by tools/sanitize.py exec)",
    )
    args = parser.parse_args()
    end = time.monotonic() + args.seconds
    seed = args.seed
    failures = 0
    while time.monotonic() < end:
        round_args = argparse.Namespace(**vars(args))
        round_args.seconds = min(args.round, max(1.0, end - time.monotonic()))
        print(f"round seed {seed}, capacity {args.capacity}", flush=True)
        problems = one_run(round_args, seed)
        if args.asan_dir:
            problems += [f"AddressSanitizer report: {p}" for p in glob.glob(f"{args.asan_dir}/*")]
        for problem in problems:
            print("  PROBLEM:", problem, flush=True)
        failures += bool(problems)
        seed += 1
    print("FAILED" if failures else "OK", f"({failures} rounds with problems)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
