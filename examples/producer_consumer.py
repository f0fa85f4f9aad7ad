"""The bounded buffer of the textbooks, in shared memory, between processes.

Producers and consumers share a ring of SLOTS slots. Two counting semaphores do
the coordination: ``put`` counts the free slots (a producer takes one before it
writes, so it waits while the ring is full) and ``get`` counts the filled ones
(a consumer takes one before it reads, so it waits while the ring is empty). A
binary semaphore ``mutex`` guards the two indexes, so any number of producers
and consumers can share the ring (Dijkstra 1965; Tanenbaum, Modern Operating
Systems, 2.3.5; Stevens, UNP vol. 2, 10.6).

Everything lives in one POSIX shared memory object, semaphores included
(memory-based: ``PosixSemaphore.in_buffer``); the workers are spawned, so they
share nothing but its name.

Run:  python examples/producer_consumer.py [PRODUCERS] [CONSUMERS] [ITEMS] [SLOTS]
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import sys

from unixipc import PosixSemaphore, PosixSharedMemory

# Layout of the shared memory object.
PUT, GET, MUTEX = 0, 64, 128  # the three semaphores, each on its own cache line
INDEXES = 192  # next slot to fill, next slot to empty (two int64)
SLOTS_AT = 256
ITEM = struct.Struct("qq")  # (producer, sequence number)


class BoundedBuffer:
    """A view of the ring in shared memory, for one process."""

    def __init__(self, memory: PosixSharedMemory, slots: int, *, initialize: bool) -> None:
        self.memory = memory
        self.slots = slots
        # The creator initializes the semaphores; the others attach (value None).
        self.put = PosixSemaphore.in_buffer(memory, PUT, value=slots if initialize else None)
        self.get = PosixSemaphore.in_buffer(memory, GET, value=0 if initialize else None)
        self.mutex = PosixSemaphore.in_buffer(memory, MUTEX, value=1 if initialize else None)
        self.indexes = memory.buf[INDEXES : INDEXES + 16].cast("q")

    def insert(self, item: tuple[int, int]) -> None:
        self.put.acquire()  # wait for a free slot
        with self.mutex:
            slot = self.indexes[0]
            ITEM.pack_into(self.memory.buf, SLOTS_AT + slot * ITEM.size, *item)
            self.indexes[0] = (slot + 1) % self.slots
        self.get.release()  # one more filled slot

    def remove(self) -> tuple[int, int]:
        self.get.acquire()  # wait for a filled slot
        with self.mutex:
            slot = self.indexes[1]
            item: tuple[int, int] = ITEM.unpack_from(self.memory.buf, SLOTS_AT + slot * ITEM.size)
            self.indexes[1] = (slot + 1) % self.slots
        self.put.release()  # one more free slot
        return item

    def close(self) -> None:
        self.indexes.release()
        for semaphore in (self.put, self.get, self.mutex):
            semaphore.close()


def size_for(slots: int) -> int:
    return SLOTS_AT + slots * ITEM.size


def producer(name: str, slots: int, me: int, items: int) -> None:
    with PosixSharedMemory.open(name) as memory:
        ring = BoundedBuffer(memory, slots, initialize=False)
        for number in range(items):
            ring.insert((me, number))
        ring.close()


def consumer(name: str, slots: int, producer_items: int, items: int) -> tuple[int, int]:
    """Take ``items`` items; return how many and the sum of their serial numbers."""
    last_seen: dict[int, int] = {}
    checksum = 0
    with PosixSharedMemory.open(name) as memory:
        ring = BoundedBuffer(memory, slots, initialize=False)
        for _ in range(items):
            who, number = ring.remove()
            # One producer's items leave the ring in the order it put them in.
            if number <= last_seen.get(who, -1):
                raise RuntimeError(f"producer {who}'s item {number} came out of order")
            last_seen[who] = number
            checksum += who * producer_items + number
        ring.close()
    return items, checksum


def main(producers: int = 2, consumers: int = 2, items: int = 2000, slots: int = 8) -> None:
    total = producers * items
    if total % consumers:
        raise SystemExit("PRODUCERS * ITEMS must divide evenly among the CONSUMERS")
    name = f"/producer-consumer-{os.getpid()}"
    memory = PosixSharedMemory.create(name, size_for(slots))
    try:
        ring = BoundedBuffer(memory, slots, initialize=True)
        context = multiprocessing.get_context("spawn")
        share = total // consumers
        with context.Pool(producers + consumers) as pool:
            taken = [
                pool.apply_async(consumer, (name, slots, items, share)) for _ in range(consumers)
            ]
            made = [pool.apply_async(producer, (name, slots, p, items)) for p in range(producers)]
            for result in made:
                result.get(timeout=120)
            counts, checksums = zip(*(result.get(timeout=120) for result in taken), strict=True)
        free, filled = ring.put.value, ring.get.value
        ring.close()
    finally:
        memory.unlink()
        memory.close()
    print(f"{producers} producers put {total} items through {slots} slots to {consumers} consumers")
    # Every item has a distinct serial number 0..total-1: their sum proves none
    # was lost or taken twice.
    expected = total * (total - 1) // 2
    print(f"consumed {sum(counts)} items, serial-number sum {sum(checksums)}, expected {expected}")
    print(f"at the end: {free} free slots, {filled} filled")
    if (free, filled) != (slots, 0) or sum(checksums) != expected or sum(counts) != total:
        raise SystemExit("mismatch")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:5]))
