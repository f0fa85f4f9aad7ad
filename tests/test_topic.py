"""Topics between real processes: fan-out, history, overflow, loans, views, crashes."""

from __future__ import annotations

import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import numpy
import pytest

from tests.conftest import Names
from tests.helpers import Child, wait_until
from unixipc import (
    ClosedResourceError,
    IPCError,
    MessagesMissed,
    MessageTooLarge,
    PosixSharedMemory,
    ResourceExistsError,
    ResourceLimitError,
    ResourceNotFoundError,
    TimeoutExpired,
    Topic,
    WouldBlock,
    topic,
)

Cleanup = Callable[..., None]


def _make(names: Names, cleanup: Cleanup, **options: int) -> Topic:
    name = names.posix("topic")
    settings = {"capacity": 16, "max_message_size": 256, **options}
    created = Topic.create(name, **settings)
    cleanup(topic.unlink, name)
    cleanup(created.close)
    return created


def _message(publisher: int, number: int) -> bytes:
    """A message naming its publisher and number, with a checkable body of varying length."""
    head = struct.pack("<II", publisher, number)
    return head + bytes([(publisher * 7 + number) % 251]) * (number % 97)


def _check(data: bytes) -> tuple[int, int]:
    publisher, number = struct.unpack_from("<II", data)
    assert data == _message(publisher, number), "torn or stale message"
    return publisher, number


def _wait_stopped(pid: int) -> None:
    def stopped() -> bool:
        with open(f"/proc/{pid}/stat") as status:
            return status.read().rsplit(")", 1)[1].split()[0] == "T"

    wait_until(stopped)


def _kill(child: Child) -> None:
    _wait_stopped(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    child.process.join(30)


# -- children (module level, so that spawn can import them) ---------------------------


def _publish_numbers(name: str, publisher: int, count: int, subscribers: int) -> int:
    with Topic.open(name) as handle:
        out = handle.publisher()
        wait_until(lambda: handle.info().subscribers >= subscribers)
        for number in range(count):
            if number % 5 == 0:
                with out.loan(len(_message(publisher, number)), timeout=60) as buffer:
                    buffer[:] = _message(publisher, number)
            else:
                out.publish(_message(publisher, number), timeout=60)
    return count


def _subscribe_and_count(name: str, publishers: int, count: int, how: str) -> dict[int, int]:
    with Topic.open(name) as handle:
        subscriber = handle.subscribe(history=False)
        seen = dict.fromkeys(range(publishers), 0)
        buffer = bytearray(256)
        while sum(seen.values()) < publishers * count:
            if how == "many":
                messages = subscriber.receive_many(32, timeout=60)
            elif how == "view":
                with subscriber.receive_view(timeout=60) as view:
                    messages = [bytes(view)]
            elif how == "into":
                messages = [bytes(buffer[: subscriber.receive_into(buffer, timeout=60)])]
            else:
                messages = [subscriber.receive(timeout=60)]
            for message in messages:
                publisher, number = _check(message)
                assert number == seen[publisher], "lost, repeated or out of order"
                seen[publisher] += 1
        return seen


def _publish_then_stop(name: str, point: str, committed: int) -> None:
    handle = Topic.open(name)
    out = handle.publisher()
    for number in range(committed):
        out.publish(_message(0, number))
    topic._stop_at(point)
    if point == "loan-writing":
        with out.loan(8) as buffer:
            buffer[:] = b"unfinish"
    else:
        out.publish(b"never committed")
    raise AssertionError("the stop point was never reached")


def _receive_then_stop(name: str) -> None:
    handle = Topic.open(name)
    subscriber = handle.subscribe(history=False)
    topic._stop_at("subscriber-copying")
    subscriber.receive(timeout=60)
    raise AssertionError("the stop point was never reached")


# -- creating, opening, removing ------------------------------------------------------


def test_create_open_info_and_unlink(names: Names, cleanup: Cleanup) -> None:
    made = _make(names, cleanup, capacity=8, max_message_size=100, history=3)
    assert topic.exists(made.name)
    assert made.name in topic.list_names()
    assert (made.capacity, made.max_message_size, made.history) == (8, 100, 3)
    mode = os.stat(f"/dev/shm/{made.name[1:]}").st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert not [entry for entry in os.listdir("/dev/shm") if entry.startswith(made.name[1:] + ".")]
    with pytest.raises(ResourceExistsError):
        Topic.create(made.name, capacity=8, max_message_size=100)
    with Topic.open(made.name) as again:
        publisher = again.publisher()
        subscriber = made.subscribe()
        publisher.publish(b"hello")
        info = made.info()
        assert (info.published, info.publishers, info.subscribers) == (1, 1, 1)
        assert subscriber.receive(timeout=5) == b"hello"
    assert made.info().publishers == 0  # closing the handle closed its publisher
    made.unlink()
    assert not topic.exists(made.name)
    with pytest.raises(ResourceNotFoundError):
        Topic.open(made.name)


def test_bad_arguments_are_refused_before_any_call(names: Names, cleanup: Cleanup) -> None:
    name = names.posix("topic")
    for bad, error in [
        ({"capacity": 1}, ValueError),
        ({"capacity": "8"}, TypeError),
        ({"max_message_size": -1}, ValueError),
        ({"history": 8}, ValueError),
        ({"permissions": 0o666}, ValueError),
    ]:
        with pytest.raises(error):
            Topic.create(name, **{"capacity": 8, "max_message_size": 64, **bad})  # type: ignore[arg-type]
    assert not topic.exists(name)
    made = _make(names, cleanup, capacity=8, max_message_size=64)
    with pytest.raises(ValueError, match="overflow"):
        made.subscribe(overflow="lose")  # type: ignore[arg-type]
    publisher = made.publisher()
    with pytest.raises(TypeError):
        publisher.publish("text")  # type: ignore[arg-type]
    with pytest.raises(MessageTooLarge):
        publisher.publish(bytes(65))
    with pytest.raises(TypeError):
        publisher.publish(b"x", timeout="1")  # type: ignore[arg-type]
    with pytest.raises(MessageTooLarge):
        publisher.loan(65).__enter__()
    world = Topic.create(
        names.posix("world"),
        capacity=2,
        max_message_size=8,
        permissions=0o666,
        allow_world_writable=True,
    )
    cleanup(topic.unlink, world.name)
    assert stat.S_IMODE(os.stat(f"/dev/shm/{world.name[1:]}").st_mode) == 0o666
    world.close()


def test_a_corrupt_or_foreign_object_is_refused(names: Names, cleanup: Cleanup) -> None:
    foreign = PosixSharedMemory.create(names.posix("foreign"), 20000)
    cleanup(foreign.unlink)
    cleanup(foreign.close)
    with pytest.raises(IPCError, match="magic"):
        Topic.open(foreign.name)
    made = _make(names, cleanup, capacity=4, max_message_size=64)
    memory = PosixSharedMemory.open(made.name)
    cleanup(memory.close)
    publisher = made.publisher()
    subscriber = made.subscribe()
    publisher.publish(b"fine")
    # A length larger than the topic's maximum in the committed slot: an error, no crash.
    first_slot = 12288  # after the 4 KiB header and 128 handle slots of 64 bytes
    memory.buf[first_slot + 8 : first_slot + 12] = struct.pack("<I", 1 << 20)
    with pytest.raises(IPCError, match="corrupt"):
        subscriber.receive(timeout=1)
    # A damaged layout is refused by openers.
    memory.buf[16:24] = struct.pack("<Q", 1)  # capacity 1
    with pytest.raises(IPCError, match="inconsistent"):
        Topic.open(made.name)


# -- fan-out --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["receive", "many", "view", "into"])
def test_every_subscriber_gets_every_message_of_every_publisher_in_order(
    names: Names, cleanup: Cleanup, children: Callable[..., Child], how: str
) -> None:
    made = _make(names, cleanup, capacity=8, max_message_size=256)
    count, publishers, subscribers = 300, 2, 3
    readers = [
        children(_subscribe_and_count, made.name, publishers, count, how)
        for _ in range(subscribers)
    ]
    writers = [
        children(_publish_numbers, made.name, p, count, subscribers) for p in range(publishers)
    ]
    assert [writer.result() for writer in writers] == [count] * publishers
    for reader in readers:
        assert reader.result() == dict.fromkeys(range(publishers), count)
    assert made.info().published == count * publishers


# -- history and late joiners ---------------------------------------------------------


def test_late_joiners_get_history_then_everything_new(names: Names, cleanup: Cleanup) -> None:
    made = _make(names, cleanup, capacity=8, history=3)
    publisher = made.publisher()
    for number in range(10):
        publisher.publish(b"old %d" % number)
    everything = made.subscribe()
    two = made.subscribe(history=2)
    none = made.subscribe(history=False)
    dropping = made.subscribe(overflow="drop")
    for number in range(3):
        publisher.publish(b"new %d" % number)
    new = [b"new 0", b"new 1", b"new 2"]
    assert everything.receive_many(100, timeout=5) == [b"old 7", b"old 8", b"old 9", *new]
    assert two.receive_many(100, timeout=5) == [b"old 8", b"old 9", *new]
    assert none.receive_many(100, timeout=5) == new
    assert dropping.receive_many(100, timeout=5) == [b"old 7", b"old 8", b"old 9", *new]
    with pytest.raises(WouldBlock):
        everything.receive(timeout=0)


# -- overflow: block and drop ----------------------------------------------------------


def test_a_blocking_subscriber_holds_publishers_back(names: Names, cleanup: Cleanup) -> None:
    made = _make(names, cleanup, capacity=4)
    publisher = made.publisher()
    slow = made.subscribe()
    for number in range(4):
        publisher.publish(b"%d" % number, timeout=0)
    with pytest.raises(WouldBlock):
        publisher.publish(b"too many", timeout=0)
    assert not publisher.ready()
    with pytest.raises(TimeoutExpired):
        publisher.publish(b"too many", timeout=0.05)
    assert slow.receive(timeout=0) == b"0"
    assert publisher.ready()
    publisher.publish(b"4", timeout=0)
    assert slow.receive_many(10) == [b"1", b"2", b"3", b"4"]
    slow.close()  # a subscriber that left holds nobody back
    for number in range(10):
        publisher.publish(b"%d" % number, timeout=0)


def test_a_dropping_subscriber_learns_exactly_how_many_it_missed(
    names: Names, cleanup: Cleanup
) -> None:
    made = _make(names, cleanup, capacity=8)
    publisher = made.publisher()
    dropping = made.subscribe(overflow="drop", history=False)
    for number in range(30):
        publisher.publish(b"%d" % number, timeout=0)  # never held back by it
    with pytest.raises(MessagesMissed) as missed:
        dropping.receive(timeout=0)
    assert missed.value.count == 30 - 7
    assert dropping.missed == 23
    assert dropping.receive_many(100, timeout=0) == [b"%d" % n for n in range(23, 30)]
    with pytest.raises(WouldBlock):
        dropping.receive(timeout=0)
    assert dropping.missed == 23


def _drain_dropping(name: str, total: int) -> tuple[int, int, list[int]]:
    """Read slowly with every receive kind until the last message; return counts."""
    with Topic.open(name) as handle:
        subscriber = handle.subscribe(overflow="drop", history=False)
        numbers: list[int] = []
        missed = 0
        while not numbers or numbers[-1] < total - 1:
            try:
                if len(numbers) % 3 == 0:
                    with subscriber.receive_view(timeout=60) as view:
                        messages = [bytes(view)]
                else:
                    messages = subscriber.receive_many(4, timeout=60)
            except MessagesMissed as gap:
                missed += gap.count
                continue
            for message in messages:
                _, number = _check(message)
                assert not numbers or number > numbers[-1], "out of order"
                numbers.append(number)
            time.sleep(0.0002)
        assert subscriber.missed == missed
        return len(numbers), missed, numbers[-3:]


def test_lapped_counts_are_exact_across_processes(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    made = _make(names, cleanup, capacity=8)
    total = 4000
    reader = children(_drain_dropping, made.name, total)
    wait_until(lambda: made.info().subscribers == 1)
    publisher = made.publisher()
    for number in range(total):
        publisher.publish(_message(0, number), timeout=60)
    received, missed, last = reader.result()
    assert received + missed == total
    assert missed > 0
    assert last[-1] == total - 1


# -- loans and views ------------------------------------------------------------------


def test_loans_publish_on_exit_and_nothing_on_an_exception(names: Names, cleanup: Cleanup) -> None:
    made = _make(names, cleanup)
    publisher = made.publisher()
    subscriber = made.subscribe()
    with publisher.loan(5) as buffer:
        assert len(buffer) == 5
        buffer[:] = b"first"

    def failing_loan() -> None:
        with publisher.loan(6) as buffer:
            buffer[:] = b"second"
            raise RuntimeError("the user's error wins")

    with pytest.raises(RuntimeError, match="user's"):
        failing_loan()
    with pytest.raises(IPCError, match="outlived"), publisher.loan(5) as buffer:
        kept = numpy.frombuffer(buffer, dtype=numpy.uint8)  # outlives the block
    del kept
    publisher.publish(b"third")
    assert subscriber.receive_many(10, timeout=5) == [b"first", b"third"]
    with publisher.loan(3) as buffer, pytest.raises(IPCError, match="loan"):
        publisher.publish(b"inside")
    assert subscriber.receive(timeout=5) == bytes(3)


@pytest.mark.parametrize("overflow", ["block", "drop"])
def test_views_are_zero_copy_and_hold_their_message(
    names: Names, cleanup: Cleanup, overflow: str
) -> None:
    made = _make(names, cleanup, capacity=2)
    publisher = made.publisher()
    subscriber = made.subscribe(overflow=overflow)  # type: ignore[arg-type]
    publisher.publish(b"kept in place")
    publisher.publish(b"next")
    with subscriber.receive_view(timeout=5) as view:
        assert view.readonly
        assert bytes(view) == b"kept in place"
        with pytest.raises(IPCError, match="still open"):
            subscriber.receive(timeout=0)
        with pytest.raises(WouldBlock):  # the viewed message's slot is held
            publisher.publish(b"over it", timeout=0)
        assert bytes(view) == b"kept in place"
    publisher.publish(b"over it", timeout=0)
    assert subscriber.receive(timeout=0) == b"next"
    with pytest.raises(IPCError, match="outlived"), subscriber.receive_view() as view:
        kept = numpy.frombuffer(view, dtype=numpy.uint8)
    del kept


def test_receive_into_checks_the_buffer(names: Names, cleanup: Cleanup) -> None:
    made = _make(names, cleanup)
    publisher = made.publisher()
    subscriber = made.subscribe()
    publisher.publish(b"0123456789")
    small = bytearray(4)
    with pytest.raises(MessageTooLarge):
        subscriber.receive_into(small, timeout=0)
    big = bytearray(64)
    assert subscriber.receive_into(big, timeout=0) == 10
    assert big[:10] == b"0123456789"
    with pytest.raises(TypeError):
        subscriber.receive_into(b"read-only", timeout=0)


# -- waiting, closing, threads, fork -----------------------------------------------------


def test_a_blocked_receive_wakes_for_a_publisher_and_for_close(
    names: Names, cleanup: Cleanup
) -> None:
    made = _make(names, cleanup)
    subscriber = made.subscribe()
    publisher = made.publisher()
    timer = threading.Timer(0.2, publisher.publish, (b"late",))
    timer.start()
    assert subscriber.receive(timeout=30) == b"late"
    timer.join()
    other = made.subscribe()
    outcome: list[BaseException] = []

    def blocked() -> None:
        try:
            other.receive(timeout=30)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=blocked)
    thread.start()
    wait_until(lambda: other._busy() == 1)
    with pytest.raises(IPCError, match="another thread"):
        other.receive(timeout=0)
    other.close()
    thread.join(30)
    assert isinstance(outcome[0], ClosedResourceError)
    with pytest.raises(ClosedResourceError):
        other.receive(timeout=0)
    with pytest.raises(ClosedResourceError):
        other.fileno()


def _use_inherited(subscriber: topic.Subscriber, made: Topic) -> str:
    with pytest.raises(IPCError, match="fork"):
        subscriber.receive(timeout=0)
    fresh = made.subscribe(history=False)
    fresh.close()
    return "ok"


def test_a_forked_child_cannot_use_the_parents_subscriber(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    made = _make(names, cleanup)
    subscriber = made.subscribe()
    assert children(_use_inherited, subscriber, made).result() == "ok"
    made.publisher().publish(b"still mine")
    assert subscriber.receive(timeout=5) == b"still mine"


def test_too_many_handles_is_a_limit_error(names: Names, cleanup: Cleanup) -> None:
    made = _make(names, cleanup, capacity=2, max_message_size=8)
    ends = [made.publisher() for _ in range(topic.MAX_HANDLES)]
    with pytest.raises(ResourceLimitError, match="128"):
        made.subscribe()
    ends.pop().close()
    made.subscribe().close()


# -- crashes ---------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["loan-writing", "publisher-claimed"])
def test_a_publisher_killed_mid_message_is_skipped(
    names: Names, cleanup: Cleanup, children: Callable[..., Child], point: str
) -> None:
    made = _make(names, cleanup, capacity=4)
    subscriber = made.subscribe()
    child = children(_publish_then_stop, made.name, point, 2)
    _kill(child)
    publisher = made.publisher()
    publisher.publish(b"after")
    assert subscriber.receive_many(10, timeout=30) == [_message(0, 0), _message(0, 1)]
    # The dead publisher's message is given up (within a slice), never shown torn.
    assert subscriber.receive(timeout=30) == b"after"
    for number in range(8):  # its slot is reused
        publisher.publish(b"%d" % number, timeout=30)
        assert subscriber.receive(timeout=30) == b"%d" % number


def test_a_subscriber_killed_mid_receive_never_blocks_publishers(
    names: Names, cleanup: Cleanup, children: Callable[..., Child]
) -> None:
    made = _make(names, cleanup, capacity=4)
    child = children(_receive_then_stop, made.name)
    wait_until(lambda: made.info().subscribers == 1)
    publisher = made.publisher()
    publisher.publish(b"taken by the dying one")
    _kill(child)
    for number in range(20):  # far more than the capacity
        publisher.publish(b"%d" % number, timeout=30)
    assert made.info().subscribers == 0


def _signal_me(
    times: int,
    pause: float,
    then: Callable[[], object] = lambda: None,
    handled: list[int] | None = None,
) -> None:
    for sent in range(1, times + 1):
        time.sleep(pause)
        os.kill(os.getpid(), signal.SIGUSR1)
        # SIGUSR1 does not queue: two sent before the handler ran would count as one.
        deadline = time.monotonic() + 30
        while handled is not None and len(handled) < sent and time.monotonic() < deadline:
            time.sleep(0.001)
    then()


def test_signal_handlers_run_and_the_wait_goes_on(names: Names, cleanup: Cleanup) -> None:
    made = _make(names, cleanup)
    subscriber = made.subscribe()
    publisher = made.publisher()
    handled: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda number, frame: handled.append(number))
    cleanup(signal.signal, signal.SIGUSR1, previous)
    signals = threading.Thread(
        target=_signal_me,
        args=(5, 0.05, lambda: publisher.publish(b"after the signals"), handled),
    )
    signals.start()
    assert subscriber.receive(timeout=30) == b"after the signals"
    signals.join()
    assert len(handled) == 5  # each ran while receive() slept, and receive() went on

    def interrupt(number: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGUSR1, interrupt)
    signals = threading.Thread(target=_signal_me, args=(1, 0.05))
    signals.start()
    with pytest.raises(KeyboardInterrupt):
        subscriber.receive(timeout=30)
    signals.join()
    publisher.publish(b"still works")
    assert subscriber.receive(timeout=5) == b"still works"


def test_the_inspector_recognises_a_topic_and_its_live_ends(names: Names, cleanup: Cleanup) -> None:
    from unixipc import inspect

    made = _make(names, cleanup, capacity=4, history=1)
    publisher = made.publisher()
    made.subscribe()
    publisher.publish(b"one")
    (item,) = inspect.find(["posix-shm"], prefix=made.name)
    assert item.unixipc == "topic"
    assert item.state == "live"
    assert item.details["publishers"] == [os.getpid()]
    assert item.details["subscribers"] == [os.getpid()]
    assert (item.details["capacity"], item.details["published"]) == (4, 1)
    made.close()
    (item,) = inspect.find(["posix-shm"], prefix=made.name)
    assert (item.unixipc, item.state, item.details["subscribers"]) == ("topic", "idle", [])


def test_a_topic_pickles_by_name_and_its_ends_refuse_to(names: Names, cleanup: Cleanup) -> None:
    import pickle

    made = _make(names, cleanup)
    again = pickle.loads(pickle.dumps(made))
    cleanup(again.close)
    assert again.name == made.name
    assert again is not made
    subscriber = again.subscribe()
    made.publisher().publish(b"through the other handle")
    assert subscriber.receive(timeout=5) == b"through the other handle"
    with pytest.raises(TypeError, match="cannot be sent"):
        pickle.dumps(subscriber)


_FULL_DEV_SHM = """
import os, sys
from unixipc import ResourceLimitError, Topic
try:
    Topic.create("/big", capacity=64, max_message_size=65536)
except ResourceLimitError as error:
    print("limit:", error)
print("left:", sorted(os.listdir("/dev/shm")))
"""


def test_a_create_that_finds_no_room_leaves_nothing() -> None:
    # A private mount namespace with a 1 MiB /dev/shm: the 4 MiB topic cannot fit.
    command = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$0" -c "$1"',
        sys.executable,
        _FULL_DEV_SHM,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert "limit:" in result.stdout
    assert "no room" in result.stdout
    assert "left: []" in result.stdout
