"""The shared-memory ring between real processes: delivery, limits, waiting, crashes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable

import pytest

from tests.conftest import Names
from tests.helpers import START_METHODS, Child, assert_elapsed, wait_until
from unixipc import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    MessageTooLarge,
    PeerDied,
    PosixSharedMemory,
    ResourceExistsError,
    ResourceNotFoundError,
    Ring,
    TimeoutExpired,
    WouldBlock,
    ring,
)

Cleanup = Callable[..., None]


def _make(names: Names, cleanup: Cleanup, capacity: int = 1 << 16) -> Ring:
    name = names.posix("ring")
    created = Ring.create(name, capacity)
    cleanup(ring.unlink, name)
    cleanup(created.close)
    return created


def _message(producer: int, number: int, size: int) -> bytes:
    """A message that names its producer and number, padded with a checkable pattern."""
    head = struct.pack("<II", producer, number)
    body = bytes([(producer + number) % 251]) * max(0, size - len(head))
    return (head + body)[: max(size, len(head))]


def _check_message(data: bytes) -> tuple[int, int]:
    producer, number = struct.unpack_from("<II", data)
    assert data[8:] == bytes([(producer + number) % 251]) * (len(data) - 8), "torn message"
    return producer, number


# -- children (module level, so that spawn can import them) ---------------------------


def _send_numbers(name: str, producer: int, count: int, batch: int) -> int:
    with Ring.open(name) as handle:
        pending = []
        for number in range(count):
            message = _message(producer, number, 8 + number % 200)
            if batch > 1:
                pending.append(message)
                if len(pending) == batch:
                    handle.send_many(pending, timeout=60)
                    pending = []
            else:
                handle.send(message, timeout=60)
        if pending:
            handle.send_many(pending, timeout=60)
    return count


def _receive_until_end(name: str, how: str) -> list[tuple[int, int]]:
    got = []
    buffer = bytearray(1024)
    with Ring.open(name) as handle:
        handle.declare(consumer=True)
        while True:
            try:
                if how == "many":
                    messages = handle.receive_many(16, timeout=60)
                elif how == "view":
                    with handle.receive_view(timeout=60) as view:
                        messages = [bytes(view)]
                elif how == "into":
                    messages = [bytes(buffer[: handle.receive_into(buffer, timeout=60)])]
                else:
                    messages = [handle.receive(timeout=60)]
            except EndOfChannel:
                return got
            got.extend(_check_message(message) for message in messages)


def _send_from_pickled(handle: Ring, message: bytes) -> None:
    handle.send(message, timeout=30)
    handle.close()


def _send_then_stop_at(name: str, committed: int, point: str, size: int) -> None:
    """Send ``committed`` messages, then stop (SIGSTOP) at ``point`` of the next one."""
    handle = Ring.open(name)
    for number in range(committed):
        handle.send(_message(0, number, size), timeout=30)
    ring._stop_at(point)
    if point.startswith("producer"):
        handle.send_many([_message(0, committed, size), _message(0, committed + 1, size)])
    else:
        handle.receive(timeout=30)
    raise AssertionError("the stop point was never reached")


def _wait_stopped(pid: int) -> None:
    def stopped() -> bool:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "T"

    wait_until(stopped)


def _kill_at(child: Child) -> None:
    _wait_stopped(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    child.process.join(30)


def _try_send(handle: Ring, data: bytes) -> bool:
    try:
        handle.send(data, timeout=0)
    except WouldBlock:
        return False
    return True


def _send_forever(handle: Ring, data: bytes) -> None:
    while True:
        handle.send(data, timeout=30)


# -- basics ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", START_METHODS)
def test_messages_cross_processes_in_order(
    names: Names, cleanup: Cleanup, children: Callable[..., Child], method: str
) -> None:
    handle = _make(names, cleanup)
    producer = children(_send_numbers, handle.name, 7, 500, 1, method=method)
    got = [_check_message(handle.receive(timeout=60)) for _ in range(500)]
    assert got == [(7, number) for number in range(500)]
    assert producer.result() == 500
    with pytest.raises(EndOfChannel, match="every producer closed it"):
        handle.receive(timeout=30)


@pytest.mark.parametrize("method", START_METHODS)
def test_a_ring_passed_to_a_child_reopens_there(
    names: Names, cleanup: Cleanup, children: Callable[..., Child], method: str
) -> None:
    handle = _make(names, cleanup)
    children(_send_from_pickled, handle, b"from the child", method=method).result()
    assert handle.receive(timeout=30) == b"from the child"


def test_many_producers_and_consumers_each_message_exactly_once(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    handle = _make(names, cleanup, capacity=1 << 14)  # small: producers wait for space
    count = 3000
    consumers = [
        children(_receive_until_end, handle.name, how) for how in ("one", "many", "view", "into")
    ]
    # Let every consumer attach before the producers can finish; and count this
    # handle as a producer until all three are done: one that finished before
    # another had even started would otherwise leave none alive, and the consumers
    # would take that for the end (seen in the slower sanitizer run).
    wait_until(lambda: handle.info().consumers == 4)
    handle.declare(producer=True)
    producers = [children(_send_numbers, handle.name, p, count, (1, 7, 64)[p]) for p in range(3)]
    assert [child.result() for child in producers] == [count] * 3
    handle.close()  # the last producer: the consumers end once the ring is empty
    handle = Ring.open(handle.name)
    cleanup(handle.close)
    received = [child.result() for child in consumers]
    everything = sorted(item for got in received for item in got)
    assert everything == sorted((p, n) for p in range(3) for n in range(count))
    for got in received:  # each consumer sees each producer's messages in order
        for p in range(3):
            numbers = [n for q, n in got if q == p]
            assert numbers == sorted(numbers)
    info = handle.info()
    assert (info.used_bytes, info.messages) == (0, 0)


def test_sizes_up_to_the_maximum_and_one_over(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup, capacity=4096)
    assert handle.max_message_size == 4096 // 2 - 16
    for size in (0, 1, 15, 16, 17, 1000, handle.max_message_size):
        handle.send(b"\xab" * size)
        assert handle.receive(timeout=0) == b"\xab" * size
    with pytest.raises(MessageTooLarge, match="larger than the maximum"):
        handle.send(b"x" * (handle.max_message_size + 1))
    with pytest.raises(MessageTooLarge, match="nothing was sent"):
        handle.send_many([b"a", b"x" * (handle.max_message_size + 1)])
    with pytest.raises(WouldBlock):
        handle.receive(timeout=0)
    # Any bytes-like object goes in; bytes come out.
    handle.send_many([bytearray(b"ba"), memoryview(b"mv"), b"b"])
    assert handle.receive_many(10, timeout=0) == [b"ba", b"mv", b"b"]


def test_wrapping_around_many_times_with_every_size(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup, capacity=1024)
    for size in range(handle.max_message_size + 1):
        handle.send(bytes([size % 256]) * size, timeout=0)
        assert handle.receive(timeout=0) == bytes([size % 256]) * size
    batch = [bytes([n]) * (n * 3 % 100) for n in range(40)]
    for _ in range(20):
        handle.send_many(batch[:10], timeout=0)
        received: list[bytes] = []
        while len(received) < 10:
            # At most a quarter of the ring per call, at least one message.
            taken = handle.receive_many(100, timeout=0)
            assert len(taken) >= 1
            assert sum(16 + len(m) for m in taken[:-1]) < 1024 // 4
            received += taken
        assert received == batch[:10]
    assert handle.info().used_bytes == 0


def test_receive_into_and_its_limits(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup)
    handle.send(b"0123456789")
    small = bytearray(4)
    with pytest.raises(MessageTooLarge, match="stays in the ring"):
        handle.receive_into(small, timeout=0)
    buffer = bytearray(16)
    assert handle.receive_into(buffer, timeout=0) == 10
    assert buffer[:10] == b"0123456789"
    with pytest.raises(TypeError, match="writable"):
        handle.receive_into(b"read-only")


def test_receive_view_is_zero_copy_and_frees_the_space(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup)
    handle.send(b"in place")
    with handle.receive_view(timeout=0) as view:
        assert view.readonly
        assert bytes(view) == b"in place"
        assert handle.info().used_bytes > 0
        with pytest.raises(IPCError, match="still open"), handle.receive_view(timeout=0):
            pass  # one view at a time
        with pytest.raises(IPCError, match="receive_view"):
            handle.close()
    with pytest.raises(ValueError, match="released"):
        bytes(view)
    assert handle.info().used_bytes == 0


def test_info_counts_producers_and_consumers(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup)
    other = Ring.open(handle.name)
    cleanup(other.close)
    info = handle.info()
    assert (info.producers, info.consumers, info.attached) == (0, 0, 2)
    other.send(b"one")
    other.send(b"two")
    handle.declare(consumer=True)
    info = handle.info()
    assert (info.producers, info.consumers, info.messages) == (1, 1, 2)
    assert info.used_bytes == 2 * 32
    other.close()
    assert handle.info().attached == 1


# -- arguments, lifecycle ---------------------------------------------------------------


def test_bad_arguments_are_refused_before_any_call(names: Names, cleanup: Cleanup) -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1024"):
        Ring.create(names.posix(), 100)
    with pytest.raises(TypeError, match="capacity must be an int"):
        Ring.create(names.posix(), 4096.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must start with '/'"):
        Ring.create("nope", 4096)
    handle = _make(names, cleanup)
    with pytest.raises(TypeError, match="bytes-like"):
        handle.send("text")
    with pytest.raises(ValueError, match="C-contiguous"):
        handle.send(memoryview(b"abcd")[::2])
    with pytest.raises(TypeError, match="timeout must be a number"):
        handle.receive(timeout="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timeout must be a number"):
        handle.receive(timeout=True)
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        handle.receive(timeout=-1)
    with pytest.raises(ValueError, match="max_count must be >= 1"):
        handle.receive_many(0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        handle.receive(wait=1)  # type: ignore[call-arg]
    handle.send(data=b"keyword")
    assert handle.receive(timeout=0) == b"keyword"


def test_create_open_unlink_and_errors(names: Names, cleanup: Cleanup) -> None:
    name = names.posix("ring")
    with pytest.raises(ResourceNotFoundError):
        Ring.open(name)
    assert not ring.exists(name)
    with Ring.create(name, 5000, permissions=0o640) as created:
        cleanup(ring.unlink, name)
        assert created.capacity == 5056  # rounded up to a multiple of 64
        assert oct(os.stat(f"/dev/shm{name}").st_mode & 0o777) == "0o640"
        assert ring.exists(name)
        assert name in ring.list_names()
        with pytest.raises(ResourceExistsError):
            Ring.create(name, 4096)
        with Ring.open_or_create(name, 99999) as again:
            assert again.capacity == 5056
        created.unlink()
        assert not ring.exists(name)
        created.send(b"still usable")
        assert created.receive(timeout=0) == b"still usable"


FULL_DEV_SHM = """
import os, subprocess
from unixipc import ResourceLimitError, Ring, WouldBlock

# A private mount namespace (unshare --mount) whose /dev/shm is a 1 MiB tmpfs.
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/dev/shm"], check=True)
try:
    Ring.create("/big", 4 << 20)
except ResourceLimitError as error:
    print("ResourceLimitError:", error)
stats = os.statvfs("/dev/shm")
print("left:", os.listdir("/dev/shm"), stats.f_bfree * stats.f_frsize)
with Ring.create("/small", 512 << 10) as small:  # fits: filling it cannot SIGBUS
    sent = 0
    try:
        while True:
            small.send(b"x" * 2000, timeout=0)
            sent += 1
    except WouldBlock:
        print("filled with", sent)
    small.unlink()
"""


def test_a_full_dev_shm_gives_resource_limit_error_and_leaves_nothing() -> None:
    # Without reserving its pages at creation, the ring was created and the first
    # send past the free space died of SIGBUS, leaving the object behind.
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", FULL_DEV_SHM],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ResourceLimitError: [Errno 28] ")
    assert "'/big': no room for " in lines[0]
    assert "on /dev/shm (" in lines[0]
    assert lines[1] == f"left: [] {1 << 20}"  # nothing left, all the space free again
    assert lines[2].startswith("filled with ")


def test_an_interrupted_create_leaves_nothing(names: Names, cleanup: Cleanup) -> None:
    # A signal handler raising (Ctrl-C) at any point of Ring.create: the name
    # either never appears or is removed before the exception propagates.
    name = names.posix("ring")
    cleanup(ring.unlink, name)
    create = inspect.unwrap(Ring.create.__func__).__code__  # type: ignore[attr-defined]
    last: list[object] = [None]  # the create call interrupted last
    interrupts = 0

    def interrupt(signum: int, frame: object) -> None:
        # Once per create call, and only inside it (or what it calls).
        nonlocal interrupts
        caller = frame
        while caller is not None:
            if caller.f_code is create:  # type: ignore[attr-defined]
                if caller is not last[0]:
                    last[0] = caller
                    interrupts += 1
                    raise KeyboardInterrupt
                return
            caller = caller.f_back  # type: ignore[attr-defined]

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.00013)
    leftovers = 0
    try:
        with warnings.catch_warnings():
            # An interrupt may leave a handle unclosed (not a name): the collector closes it.
            warnings.simplefilter("ignore", ResourceWarning)
            for _ in range(400):
                try:
                    made = Ring.create(name, 4096)
                except KeyboardInterrupt:
                    leftovers += os.path.exists(f"/dev/shm{name}")
                    with contextlib.suppress(OSError):
                        os.unlink(f"/dev/shm{name}")  # keep going after a failure
                    continue
                made.close()
                ring.unlink(name)
            signal.setitimer(signal.ITIMER_REAL, 0)
            last[0] = None
            gc.collect()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert interrupts > 50
    assert leftovers == 0


def test_use_after_close(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup)
    handle.close()
    handle.close()  # idempotent
    for call in (
        lambda: handle.send(b"x"),
        lambda: handle.send_many([b"x"]),
        lambda: handle.receive(),
        lambda: handle.receive_into(bytearray(1)),
        lambda: handle.receive_many(1),
        lambda: handle.info(),
    ):
        with pytest.raises(ClosedResourceError, match="is closed"):
            call()
    with pytest.raises(ClosedResourceError), handle.receive_view():
        pass


# -- waiting ---------------------------------------------------------------------------


def test_timeouts_fire_on_time(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup, capacity=1024)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired, match=r"timed out after 0\.3 s"):
        handle.receive(timeout=0.3)
    assert_elapsed(started, 0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        handle.receive_many(5, timeout=0.2)
    assert_elapsed(started, 0.2)
    handle.declare(consumer=True)  # a live consumer: a full ring waits, not ends
    filler = b"f" * 200
    sent = 0
    while _try_send(handle, filler):
        sent += 1
    assert sent == 1024 // 224
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        handle.send(filler, timeout=0.25)
    assert_elapsed(started, 0.25)
    handle.receive()
    with pytest.raises(WouldBlock) as caught:
        handle.send_many([filler, filler, filler], timeout=0)
    assert caught.value.messages_sent == 1  # type: ignore[attr-defined]


def test_a_blocked_receiver_wakes_for_a_sender_thread(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup)
    got: list[bytes] = []
    receiver = threading.Thread(target=lambda: got.append(handle.receive(timeout=30)))
    receiver.start()
    time.sleep(0.3)  # long enough to be asleep on the futex, not spinning
    handle.send(b"wake up")
    receiver.join(30)
    assert got == [b"wake up"]


def test_usable_from_asyncio_through_a_worker_thread(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup)

    async def main() -> bytes:
        waiting = asyncio.create_task(asyncio.to_thread(handle.receive, timeout=30))
        await asyncio.sleep(0.1)  # the loop keeps running while the thread waits
        handle.send(b"to the loop")
        return await waiting

    assert asyncio.run(main()) == b"to the loop"


def test_close_from_another_thread_ends_a_wait(names: Names, cleanup: Cleanup) -> None:
    name = names.posix("ring")
    handle = Ring.create(name, 4096)
    cleanup(ring.unlink, name)
    errors: list[BaseException] = []

    def receive() -> None:
        try:
            handle.receive()
        except BaseException as error:
            errors.append(error)

    receiver = threading.Thread(target=receive)
    receiver.start()
    time.sleep(0.2)
    handle.close()
    receiver.join(30)
    assert len(errors) == 1
    assert isinstance(errors[0], ClosedResourceError)


def test_signal_handlers_run_and_the_wait_goes_on(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup)
    calls = []
    old = signal.signal(signal.SIGALRM, lambda *_: calls.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        started = time.monotonic()
        with pytest.raises(TimeoutExpired):
            handle.receive(timeout=0.4)
        assert_elapsed(started, 0.4)
        assert calls == [1]

        def interrupt(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt):
            handle.receive(timeout=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _use_inherited(handle: Ring) -> int:
    handle.send(b"from a forked child")  # the inherited object takes a slot of its own
    attached = handle.info().attached
    handle.close()
    return attached


def test_a_forked_child_uses_an_inherited_handle(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    handle = _make(names, cleanup)
    handle.declare(consumer=True)
    assert children(_use_inherited, handle, method="fork").result() == 2
    assert handle.receive(timeout=30) == b"from a forked child"
    info = handle.info()
    assert (info.attached, info.consumers) == (1, 1)


def _produce_fork_then_die(name: str) -> None:
    handle = Ring.open(name)
    handle.send(b"before the fork")
    pid = os.fork()
    if pid == 0:  # outlives its parent, with copies of all its descriptors
        time.sleep(60)
        os._exit(0)
    handle.send(struct.pack("<i", pid))
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_forked_child_does_not_keep_a_dead_producer_alive(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    handle = _make(names, cleanup)
    children(_produce_fork_then_die, handle.name)
    assert handle.receive(timeout=30) == b"before the fork"
    grandchild = struct.unpack("<i", handle.receive(timeout=30))[0]
    cleanup(os.kill, grandchild, signal.SIGKILL)
    with pytest.raises(PeerDied):
        handle.receive(timeout=30)


# -- ends and crashes -------------------------------------------------------------------


def test_the_last_consumer_closing_ends_a_blocked_sender(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup, capacity=1024)
    consumer = Ring.open(handle.name)
    consumer.declare(consumer=True)
    while _try_send(handle, b"x" * 100):
        pass
    threading.Timer(0.2, consumer.close).start()
    with pytest.raises(EndOfChannel, match="every consumer closed it"):
        handle.send(b"x" * 100, timeout=30)


def _send_two_then_die(name: str) -> None:
    handle = Ring.open(name)
    handle.send(b"first")
    handle.send(b"second")
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_dead_producer_gives_peer_died_after_its_messages(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    handle = _make(names, cleanup)
    child = children(_send_two_then_die, handle.name)
    child.process.join(30)
    assert handle.receive(timeout=30) == b"first"
    assert handle.receive(timeout=30) == b"second"
    started = time.monotonic()
    with pytest.raises(PeerDied, match="one died"):
        handle.receive(timeout=30)
    assert time.monotonic() - started < 5  # about 0.2 s; generous for a busy machine


@pytest.mark.parametrize("point", ["producer-claimed", "producer-half-written", "producer-written"])
def test_a_writer_killed_mid_message_never_shows_a_torn_one(
    names: Names, cleanup: Cleanup, children: Callable[..., Child], point: str
) -> None:
    handle = _make(names, cleanup, capacity=4096)
    child = children(_send_then_stop_at, handle.name, 3, point, 300)
    _kill_at(child)
    got = [_check_message(handle.receive(timeout=30)) for _ in range(3)]
    assert got == [(0, 0), (0, 1), (0, 2)]
    with pytest.raises(PeerDied):
        handle.receive(timeout=30)
    # The dead writer's space came back, and the ring goes on with a new producer.
    assert handle.info().used_bytes == 0
    producer = Ring.open(handle.name)
    cleanup(producer.close)
    for number in range(40):  # several laps of the 4 KiB ring
        producer.send(_message(1, number, 300), timeout=30)
        assert _check_message(handle.receive(timeout=30)) == (1, number)


def _receive_many_stopping_after_its_claim(name: str) -> list[bytes]:
    with Ring.open(name) as handle:
        ring._stop_at("consumer-claimed")
        return handle.receive_many(10, timeout=30)


def test_padding_is_not_freed_under_the_reader_that_claimed_it(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    # Regression: a reader whose receive_many claim starts with padding was stopped
    # (as if descheduled); an older record's release swept free over that padding,
    # producers overwrote it, and the reader's walk over its claim went astray.
    handle = _make(names, cleanup, capacity=1024)  # messages of up to 496 bytes
    handle.send(bytes(496))  # [0, 512)
    handle.send(bytes(272))  # [512, 800)
    handle.send(b"m0" * 48)  # [800, 912): held below by a view
    assert [len(handle.receive()) for _ in range(2)] == [496, 272]
    message = bytes(range(200))
    with handle.receive_view() as view:
        assert bytes(view) == b"m0" * 48
        handle.send(message)  # padding [912, 1024), then the message at [1024, 1248)
        reader = children(_receive_many_stopping_after_its_claim, handle.name)
        _wait_stopped(reader.pid)  # it claimed [912, 1248) and stopped
    # Releasing the view moves free to the padding, and no further: the space of
    # the padding (positions 1936 on) cannot be written while the reader holds it.
    handle.send(b"x" * 496, timeout=30)  # [1248, 1760)
    handle.send(b"y" * 160, timeout=30)  # [1760, 1936)
    with pytest.raises(WouldBlock):
        handle.send(b"\x40" * 64, timeout=0)
    os.kill(reader.pid, signal.SIGCONT)
    assert reader.result() == [message]
    handle.send(b"\x40" * 64, timeout=30)
    assert [handle.receive(timeout=30) for _ in range(3)] == [b"x" * 496, b"y" * 160, b"@" * 64]
    assert handle.info().used_bytes == 0


@pytest.mark.parametrize("point", ["consumer-claimed", "consumer-copied"])
def test_a_reader_killed_mid_message_gives_its_space_back(
    names: Names, cleanup: Cleanup, children: Callable[..., Child], point: str
) -> None:
    handle = _make(names, cleanup, capacity=4096)
    for number in range(5):
        handle.send(_message(0, number, 300))
    child = children(_send_then_stop_at, handle.name, 0, point, 300)
    _kill_at(child)
    # The killed reader took message 0 with it; the others are still there, in order.
    reader = Ring.open(handle.name)
    cleanup(reader.close)
    assert [_check_message(reader.receive(timeout=30)) for _ in range(4)] == [
        (0, n) for n in range(1, 5)
    ]
    # Its record is reclaimed: the producer can fill the whole ring again.
    for number in range(5, 5 + 4096 // 320):
        handle.send(_message(0, number, 300), timeout=30)
    assert reader.info().consumers == 1


def _sleep_in_receive(name: str) -> None:
    with Ring.open(name) as handle:
        handle.receive(timeout=60)


def _data_waiters(name: str) -> int:
    """The header's count of sleeping receivers (line 4 of the header: futex, count)."""
    with PosixSharedMemory.open(name) as memory:
        return int(struct.unpack_from("<I", memory.buf, 4 * 64 + 4)[0])


def test_a_receiver_killed_in_its_sleep_is_taken_out_of_the_waiter_count(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    handle = _make(names, cleanup)
    child = children(_sleep_in_receive, handle.name)
    wait_until(lambda: _data_waiters(handle.name) == 1)
    os.kill(child.pid, signal.SIGKILL)
    child.process.join(30)
    assert handle.info().attached == 1  # taking the census buries the dead handle
    assert _data_waiters(handle.name) == 0  # senders stop making wake-up calls


def _receive_two(name: str) -> list[bytes]:
    with Ring.open(name) as handle:
        return [handle.receive(timeout=60), handle.receive(timeout=60)]


def _receive_stopping_when_woken(name: str) -> None:
    with Ring.open(name) as handle:
        ring._stop_at("consumer-woken")
        handle.receive(timeout=60)
    raise AssertionError("the stop point was never reached")


def test_a_sleeper_killed_after_arming_leaves_live_sleepers_their_wake_ups(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    # The dead sleeper left the wake-up word armed: the next commit spends its
    # wake-up on the futex, where only the live sleeper waits, and no commit skips
    # the live one because of the dead one.
    handle = _make(names, cleanup)
    dead = children(_sleep_in_receive, handle.name)
    wait_until(lambda: _data_waiters(handle.name) == 1)
    os.kill(dead.pid, signal.SIGKILL)
    dead.process.join(30)
    assert handle.info().attached == 1  # buried: its sleep no longer counts
    live = children(_receive_two, handle.name)
    wait_until(lambda: _data_waiters(handle.name) == 1)
    handle.send(b"one")
    handle.send(b"two")
    assert live.result() == [b"one", b"two"]


def test_a_consumer_killed_after_its_wake_up_does_not_strand_the_others(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    # Consumers are woken one at a time, and the woken one arms the word again for
    # the others. Killed before it could, it still counts as a sleeper: the live
    # sleeper's liveness look (every 0.2 s) buries it, which wakes everyone.
    handle = _make(names, cleanup)
    woken = children(_receive_stopping_when_woken, handle.name)
    wait_until(lambda: _data_waiters(handle.name) == 1)
    live = children(_receive_two, handle.name)
    wait_until(lambda: _data_waiters(handle.name) == 2)
    handle.send(b"one")  # wakes the first sleeper (futex wake-ups are first in, first out)
    _kill_at(woken)
    started = time.monotonic()
    handle.send(b"two")  # the word is not armed: no wake-up from this commit
    assert live.result() == [b"one", b"two"]
    assert time.monotonic() - started < 5  # about 0.2 s; generous for a busy machine
    assert _data_waiters(handle.name) == 0


def test_a_ring_of_another_layout_version_is_refused_naming_both(
    names: Names, cleanup: Cleanup
) -> None:
    handle = _make(names, cleanup)
    with PosixSharedMemory.open(handle.name) as memory:
        memory.buf[8:12] = struct.pack("<I", 2)
    with pytest.raises(IPCError, match="layout version is 2, and this unixipc reads version 3"):
        Ring.open(handle.name)


def _consume_one_then_die(name: str) -> None:
    handle = Ring.open(name)
    handle.receive(timeout=30)
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_sender_blocked_on_a_full_ring_gets_peer_died_when_its_consumer_dies(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    handle = _make(names, cleanup, capacity=1024)
    handle.send(b"one")
    children(_consume_one_then_die, handle.name).process.join(30)
    with pytest.raises(PeerDied, match="every consumer is gone"):
        _send_forever(handle, b"x" * 100)


def _crash_mid_write(name: str) -> None:
    handle = Ring.open(name)
    handle.send(b"committed")
    ring._stop_at("producer-half-written")
    handle.send(b"never committed" * 10)


def _reuse(name: str) -> list[bytes]:
    with Ring.open(name) as handle:
        got = [handle.receive(timeout=30)]
        handle.send(b"after the crash")
        got.append(handle.receive(timeout=30))
        return got


def test_a_ring_left_by_crashed_processes_can_be_reopened(
    names: Names, children: Callable[..., Child], cleanup: Cleanup
) -> None:
    name = names.posix("ring")
    Ring.create(name, 4096).close()
    cleanup(ring.unlink, name)
    _kill_at(children(_crash_mid_write, name))
    assert children(_reuse, name, method="spawn").result() == [b"committed", b"after the crash"]


def test_a_corrupt_or_foreign_object_is_refused(names: Names, cleanup: Cleanup) -> None:
    name = names.posix("shm")
    with PosixSharedMemory.create(name, 64 * 1024) as memory:
        cleanup(ring.unlink, name)
        with pytest.raises(IPCError, match="never initialized"):
            Ring.open(name)
        memory.buf[:8] = b"NOTARING"
        with pytest.raises(IPCError, match="magic number"):
            Ring.open(name)
    small = names.posix("shm")
    PosixSharedMemory.create(small, 100).close()
    cleanup(ring.unlink, small)
    with pytest.raises(IPCError, match="too small"):
        Ring.open(small)


def test_stale_header_bytes_completed_by_a_payload_never_look_committed(
    names: Names, cleanup: Cleanup
) -> None:
    # Lap 1 leaves a committed-looking header of position 0 at offset 0; the ring is
    # then empty with head at position 1024, offset 0 again. A payload of a later lap
    # that ends two bytes into that header's tag would overwrite its low two bytes:
    # every value of them must leave the record at head uncommitted. (With the
    # tag (position ^ key) | kind of layout 1, one value in 32768 made the old
    # header pass for position 1024: a message delivered twice, or a ring "corrupt".)
    handle = _make(names, cleanup, capacity=1024)
    largest = b"L" * handle.max_message_size  # a record of half the ring
    for _ in range(2):
        handle.send(largest)
    assert [handle.receive(timeout=0), handle.receive(timeout=0)] == [largest, largest]
    tag_low = ring._native.RING_DATA_OFFSET + 8
    with PosixSharedMemory.open(handle.name) as memory:
        original = bytes(memory.buf[tag_low : tag_low + 2])
        forged = 0
        for value in range(1 << 16):
            memory.buf[tag_low : tag_low + 2] = value.to_bytes(2, "little")
            try:
                handle.receive(timeout=0)
            except WouldBlock:
                continue
            forged += 1
        memory.buf[tag_low : tag_low + 2] = original
    assert forged == 0
    handle.send(b"after")
    assert handle.receive(timeout=0) == b"after"
    assert (handle.info().used_bytes, handle.info().messages) == (0, 0)


def test_a_damaged_record_gives_an_error_not_a_crash(names: Names, cleanup: Cleanup) -> None:
    handle = _make(names, cleanup, capacity=4096)
    handle.send(b"x" * 100)
    with PosixSharedMemory.open(handle.name) as memory:
        offset = ring._native.RING_DATA_OFFSET
        memory.buf[offset + 4 : offset + 8] = struct.pack("<I", 1 << 30)  # record size
    with pytest.raises(IPCError, match="is corrupt"):
        handle.receive(timeout=0)
    with pytest.raises(IPCError, match="is corrupt"):
        handle.receive_many(5, timeout=0)
    with PosixSharedMemory.open(handle.name) as memory:
        layout = ring._native.RING_DATA_OFFSET - 4096 - 128 * 64
        assert layout == 0
        memory.buf[16:24] = struct.pack("<Q", 1 << 40)  # capacity
    with pytest.raises(IPCError, match="capacity"):
        Ring.open(handle.name)


# -- command line ------------------------------------------------------------------------


def test_the_command_line_creates_sends_receives_and_removes(names: Names) -> None:
    from tests.test_cli import unixipc_cli

    name = names.posix("cli")
    created = unixipc_cli("ring", "create", name, "--capacity", "4096")
    assert created.returncode == 0, created.stderr
    assert "max message size 2032" in created.stdout
    try:
        assert unixipc_cli("ring", "send", name, "hello", "world").returncode == 0
        info = json.loads(unixipc_cli("--json", "ring", "info", name).stdout)
        assert (info["messages"], info["attached"], info["capacity"]) == (2, 0, 4096)
        received = unixipc_cli("ring", "receive", name, "--count", "5", "--timeout", "5")
        assert received.returncode == 0, received.stderr
        assert received.stdout == "hello\nworld\n"  # then EndOfChannel: the sender closed
        timed_out = unixipc_cli("ring", "receive", name, "--timeout", "0.2")
        assert timed_out.returncode == 0  # the last producer closed: end, not an error
    finally:
        assert unixipc_cli("ring", "unlink", name).returncode == 0
    missing = unixipc_cli("ring", "info", name)
    assert missing.returncode == 1
    assert "shared-memory ring" in missing.stderr
    assert "does not exist" in missing.stderr
