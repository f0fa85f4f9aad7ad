"""POSIX message queues between real processes, and against C peers.

Queues here are small (at most 4 messages of at most 256 bytes unless a test
needs more): the per-user RLIMIT_MSGQUEUE quota is shared with other test runs.
"""

from __future__ import annotations

import array
import asyncio
import errno
import grp
import inspect
import os
import pydoc
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Names
from tests.helpers import Child, assert_elapsed, compile_c, fd_count, run_python, wait_until
from unixipc import (
    ClosedResourceError,
    IPCOSError,
    Message,
    MessageTooLarge,
    PermissionDeniedError,
    PosixMessageQueue,
    ResourceExistsError,
    ResourceLimitError,
    ResourceNotFoundError,
    SysVMessageQueue,
    TimeoutExpired,
    UnsupportedFeature,
    WouldBlock,
    posix_mq,
)

Cleanup = Callable[..., None]


def make_queue(
    names: Names, cleanup: Cleanup, max_messages: int = 4, max_message_size: int = 256
) -> PosixMessageQueue:
    name = names.posix("mq")
    queue = PosixMessageQueue.create(
        name, max_messages=max_messages, max_message_size=max_message_size
    )
    cleanup(posix_mq.unlink, name)
    cleanup(queue.close)
    return queue


def has_capability(bit: int) -> bool:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


CAP_SYS_RESOURCE = 24


# ---- creating, opening, removing ---------------------------------------------


def test_create_open_info_and_their_errors(names: Names, cleanup: Cleanup) -> None:
    name = names.posix("mq")
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        PosixMessageQueue.open(name)
    assert not posix_mq.exists(name)
    old = os.umask(0o077)
    try:
        queue = PosixMessageQueue.create(
            name, max_messages=3, max_message_size=100, permissions=0o640
        )
    finally:
        os.umask(old)
    cleanup(posix_mq.unlink, name)
    with queue:
        assert posix_mq.exists(name)
        assert (queue.name, queue.max_messages, queue.max_message_size) == (name, 3, 100)
        info = queue.info()
        assert info == posix_mq.PosixMessageQueueInfo(
            name, 3, 100, 0, 0o640, os.getuid(), os.getgid()
        )
        with pytest.raises(ResourceExistsError, match="already exists"):
            PosixMessageQueue.create(name, max_messages=2, max_message_size=10)
        with PosixMessageQueue.open_or_create(name, max_messages=1, max_message_size=8) as same:
            assert (same.max_messages, same.max_message_size) == (3, 100)  # keeps its own
            same.send(b"through another handle")
        assert queue.info().current_messages == 1
        queue.unlink()
        assert not posix_mq.exists(name)
        assert queue.receive(timeout=0).data == b"through another handle"  # still usable
    with pytest.raises(ResourceNotFoundError):
        posix_mq.unlink(name)
    assert queue.closed
    queue.close()  # idempotent
    with pytest.raises(ClosedResourceError):
        queue.send(b"x")
    with pytest.raises(ClosedResourceError):
        queue.receive(timeout=0)
    with pytest.raises(ClosedResourceError):
        queue.fileno()


def test_open_or_create_creates(names: Names, cleanup: Cleanup) -> None:
    name = names.posix("mq")
    with PosixMessageQueue.open_or_create(name, max_messages=2, max_message_size=16) as queue:
        cleanup(posix_mq.unlink, name)
        assert (queue.max_messages, queue.max_message_size) == (2, 16)
    posix_mq.unlink(name)


def test_read_only_and_write_only_handles(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    with PosixMessageQueue.open(queue.name, read=False) as writer:
        writer.send(b"w")
        with pytest.raises(IPCOSError, match="not opened for reading"):
            writer.receive(timeout=0)
    with PosixMessageQueue.open(queue.name, write=False) as reader:
        with pytest.raises(IPCOSError, match="not opened for writing"):
            reader.send(b"r")
        assert reader.receive(timeout=0) == (b"w", 0)
    with pytest.raises(ValueError, match="reading, writing or both"):
        PosixMessageQueue.open(queue.name, read=False, write=False)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("no_slash", ValueError),
        ("/two/slashes", ValueError),
        ("/", ValueError),
        ("", ValueError),
        ("/" + "x" * 300, ValueError),
        (b"/bytes", TypeError),
        (None, TypeError),
    ],
)
def test_bad_names_are_refused_before_any_system_call(bad: object, error: type) -> None:
    with pytest.raises(error, match="name"):
        PosixMessageQueue.create(bad, max_messages=1, max_message_size=8)  # type: ignore[arg-type]
    with pytest.raises(error, match="name"):
        PosixMessageQueue.open(bad)  # type: ignore[arg-type]
    with pytest.raises(error, match="name"):
        posix_mq.unlink(bad)  # type: ignore[arg-type]


def test_bad_arguments_are_refused(names: Names, cleanup: Cleanup) -> None:
    name = names.posix("mq")
    with pytest.raises(ValueError, match="max_messages"):
        PosixMessageQueue.create(name, max_messages=0, max_message_size=8)
    with pytest.raises(TypeError, match="max_message_size"):
        PosixMessageQueue.create(name, max_messages=1, max_message_size=8.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="permissions"):
        PosixMessageQueue.create(name, max_messages=1, max_message_size=8, permissions=0o10000)
    assert not posix_mq.exists(name)
    queue = make_queue(names, cleanup)
    bad_priorities = [
        (-1, ValueError),
        (posix_mq.MQ_PRIO_MAX, ValueError),
        (True, TypeError),
        ("1", TypeError),
        (1.0, TypeError),
    ]
    for priority, error in bad_priorities:
        with pytest.raises(error, match="priority"):
            queue.send(b"x", priority=priority)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="message must be a bytes-like object"):
        queue.send("text")
    with pytest.raises(ValueError, match="timeout"):
        queue.send(b"x", timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        queue.receive(timeout="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="buffer must be a writable"):
        queue.receive_into(b"read-only" * 100, timeout=0)
    with pytest.raises(TypeError, match="callable"):
        queue.request_notification(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        queue.request_notification(print, signal=signal.SIGUSR1)
    with pytest.raises(ValueError, match="signal"):
        queue.request_notification(signal=0)
    assert queue.info().current_messages == 0  # nothing was sent by any of these


# ---- messages -------------------------------------------------------------------


def test_highest_priority_first_and_fifo_within_a_priority(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup, max_messages=8)
    sent = [(b"a", 1), (b"b", 5), (b"c", 1), (b"d", 0), (b"e", 5), (b"f", 31)]
    for data, priority in sent:
        queue.send(data, priority=priority)
    received = [queue.receive(timeout=0) for _ in sent]
    assert received == [(b"f", 31), (b"b", 5), (b"e", 5), (b"a", 1), (b"c", 1), (b"d", 0)]
    assert all(isinstance(message, Message) for message in received)
    assert received[0].data == b"f"
    assert received[0].priority == 31


def test_any_bytes_like_message_and_receive_into(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    queue.send(bytearray(b"bytearray"))
    queue.send(memoryview(b"xxmemoryviewxx")[2:-2])
    queue.send(array.array("i", [1, 2, 3]), priority=2)
    queue.send(b"")
    buffer = bytearray(300)
    assert queue.receive_into(buffer) == (12, 2)
    assert array.array("i", bytes(buffer[:12])).tolist() == [1, 2, 3]
    assert queue.receive_into(memoryview(buffer)[10:], timeout=0) == (9, 0)
    assert buffer[10:19] == b"bytearray"
    assert queue.receive() == (b"memoryview", 0)
    assert queue.receive() == (b"", 0)


def test_oversize_messages(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup, max_message_size=64)
    with pytest.raises(MessageTooLarge, match="65 bytes exceeds its max_message_size of 64"):
        queue.send(b"x" * 65)
    assert queue.info().current_messages == 0
    queue.send(b"y" * 64)
    with pytest.raises(MessageTooLarge, match="smaller than its max_message_size"):
        queue.receive_into(bytearray(63))
    assert queue.info().current_messages == 1  # nothing was taken
    assert queue.receive() == (b"y" * 64, 0)


# ---- timeouts -------------------------------------------------------------------


def _send_later(name: str, delay: float, data: bytes) -> None:
    time.sleep(delay)
    with PosixMessageQueue.open(name, read=False) as queue:
        queue.send(data, priority=9)


def _receive_later(name: str, delay: float) -> bytes:
    time.sleep(delay)
    with PosixMessageQueue.open(name, write=False) as queue:
        return queue.receive(timeout=30).data


def test_every_timeout_case(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup, max_messages=2)
    with pytest.raises(WouldBlock, match="would block"):
        queue.receive(timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired, match=r"timed out after 0\.3 s"):
        queue.receive(timeout=0.3)
    assert_elapsed(started, 0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        queue.receive_into(bytearray(256), timeout=0.2)
    assert_elapsed(started, 0.2)
    queue.send(b"1", timeout=0)
    queue.send(b"2", timeout=0.5)
    with pytest.raises(WouldBlock):
        queue.send(b"full", timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        queue.send(b"full", priority=3, timeout=0.3)
    assert_elapsed(started, 0.3)
    # timeout=None blocks until another process makes room...
    child = Child(_receive_later, queue.name, 0.2)
    queue.send(b"3")
    assert child.result() == b"1"
    # ...or sends.
    assert [queue.receive(timeout=0).data for _ in range(2)] == [b"2", b"3"]
    child = Child(_send_later, queue.name, 0.2, b"late")
    assert queue.receive() == (b"late", 9)
    child.result()


def test_a_signal_runs_its_handler_and_the_wait_goes_on(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    caught = []
    previous = signal.signal(signal.SIGALRM, lambda number, frame: caught.append(number))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        started = time.monotonic()
        with pytest.raises(TimeoutExpired):
            queue.receive(timeout=0.4)
        assert_elapsed(started, 0.4)
        assert caught == [signal.SIGALRM]

        def interrupt(number: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt):
            queue.receive()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---- many processes -------------------------------------------------------------

PRODUCERS = 3
CONSUMERS = 3
PER_PRODUCER = 300


def _produce(name: str, number: int) -> int:
    with PosixMessageQueue.open(name, read=False) as queue:
        for i in range(PER_PRODUCER):
            queue.send(f"{number}:{i}".encode(), priority=1, timeout=60)
    return PER_PRODUCER


def _consume(name: str) -> list[str]:
    received = []
    with PosixMessageQueue.open(name, write=False) as queue:
        while True:
            data, priority = queue.receive(timeout=60)
            if priority == 0:  # the end marker comes after every priority-1 message
                return received
            received.append(data.decode())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_many_producers_and_consumers_lose_and_duplicate_nothing(
    names: Names, cleanup: Cleanup, method: str
) -> None:
    queue = make_queue(names, cleanup, max_messages=4, max_message_size=32)
    consumers = [Child(_consume, queue.name, method=method) for _ in range(CONSUMERS)]
    producers = [Child(_produce, queue.name, n, method=method) for n in range(PRODUCERS)]
    assert sum(producer.result() for producer in producers) == PRODUCERS * PER_PRODUCER
    for _ in consumers:
        queue.send(b"end", priority=0, timeout=60)
    per_consumer = [consumer.result() for consumer in consumers]
    received = [message for messages in per_consumer for message in messages]
    expected = {f"{n}:{i}" for n in range(PRODUCERS) for i in range(PER_PRODUCER)}
    assert len(received) == len(expected)
    assert set(received) == expected
    # One queue is FIFO within a priority: each consumer sees each producer's
    # messages in the order they were sent.
    for messages in per_consumer:
        for n in range(PRODUCERS):
            sequence = [int(m.split(":")[1]) for m in messages if m.startswith(f"{n}:")]
            assert sequence == sorted(sequence)


# ---- readiness, notification ----------------------------------------------------


def test_fileno_works_with_asyncio(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)

    async def main() -> Message:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(queue.fileno(), ready.set)
        try:
            child = Child(_send_later, queue.name, 0.2, b"via asyncio")
            await asyncio.wait_for(ready.wait(), 60)
            message = queue.receive(timeout=0)
            child.result()
            return message
        finally:
            loop.remove_reader(queue.fileno())

    assert asyncio.run(main()) == (b"via asyncio", 9)


def test_fileno_works_with_selectors_for_room_too(names: Names, cleanup: Cleanup) -> None:
    import selectors

    queue = make_queue(names, cleanup, max_messages=1)
    with selectors.DefaultSelector() as selector:
        selector.register(queue.fileno(), selectors.EVENT_READ | selectors.EVENT_WRITE)
        assert [events for _, events in selector.select(0)] == [selectors.EVENT_WRITE]
        queue.send(b"x")
        assert [events for _, events in selector.select(0)] == [selectors.EVENT_READ]


def test_notification_by_callback_is_one_shot_and_re_armable(
    names: Names, cleanup: Cleanup
) -> None:
    queue = make_queue(names, cleanup)
    arrived = threading.Event()
    threads: list[str] = []

    def on_arrival() -> None:
        threads.append(threading.current_thread().name)
        arrived.set()

    for round_number in range(2):
        arrived.clear()
        queue.request_notification(on_arrival)
        child = Child(_send_later, queue.name, 0.1, f"round {round_number}".encode())
        assert arrived.wait(60)
        child.result()
        assert queue.receive(timeout=0).data == f"round {round_number}".encode()
    assert len(threads) == 2  # one call per request: one-shot, then re-armed
    assert threading.current_thread().name not in threads


def _try_to_register(name: str) -> str:
    with PosixMessageQueue.open(name) as queue:
        try:
            queue.request_notification(signal=signal.SIGUSR2)
        except IPCOSError as error:
            return f"{error.errno} {error}"
        queue.request_notification()  # give it back
        return "registered"


def test_only_one_process_holds_the_notification(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    queue.request_notification(lambda: None)
    answer = Child(_try_to_register, queue.name).result()
    assert answer.startswith(f"{errno.EBUSY} ")
    assert "another process already holds its notification" in answer
    queue.request_notification()  # cancelled: now another process may register
    assert Child(_try_to_register, queue.name).result() == "registered"
    queue.request_notification(lambda: None)
    queue.close()  # closing the handle gives the registration up too
    assert Child(_try_to_register, queue.name).result() == "registered"


def test_notification_by_signal(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    caught: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda number, frame: caught.append(number))
    try:
        queue.request_notification(signal=signal.SIGUSR1)
        child = Child(_send_later, queue.name, 0.1, b"signalled")
        wait_until(lambda: bool(caught))
        child.result()
        assert caught == [signal.SIGUSR1]
        assert queue.receive(timeout=0).data == b"signalled"
    finally:
        signal.signal(signal.SIGUSR1, previous)


# ---- listing --------------------------------------------------------------------


def test_list_names_explains_how_to_mount_when_unmounted() -> None:
    if posix_mq.mqueue_mount_point() is None:
        with pytest.raises(UnsupportedFeature, match=r"mount -t mqueue none /dev/mqueue"):
            posix_mq.list_names()
    else:
        assert isinstance(posix_mq.list_names(), list)


LIST_IN_NAMESPACE = """
import os, subprocess, sys
from unixipc import posix_mq
mount_point = sys.argv[1]
os.makedirs(mount_point, exist_ok=True)
subprocess.run(["mount", "-t", "mqueue", "none", mount_point], check=True)
assert posix_mq.mqueue_mount_point() == mount_point, posix_mq.mqueue_mount_point()
print("\\n".join(posix_mq.list_names()))
"""


def test_list_names_reads_a_mounted_mqueue_filesystem(
    names: Names, cleanup: Cleanup, tmp_path: Path
) -> None:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("mounting an mqueue filesystem needs root and unshare(1) (util-linux)")
    queue = make_queue(names, cleanup)
    # A private mount namespace: the mount vanishes with the process.
    result = subprocess.run(
        [
            unshare,
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            "-c",
            LIST_IN_NAMESPACE,
            str(tmp_path / "mq with space"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split()
    assert queue.name in listed
    assert listed == sorted(listed)


# ---- kernel limits --------------------------------------------------------------


def test_attributes_above_the_sysctls_name_the_limit(names: Names, cleanup: Cleanup) -> None:
    name = names.posix("mq")
    cleanup(posix_mq.unlink, name)
    msg_max = int(Path("/proc/sys/fs/mqueue/msg_max").read_text())
    msgsize_max = int(Path("/proc/sys/fs/mqueue/msgsize_max").read_text())
    if has_capability(CAP_SYS_RESOURCE):  # the sysctls do not bind this process
        PosixMessageQueue.create(name, max_messages=msg_max + 1, max_message_size=8).close()
        return
    with pytest.raises(ResourceLimitError, match=rf"fs.mqueue.msg_max .* is {msg_max}") as error:
        PosixMessageQueue.create(name, max_messages=msg_max + 1, max_message_size=8)
    assert error.value.errno == errno.EINVAL
    with pytest.raises(ResourceLimitError, match=rf"msgsize_max .* is {msgsize_max}"):
        PosixMessageQueue.create(name, max_messages=1, max_message_size=msgsize_max + 1)
    assert not posix_mq.exists(name)


def _create_under_rlimit(name: str, limit: int) -> str:
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (limit, limit))
    try:
        PosixMessageQueue.create(name, max_messages=4, max_message_size=256).close()
    except ResourceLimitError as error:
        return str(error)
    posix_mq.unlink(name)
    return "created"


def test_rlimit_msgqueue_is_named_with_its_value(names: Names, cleanup: Cleanup) -> None:
    name = names.posix("mq")
    cleanup(posix_mq.unlink, name)
    message = Child(_create_under_rlimit, name, 100).result()
    assert "RLIMIT_MSGQUEUE is 100 bytes" in message
    assert "4 x 256" in message


# ---- C peers --------------------------------------------------------------------

C_PEER = r"""
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* peer send NAME: sends "low" (priority 3) then "high" (priority 7).
 * peer receive NAME: prints each of two messages as "PRIORITY TEXT". */
int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    mqd_t q = mq_open(argv[2], strcmp(argv[1], "send") == 0 ? O_WRONLY : O_RDONLY);
    if (q == (mqd_t)-1) { perror("mq_open"); return 1; }
    if (strcmp(argv[1], "send") == 0) {
        if (mq_send(q, "low", 3, 3) != 0 || mq_send(q, "high", 4, 7) != 0) {
            perror("mq_send");
            return 1;
        }
    } else {
        struct mq_attr attr;
        mq_getattr(q, &attr);
        char *buffer = malloc((size_t)attr.mq_msgsize);
        for (int i = 0; i < 2; i++) {
            unsigned int priority;
            ssize_t n = mq_receive(q, buffer, (size_t)attr.mq_msgsize, &priority);
            if (n < 0) { perror("mq_receive"); return 1; }
            printf("%u %.*s\n", priority, (int)n, buffer);
        }
        free(buffer);
    }
    mq_close(q);
    return 0;
}
"""


def test_c_and_python_exchange_messages_with_priorities(
    names: Names, cleanup: Cleanup, tmp_path: Path
) -> None:
    peer = compile_c(C_PEER, tmp_path, "mq_peer", "rt")
    queue = make_queue(names, cleanup)
    subprocess.run([str(peer), "send", queue.name], check=True, timeout=60)
    assert queue.receive(timeout=0) == (b"high", 7)
    assert queue.receive(timeout=0) == (b"low", 3)
    queue.send(b"from python", priority=2)
    queue.send(b"urgent", priority=30)
    result = subprocess.run(
        [str(peer), "receive", queue.name], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "30 urgent\n2 from python\n"


class Seconds(float):
    """A float subclass: valid, but not what the C fast path takes."""


class Level(int):
    """An int subclass, as an IntEnum would be."""


def test_unusual_but_valid_arguments_take_the_python_path(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    queue.send(memoryview(b"slow"), priority=Level(3), timeout=Seconds(1))
    queue.send(b"fast", priority=2, timeout=1)
    assert queue.receive(timeout=Seconds(0)) == (b"slow", 3)
    assert queue.receive_into(bytearray(256), timeout=Level(0)) == (4, 2)
    with pytest.raises(TypeError, match="timeout"):
        queue.receive(timeout=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        queue.send()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        queue.receive(colour="blue")  # type: ignore[call-arg]


EXIT_DURING_NOTIFICATION = """
import sys, time
from unixipc import PosixMessageQueue
queue = PosixMessageQueue.open(sys.argv[1])
queue.request_notification(lambda: time.sleep(0.5))  # still running at exit
queue.send(b"wake up")  # the notification fires while the interpreter exits
"""


def test_interpreter_exit_with_a_notification_in_flight_is_clean(
    names: Names, cleanup: Cleanup
) -> None:
    queue = make_queue(names, cleanup)
    for _ in range(3):
        result = run_python(EXIT_DURING_NOTIFICATION, queue.name)
        assert (result.returncode, result.stderr) == (0, "")
        assert queue.receive(timeout=0).data == b"wake up"


NOTIFIED_WITH_VALUE = """
import signal, sys
from unixipc import PosixMessageQueue, signals
with signals.blocked("RTMIN+3"), PosixMessageQueue.open(sys.argv[1]) as queue:
    queue.request_notification(signal=signal.SIGRTMIN + 3, value=int(sys.argv[2]))
    print("ready", flush=True)
    info = signals.wait("RTMIN+3", timeout=60)
    print(info.code_name, info.value, info.pid, info.uid, flush=True)
"""


def test_a_notification_signal_carries_the_value_when_a_c_program_sends(
    names: Names, cleanup: Cleanup, tmp_path: Path
) -> None:
    peer = compile_c(C_PEER, tmp_path, "mq_peer", "rt")
    queue = make_queue(names, cleanup)
    with subprocess.Popen(
        [sys.executable, "-c", NOTIFIED_WITH_VALUE, queue.name, "-424242"],
        stdout=subprocess.PIPE,
        text=True,
    ) as waiter:
        try:
            assert waiter.stdout is not None
            assert waiter.stdout.readline() == "ready\n"
            sender = subprocess.Popen([str(peer), "send", queue.name])
            assert sender.wait(timeout=60) == 0
            output, _ = waiter.communicate(timeout=60)
        finally:
            waiter.kill()
    # mq_notify's signal: code SI_MESGQ, the registered value, the C sender's pid and uid.
    assert output == f"SI_MESGQ -424242 {sender.pid} {os.getuid()}\n"
    assert queue.receive(timeout=0) == (b"high", 7)


def test_a_notification_value_needs_a_signal_and_fits_an_int(
    names: Names, cleanup: Cleanup
) -> None:
    queue = make_queue(names, cleanup)
    with pytest.raises(ValueError, match="value goes with a signal"):
        queue.request_notification(lambda: None, value=3)
    with pytest.raises(ValueError, match="C int"):
        queue.request_notification(signal=signal.SIGUSR1, value=2**31)


# ---- exact permissions, groups, all-or-nothing creation ----------------------------

NOBODY = 65534


def _raiser(error: BaseException) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_create_gives_exact_permissions_and_group_whatever_the_umask(
    names: Names, cleanup: Cleanup, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    modes_before_the_group: list[int] = []
    real_finish = posix_mq.finish

    def watched(fd: int, permissions: int, group: int | None, **options: bool) -> None:
        modes_before_the_group.append(os.fstat(fd).st_mode & 0o777)
        real_finish(fd, permissions, group, **options)

    monkeypatch.setattr(posix_mq, "finish", watched)
    name = names.posix("mq")
    old = os.umask(umask)
    try:
        queue = PosixMessageQueue.create(
            name, max_messages=2, max_message_size=64, permissions=0o640, group=NOBODY
        )
    finally:
        os.umask(old)
    cleanup(posix_mq.unlink, name)
    cleanup(queue.close)
    info = queue.info()
    assert (info.permissions, info.gid) == (0o640, NOBODY)
    # Owner-only until it had its group: the creator's group never saw it.
    assert modes_before_the_group[0] & ~0o700 == 0
    group_name = grp.getgrgid(NOBODY).gr_name
    named = names.posix("mq")
    with PosixMessageQueue.create(named, max_messages=1, max_message_size=8, group=group_name) as q:
        cleanup(posix_mq.unlink, named)
        assert q.info().gid == NOBODY


def test_world_writable_queues_need_saying_so(names: Names, cleanup: Cleanup) -> None:
    name = names.posix("mq")
    with pytest.raises(ValueError, match="allow_world_writable"):
        PosixMessageQueue.create(name, permissions=0o666)
    with pytest.raises(ValueError, match="allow_world_writable"):
        PosixMessageQueue.open_or_create(name, permissions=0o622)
    assert not posix_mq.exists(name)  # refused before any system call
    queue = PosixMessageQueue.create(
        name, max_messages=1, max_message_size=8, permissions=0o666, allow_world_writable=True
    )
    cleanup(posix_mq.unlink, name)
    cleanup(queue.close)
    assert queue.info().permissions == 0o666


@pytest.mark.parametrize("step", ["mode", "interrupted", "attach", "getattr"])
def test_a_create_that_fails_after_the_name_exists_leaves_nothing(
    names: Names, cleanup: Cleanup, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    failure: type[BaseException] = PermissionDeniedError
    if step == "mode":
        monkeypatch.setattr(posix_mq, "finish", _raiser(PermissionError(errno.EPERM, "no")))
    elif step == "interrupted":
        monkeypatch.setattr(posix_mq, "finish", _raiser(KeyboardInterrupt()))
        failure = KeyboardInterrupt
    elif step == "attach":
        monkeypatch.setattr(PosixMessageQueue, "_attach", _raiser(OSError(errno.EIO, "io")))
        failure = IPCOSError
    else:
        monkeypatch.setattr(posix_mq._native, "mq_getattr", _raiser(OSError(errno.EIO, "io")))
        failure = IPCOSError
    name = names.posix("mq")
    descriptors = fd_count()
    with pytest.raises(failure):
        PosixMessageQueue.create(name, max_messages=1, max_message_size=8, group=NOBODY)
    assert not posix_mq.exists(name)
    assert fd_count() == descriptors
    monkeypatch.undo()
    with PosixMessageQueue.create(name, max_messages=1, max_message_size=8) as queue:
        cleanup(posix_mq.unlink, name)  # the retry works
        queue.send(b"ok")


def test_what_the_c_fast_path_trusts_cannot_be_changed_from_python(
    names: Names, cleanup: Cleanup
) -> None:
    queue = make_queue(names, cleanup)
    for attribute, value in (("_result_type", int), ("_limit", 2**40), ("_handle", 0)):
        with pytest.raises(AttributeError):
            setattr(queue, attribute, value)
    with pytest.raises(RuntimeError, match="attached already"):
        queue._attach(queue.fileno(), "again", Message)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"use PosixMessageQueue.create\(...\)"):
        PosixMessageQueue("/jobs")  # type: ignore[call-arg]  # as posix_ipc users write
    assert queue._limit == queue.max_message_size == 256  # read from the kernel
    queue.send(b"still fine")
    assert queue.receive(timeout=0) == (b"still fine", 0)


# ---- help() and type checkers see the public methods as the class's own ----------------


@pytest.mark.parametrize("cls", [PosixMessageQueue, SysVMessageQueue])
def test_help_shows_send_and_receive_as_the_class_own_typed_and_documented(cls: type) -> None:
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    own = text.split("Methods defined here:")[1].split("-----")[0]
    assert "send(self, message: Buffer, /, *," in own
    assert "receive(self, *," in own
    assert "receive_into(self, buffer: Buffer, /, *," in own
    assert "Raises:" in own
    for inherited in text.split("inherited from unixipc._native")[1:]:
        assert "receive" not in inherited.split("-----")[0]  # at most its __new__
    assert "PosixQueueCore" not in own
    assert "SysVQueueCore" not in own
    assert inspect.signature(cls.send).parameters["timeout"].default is None


MYPY_PROBE = """
from unixipc import PosixMessageQueue, SysVMessageQueue

def use(queue: PosixMessageQueue, other: SysVMessageQueue) -> None:
    queue.send(1)
    other.receive(type="x")
"""


def test_type_checkers_name_the_public_classes(tmp_path: Path) -> None:
    from mypy import api as mypy_api  # a dev dependency, like pytest

    probe = tmp_path / "probe.py"
    probe.write_text(MYPY_PROBE)
    report, _, status = mypy_api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(probe)]
    )
    assert status == 1
    assert '"send" of "PosixMessageQueue"' in report
    assert '"receive" of "SysVMessageQueue"' in report
    assert "QueueCore" not in report
