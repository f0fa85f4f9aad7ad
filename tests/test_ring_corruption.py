"""A ring damaged from a second mapping: an IPCError naming it corrupt, never a crash or hang.

Each case damages the shared memory of a ring the way a buggy or hostile process
could, then calls the ring. The calls run in a fresh interpreter: the defects
these tests were written for crashed the process (writes and reads past the
mapping) or hung it with the GIL held, which would take the test session down.
"""

from __future__ import annotations

import os
import signal
import struct
import threading
from collections.abc import Callable

import pytest

from tests.conftest import Names
from tests.helpers import Child, run_python, wait_until
from unixipc import PosixSharedMemory, Ring, WouldBlock, ring

Cleanup = Callable[..., None]

# The ring's layout (src/native/ring_core.h): positions on their own cache lines,
# 128 slots of 64 bytes after the 4 KiB header, then the records.
TAIL, HEAD, FREE, SPACE_WAITERS = 64, 128, 192, 324
SLOTS, SLOT_BYTES = 4096, 64
DATA = 4096 + 128 * 64
CAPACITY = 4096  # the mapping ends right after the records: a page-aligned 16 KiB

PRELUDE = """
import struct, sys
from unixipc import IPCError, PosixSharedMemory, Ring

name = sys.argv[1]
handle = Ring.create(name, 4096)
memory = PosixSharedMemory.open(name)
capacity = handle.capacity

def put(offset, value, size=8):
    memory.buf[offset : offset + size] = value.to_bytes(size, "little")

def get(offset, size=8):
    return int.from_bytes(memory.buf[offset : offset + size], "little")

def positions(**values):
    for field, value in values.items():
        put({"tail": 64, "head": 128, "free": 192}[field], value)

def report(call):
    try:
        result = call()
    except IPCError as error:
        print(f"{type(error).__name__}: {error}")
    else:
        print("returned:", repr(result)[:80])

def view():
    with handle.receive_view(timeout=0) as piece:
        return bytes(piece)
"""

CALLS = {
    "send": "handle.send(b'x' * 100, timeout=0)",
    "send_many": "handle.send_many([b'x' * 100, b'y'], timeout=0)",
    "receive": "handle.receive(timeout=0)",
    "receive_into": "handle.receive_into(bytearray(4096), timeout=0)",
    "receive_many": "handle.receive_many(8, timeout=0)",
    "receive_view": "view()",
    "info": "handle.info()",
}


def _damaged(name: str, damage: str, call: str, timeout: float = 120) -> str:
    """Run ``damage`` then ``call`` in a fresh interpreter; return what the call did."""
    code = f"{PRELUDE}\n{damage}\nreport(lambda: {call})\nmemory.close()\nhandle.close()\n"
    done = run_python(code, name, check=False, timeout=timeout)
    assert done.returncode == 0, (
        f"the process died (status {done.returncode}): {done.stdout}{done.stderr}"
    )
    return done.stdout


@pytest.fixture
def name(names: Names, cleanup: Cleanup) -> str:
    made = names.posix("ring")
    cleanup(ring.unlink, made)
    return made


# -- the defects found by the sanitizers --------------------------------------------------


@pytest.mark.parametrize("call", sorted(CALLS))
def test_positions_just_before_the_end_raise_instead_of_reaching_past_the_mapping(
    name: str, call: str
) -> None:
    # tail = head = free = capacity - 8: write_padding wrote 8 bytes past the
    # mapping (SIGSEGV here, where it ends right after the records), and peek read
    # the tag there; every access at that offset was misaligned.
    out = _damaged(
        name, "positions(tail=capacity - 8, head=capacity - 8, free=capacity - 8)", CALLS[call]
    )
    assert "IPCError:" in out, out
    assert "is corrupt" in out


@pytest.mark.parametrize("call", ["send", "send_many"])
def test_free_past_tail_raises_instead_of_spinning_with_the_gil_held(name: str, call: str) -> None:
    # read_free_and_tail looped forever (the GIL held: Ctrl-C dead) when free > tail.
    # Four records of 1024 bytes fill the ring, so that send too looks at free.
    damage = "[handle.send(b'a' * 1000, timeout=0) for _ in range(4)]\npositions(free=get(64) + 16)"
    out = _damaged(name, damage, CALLS[call], timeout=30)
    assert "is corrupt" in out, out


def _receive_many_stopped_after_its_claim(name: str) -> list[bytes]:
    with Ring.open(name) as handle:
        ring._stop_at("consumer-claimed")
        return handle.receive_many(8, timeout=30)


def test_receive_many_copies_the_records_it_validated(
    name: str, children: Callable[..., Child]
) -> None:
    # receive_many validated the records, then re-read their sizes from the shared
    # memory while copying: a size changed in between skipped a message and returned
    # a bytes object that was never written (or indexed past its list).
    messages = [bytes([65 + i]) * 100 for i in range(3)]
    with Ring.create(name, CAPACITY) as handle:
        handle.send_many(messages)
        child = children(_receive_many_stopped_after_its_claim, name)
        _wait_stopped(child.pid)
        with PosixSharedMemory.open(name) as memory:
            # The first record now claims to cover the second one too.
            memory.buf[DATA + 4 : DATA + 8] = struct.pack("<I", 2 * 128)
        os.kill(child.pid, signal.SIGCONT)
        assert child.result() == messages


def test_send_many_keeps_its_messages_alive_while_it_waits(name: str) -> None:
    # send_many kept the item array of its list (PySequence_Fast) while waiting for
    # space with the GIL released: a list emptied meanwhile freed the messages, and
    # what went into the ring was whatever reused their memory.
    with Ring.create(name, CAPACITY) as handle:
        messages = [bytes([i]) * 400 for i in range(1, 31)]  # fresh objects, only in the list
        expected = [bytes([i]) * 400 for i in range(1, 31)]
        failures: list[BaseException] = []

        def send() -> None:
            try:
                handle.send_many(messages, timeout=30)
            except BaseException as error:
                failures.append(error)

        sender = threading.Thread(target=send)
        sender.start()
        with PosixSharedMemory.open(name) as memory:
            wait_until(lambda: struct.unpack_from("<I", memory.buf, SPACE_WAITERS)[0] == 1)
        messages.clear()
        reuse = [bytes([255]) * 400 for _ in range(200)]  # take the freed blocks
        got = []
        while len(got) < len(expected):
            got.extend(handle.receive_many(64, timeout=30))
        sender.join(30)
        del reuse
        assert not failures
        assert got == expected


# -- positions overwritten: committed messages never silently hidden ------------------------


DAMAGES = {
    # head moved into the middle of the first message
    "head into a record": "positions(head=get(128) + 64)",
    # head moved to the next record: the first message would be skipped silently
    "head past a message": "positions(head=get(128) + 128)",
    # head moved past tail
    "head past tail": "positions(head=get(64) + 256)",
    # head moved back before free
    "head before free": "positions(head=get(192) + 128, free=get(192) + 256)",
    # free moved past head: producers would overwrite unread messages
    "free past head": "positions(free=get(128) + 128)",
    # tail moved far ahead: more than the capacity is in use
    "tail beyond the capacity": "positions(tail=get(192) + 2 * capacity)",
    # tail moved ahead: records that nobody writes at the head of the gap
    "tail ahead": "positions(tail=get(64) + 512)",
    # a position that is not a record boundary
    "tail misaligned": "positions(tail=get(64) + 8)",
    # positions near 2**64, where sums overflow
    "huge positions": "positions(tail=2**64 - 16, head=2**64 - 16, free=2**64 - 16)",
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_position_overwritten_from_a_second_mapping_raises(name: str, damage: str) -> None:
    setup = "handle.send_many([bytes([65 + i]) * 100 for i in range(3)])\n" + DAMAGES[damage]
    calls = "[handle.receive(timeout=20) for _ in range(4)] + [handle.send(b'z' * 100, timeout=20)]"
    out = _damaged(name, setup, calls)
    assert "IPCError:" in out, out
    assert "is corrupt" in out


def test_a_stray_record_header_at_free_raises_for_the_producer(name: str) -> None:
    # The record at free is neither a message nor consumed: free points at garbage.
    setup = (
        "handle.send_many([b'a' * 1000] * 3)\n"
        "[handle.receive() for _ in range(3)]\n"
        "positions(free=get(192) - 16)\n"  # inside the last, consumed, record
        "[handle.send(b'b' * 1000, timeout=0) for _ in range(3)]"
    )
    out = _damaged(name, setup, "handle.send(b'c' * 1000, timeout=20)")
    assert "is corrupt" in out, out


def test_a_damaged_slot_claim_never_pads_outside_the_ring(name: str) -> None:
    # A dead producer's slot whose claim range is garbage: recovery must not turn
    # it into a padding record that reaches past the lap (or is misaligned).
    setup = (
        "import os\n"
        "handle.send(b'a' * 100)\n"
        "tail = get(64)\n"
        "positions(tail=tail + 256)\n"  # a claim nobody finished...
        "slot = 4096 + 127 * 64\n"
        "put(slot, 2, 4)\n"  # ...by a dead slot
        "put(slot + 16, tail)\n"
        "put(slot + 24, tail + 8)\n"  # whose end is misaligned
        "handle.receive()"
    )
    out = _damaged(name, setup, "handle.receive(timeout=20)")
    assert "is corrupt" in out, out


def test_integers_from_python_are_range_checked(name: str) -> None:
    with Ring.create(name, CAPACITY) as handle:
        for roles in (2**32 + 1, -1, 4):
            with pytest.raises((ValueError, OverflowError)):
                handle._declare(roles)
        with pytest.raises((ValueError, OverflowError)):
            ring._native.ring_initialize(bytearray(1 << 16), 2**64 + 4096, 0)
        with pytest.raises((ValueError, OverflowError)):
            ring._native.ring_initialize(bytearray(1 << 16), -4096, 0)
        with pytest.raises((ValueError, OverflowError)):
            ring._native.ring_initialize(bytearray(1 << 16), 4096, 2**64)
        with pytest.raises((ValueError, OverflowError)):
            handle.receive_many(2**63, timeout=0)
        for index in (-1, 128, 2**31):
            with pytest.raises((ValueError, OverflowError)):
                handle._adopt_slot(index, -1)
        with pytest.raises(WouldBlock):
            handle.receive(timeout=0)  # still usable


INTERNAL_STATE = """
import os, threading
waiter = threading.Thread(target=lambda: print("waiter got", handle.receive(timeout=30)))
waiter.start()
while handle._busy() != 1:
    pass
for call in (lambda: handle._detach(), lambda: handle._take_slot(-1),
             lambda: handle._adopt_slot(3, -1)):
    report(call)
handle._forked()  # this is not a forked child: nothing may change
print("busy", handle._busy())
handle.send(b"done")
waiter.join(30)
pid = os.fork()
if pid == 0:  # a child whose handle could not get a slot of its own
    handle._reattach = lambda: None
    report(lambda: handle.send(b"x"))
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_internal_state_is_not_writable_from_python(name: str) -> None:
    # The native core trusts its slot, lock and mapping: while a call waits (the GIL
    # released) no Python code may change them under it, and a handle without a
    # slot never reaches the shared memory.
    out = _damaged(name, INTERNAL_STATE, "None")
    lines = out.splitlines()
    assert all(line.startswith("IPCError:") and "in progress" in line for line in lines[:3]), out
    assert "busy 1" in lines
    assert "waiter got b'done'" in lines
    assert any(line.startswith("IPCError:") and "slot" in line for line in lines[5:]), out


def _wait_stopped(pid: int) -> None:
    def stopped() -> bool:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "T"

    wait_until(stopped)
