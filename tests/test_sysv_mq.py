"""System V message queues between real processes, and against C peers."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import Names
from tests.helpers import Child, assert_elapsed, compile_c, wait_until
from unixipc import (
    IPC_PRIVATE,
    ClosedResourceError,
    IPCOSError,
    MessageTooLarge,
    PermissionDeniedError,
    ResourceExistsError,
    ResourceNotFoundError,
    SysVMessage,
    SysVMessageQueue,
    TimeoutExpired,
    WouldBlock,
    ftok,
    sysv_mq,
)

Cleanup = Callable[..., None]

MSGMAX = int(Path("/proc/sys/kernel/msgmax").read_text())
MSGMNB = int(Path("/proc/sys/kernel/msgmnb").read_text())


def make_queue(names: Names, cleanup: Cleanup) -> SysVMessageQueue:
    key = names.key()
    queue = SysVMessageQueue.create(key)
    cleanup(sysv_mq.unlink, key)  # runs after the close below: by key, not by handle
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
    key = names.key()
    assert not sysv_mq.exists(key)
    with pytest.raises(ResourceNotFoundError, match=f"0x{key:08x}' does not exist"):
        SysVMessageQueue.open(key)
    queue = SysVMessageQueue.create(key, permissions=0o640)
    cleanup(sysv_mq.unlink, key)
    with queue:
        assert (queue.key, sysv_mq.exists(key)) == (key, True)
        assert queue.id in sysv_mq.list_ids()
        info = queue.info()
        assert (info.key, info.id, info.permissions) == (key, queue.id, 0o640)
        assert (info.uid, info.gid, info.creator_uid) == (os.getuid(), os.getgid(), os.getuid())
        assert (info.current_messages, info.current_bytes, info.max_bytes) == (0, 0, MSGMNB)
        assert (info.last_send_pid, info.last_send_time) == (0, 0)
        with pytest.raises(ResourceExistsError, match="already exists"):
            SysVMessageQueue.create(key)
        with SysVMessageQueue.open(key) as same, SysVMessageQueue.open_or_create(key) as again:
            assert same.id == again.id == queue.id
        queue.unlink()
        assert not sysv_mq.exists(key)
        assert queue.id not in sysv_mq.list_ids()
        with pytest.raises(ResourceNotFoundError, match="removed"):
            queue.send(b"x")
        with pytest.raises(ResourceNotFoundError):
            queue.info()
    with pytest.raises(ResourceNotFoundError):
        sysv_mq.unlink(key)
    queue.close()
    with pytest.raises(ClosedResourceError):
        queue.receive(timeout=0)


def test_open_or_create_then_unlink_by_key(names: Names) -> None:
    key = names.key()
    with SysVMessageQueue.open_or_create(key, permissions=0o600) as queue:
        queue.send(b"x")
        with SysVMessageQueue.open(key) as same:
            assert same.info().current_messages == 1
    sysv_mq.unlink(key)
    assert not sysv_mq.exists(key)


def test_keys_are_unsigned_32_bit_numbers(names: Names, cleanup: Cleanup) -> None:
    key = names.key() | 0x80000000  # above 2**31: a negative key_t in C
    with SysVMessageQueue.create(key) as queue:
        cleanup(sysv_mq.unlink, key)
        assert queue.key == queue.info().key == key  # the form ipcs shows
        with SysVMessageQueue.open(key) as same:
            assert same.id == queue.id
        # The signed form C would print is refused, rather than silently meaning
        # another key: -5 would be 0xfffffffb.
        with pytest.raises(ValueError, match="unsigned 32-bit"):
            SysVMessageQueue.open(key - 2**32)
        queue.unlink()
    for bad in (-5, -1, 2**32):
        with pytest.raises(ValueError, match="key must be between 0 and 0xffffffff"):
            SysVMessageQueue.create(bad)


def test_private_queues_are_reached_by_id_and_pickle_by_id(cleanup: Cleanup) -> None:
    first = SysVMessageQueue.create(IPC_PRIVATE)
    cleanup(first.unlink)
    second = SysVMessageQueue.create(IPC_PRIVATE)
    cleanup(second.unlink)
    assert first.id != second.id
    assert first.key == second.key == IPC_PRIVATE
    with pytest.raises(ValueError, match="IPC_PRIVATE"):
        SysVMessageQueue.open(IPC_PRIVATE)
    Child(_send_through_pickled, pickle.dumps(first), method="spawn").result()
    assert first.receive(timeout=0) == (b"pickled", 4)
    with SysVMessageQueue.open_id(second.id) as same:
        assert same.key == IPC_PRIVATE
    first.unlink()
    second.unlink()
    first.close()
    second.close()
    with pytest.raises(ResourceNotFoundError):
        SysVMessageQueue.open_id(first.id)


def _send_through_pickled(pickled: bytes) -> None:
    with pickle.loads(pickled) as queue:
        queue.send(b"pickled", type=4)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda q: q.send(b"x", type=0), ValueError, "type must be >= 1"),
        (lambda q: q.send(b"x", type=-5), ValueError, "type must be >= 1"),
        (lambda q: q.send(b"x", type=2**63), ValueError, "type must be <="),
        (lambda q: q.send(b"x", type=True), TypeError, "type must be an int"),
        (lambda q: q.send(b"x", type=1.5), TypeError, "type must be an int"),
        (lambda q: q.send("text"), TypeError, "message must be a bytes-like"),
        (lambda q: q.send(b"x", timeout=-1), ValueError, "timeout"),
        (lambda q: q.receive(type=-(2**63)), ValueError, "type must be between"),
        (lambda q: q.receive(type="1"), TypeError, "type must be an int"),
        (lambda q: q.receive(type=0, except_type=True), ValueError, "except_type needs"),
        (lambda q: q.receive(type=-3, except_type=True), ValueError, "except_type needs"),
        (lambda q: q.receive(truncate=1), TypeError, "bools"),
        (lambda q: q.receive_into(b"read-only"), TypeError, "buffer must be a writable"),
        (lambda q: q.set_permissions(0o1777), ValueError, "0o777"),
        (lambda q: q.set_max_bytes(0), ValueError, "max_bytes"),
        (lambda q: q.set_max_bytes(2**64), ValueError, "max_bytes must be at most"),
        (lambda q: q.set_permissions(0o606), ValueError, "allow_world_writable"),
    ],
)
def test_bad_arguments_are_refused_before_any_system_call(
    names: Names,
    cleanup: Cleanup,
    call: Callable[[SysVMessageQueue], object],
    error: type,
    match: str,
) -> None:
    queue = make_queue(names, cleanup)
    with pytest.raises(error, match=match):
        call(queue)
    assert queue.info().current_messages == 0


@pytest.mark.parametrize(
    ("key", "error"), [(2**32, ValueError), (-(2**31) - 1, ValueError), ("0x10", TypeError)]
)
def test_bad_keys(key: object, error: type) -> None:
    with pytest.raises(error, match="key"):
        SysVMessageQueue.create(key)  # type: ignore[arg-type]


# ---- messages -------------------------------------------------------------------


def test_receive_by_type_lowest_type_and_except_type(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)

    def fill() -> None:
        for data, message_type in [(b"a", 3), (b"b", 1), (b"c", 2), (b"d", 1), (b"e", 5)]:
            queue.send(data, type=message_type)

    fill()
    assert queue.receive() == (b"a", 3)  # type 0: the oldest
    assert queue.receive(type=1) == (b"b", 1)  # the oldest of type 1
    assert queue.receive(type=1, except_type=True) == (b"c", 2)  # oldest not of type 1
    assert queue.receive(type=-4) == (b"d", 1)  # lowest type <= 4
    with pytest.raises(WouldBlock):
        queue.receive(type=-4, timeout=0)  # only type 5 is left
    message = queue.receive(type=5)
    assert isinstance(message, SysVMessage)
    assert (message.data, message.type) == (b"e", 5)
    fill()
    assert [queue.receive(type=-5).type for _ in range(5)] == [1, 1, 2, 3, 5]


def test_oversize_messages_and_truncation(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    with pytest.raises(MessageTooLarge, match=f"exceeds the kernel's msgmax of {MSGMAX}"):
        queue.send(b"x" * (MSGMAX + 1))
    assert queue.info().current_messages == 0
    queue.send(bytes(range(100)), type=7)
    small = bytearray(10)
    with pytest.raises(MessageTooLarge, match="stays queued"):
        queue.receive_into(small)
    assert queue.info().current_messages == 1  # still there
    assert queue.receive_into(small, truncate=True) == (10, 7)
    assert small == bytes(range(10))
    assert queue.info().current_messages == 0  # the rest was discarded, as MSG_NOERROR does
    queue.send(b"y" * MSGMAX)
    assert queue.receive() == (b"y" * MSGMAX, 1)
    queue.send(b"w" * MSGMAX)
    large = bytearray(3 * MSGMAX)  # more room than the stack buffer: the heap path
    assert queue.receive_into(large) == (MSGMAX, 1)
    assert large[:MSGMAX] == b"w" * MSGMAX
    buffer = bytearray(200)
    queue.send(b"fits", type=2)
    assert queue.receive_into(memoryview(buffer)[100:], timeout=0) == (4, 2)
    assert buffer[100:104] == b"fits"


def test_lowered_max_bytes_refuses_larger_messages(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    queue.set_max_bytes(100)
    assert queue.info().max_bytes == 100
    with pytest.raises(MessageTooLarge, match="exceeds its max_bytes of 100"):
        queue.send(b"z" * 101)
    queue.send(b"z" * 100)
    with pytest.raises(WouldBlock):
        queue.send(b"z", timeout=0)


def test_raising_max_bytes_above_msgmnb_needs_cap_sys_resource(
    names: Names, cleanup: Cleanup
) -> None:
    queue = make_queue(names, cleanup)
    if has_capability(CAP_SYS_RESOURCE):
        queue.set_max_bytes(MSGMNB + 1)
        assert queue.info().max_bytes == MSGMNB + 1
        return
    with pytest.raises(PermissionDeniedError, match=f"msgmnb of {MSGMNB}, needs CAP_SYS_RESOURCE"):
        queue.set_max_bytes(MSGMNB + 1)
    assert queue.info().max_bytes == MSGMNB


def test_set_permissions(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    queue.set_permissions(0o604)
    info = queue.info()
    assert (info.permissions, info.max_bytes) == (0o604, MSGMNB)
    assert info.last_change_time > 0


# ---- timeouts -------------------------------------------------------------------


def _send_later(key: int, delay: float, data: bytes, message_type: int) -> int:
    time.sleep(delay)
    with SysVMessageQueue.open(key) as queue:
        queue.send(data, type=message_type)
    return os.getpid()


def _receive_later(key: int, delay: float) -> bytes:
    time.sleep(delay)
    with SysVMessageQueue.open(key) as queue:
        return queue.receive(timeout=30).data


def test_every_timeout_case(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    with pytest.raises(WouldBlock, match="would block"):
        queue.receive(timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired, match=r"timed out after 0\.3 s"):
        queue.receive(timeout=0.3)
    assert_elapsed(started, 0.3)
    queue.send(b"other type", type=2)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        queue.receive_into(bytearray(16), type=1, timeout=0.2)
    assert_elapsed(started, 0.2)
    queue.receive(timeout=0)
    # Full: max_bytes lowered to one 10-byte message.
    queue.set_max_bytes(10)
    queue.send(b"0123456789", timeout=0)
    with pytest.raises(WouldBlock):
        queue.send(b"x", timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        queue.send(b"x", timeout=0.3)
    assert_elapsed(started, 0.3)
    # timeout=None waits for another process to make room...
    child = Child(_receive_later, queue.key, 0.2)
    queue.send(b"abcdefghij")
    assert child.result() == b"0123456789"
    # ...or to send what we wait for.
    assert queue.receive(timeout=0) == (b"abcdefghij", 1)
    child = Child(_send_later, queue.key, 0.2, b"late", 9)
    assert queue.receive(type=9) == (b"late", 9)
    sender = child.result()
    info = queue.info()
    assert (info.last_send_pid, info.last_receive_pid) == (sender, os.getpid())


def _cpu_while_waiting(key: int, timeout: float) -> tuple[float, float]:
    with SysVMessageQueue.open(key) as queue:
        cpu = time.process_time()
        started = time.monotonic()
        with contextlib.suppress(TimeoutExpired):
            queue.receive(timeout=timeout)
        return time.process_time() - cpu, time.monotonic() - started


def test_a_timed_wait_uses_no_cpu(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    cpu, elapsed = Child(_cpu_while_waiting, queue.key, 1.0).result()
    assert 1.0 - 0.005 <= elapsed <= 2.0
    assert cpu < 0.05, f"the waiting process used {cpu:.3f} s of CPU: it polls"


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


# ---- removal while in use -------------------------------------------------------


def _blocked_receive(key: int, timeout: float | None) -> str:
    with SysVMessageQueue.open(key) as queue:
        try:
            queue.receive(timeout=timeout)
        except ResourceNotFoundError as error:
            return f"{error.errno} {error}"
        return "received"


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_removal_wakes_a_receiver_blocked_in_another_process(
    names: Names, cleanup: Cleanup, timeout: float | None
) -> None:
    queue = make_queue(names, cleanup)
    child = Child(_blocked_receive, queue.key, timeout)

    def blocked_in_msgrcv() -> bool:
        with open(f"/proc/{child.pid}/wchan") as wchan:
            return "msgrcv" in wchan.read()

    wait_until(blocked_in_msgrcv)
    queue.unlink()
    assert (
        child.result() == f"{errno.EIDRM} [Errno {errno.EIDRM}] System V message queue "
        f"'0x{queue.key:08x}' was removed while in use"
    )


# ---- many processes -------------------------------------------------------------

PRODUCERS = 3
CONSUMERS = 3
PER_PRODUCER = 300
END = 1000


def _produce(key: int, number: int) -> int:
    with SysVMessageQueue.open(key) as queue:
        for i in range(PER_PRODUCER):
            queue.send(f"{number}:{i}".encode(), type=number + 1, timeout=60)
    return PER_PRODUCER


def _consume(key: int) -> list[str]:
    received = []
    with SysVMessageQueue.open(key) as queue:
        while True:
            data, message_type = queue.receive(timeout=60)
            if message_type == END:
                return received
            assert int(data.split(b":")[0]) + 1 == message_type
            received.append(data.decode())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_many_producers_and_consumers_lose_and_duplicate_nothing(
    names: Names, cleanup: Cleanup, method: str
) -> None:
    queue = make_queue(names, cleanup)
    queue.set_max_bytes(256)  # small, so that producers really wait for room
    consumers = [Child(_consume, queue.key, method=method) for _ in range(CONSUMERS)]
    producers = [Child(_produce, queue.key, n, method=method) for n in range(PRODUCERS)]
    assert sum(producer.result() for producer in producers) == PRODUCERS * PER_PRODUCER
    for _ in consumers:
        queue.send(b"end", type=END, timeout=60)  # after every message: type 0 is FIFO
    per_consumer = [consumer.result() for consumer in consumers]
    received = [message for messages in per_consumer for message in messages]
    expected = {f"{n}:{i}" for n in range(PRODUCERS) for i in range(PER_PRODUCER)}
    assert len(received) == len(expected)
    assert set(received) == expected
    for messages in per_consumer:
        for n in range(PRODUCERS):
            sequence = [int(m.split(":")[1]) for m in messages if m.startswith(f"{n}:")]
            assert sequence == sorted(sequence)


# ---- ftok and C peers -----------------------------------------------------------

C_FTOK = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>

int main(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        printf("%u\n", (unsigned)ftok(argv[1], atoi(argv[i])));
    }
    return 0;
}
"""


def test_ftok_agrees_with_c(tmp_path: Path) -> None:
    peer = compile_c(C_FTOK, tmp_path, "ftok_peer")
    path = tmp_path / "key-file"
    path.write_text("")
    # glibc takes any int and uses its low 8 bits; Stevens' programs use 0.
    ids = [0, 1, 65, 127, 128, 255, 256, 257, -1, -255, 2**31 - 1, -(2**31)]
    result = subprocess.run(
        [str(peer), str(path), *map(str, ids)], capture_output=True, text=True, check=True
    )
    assert [ftok(path, proj_id) for proj_id in ids] == [int(k) for k in result.stdout.split()]
    assert ftok(str(path), 255) >= 2**31  # the unsigned form, as ipcs shows keys
    assert ftok(path, 2**40 + 7) == ftok(path, 7)  # any Python int: its low 8 bits
    with pytest.raises(TypeError, match="proj_id"):
        ftok(path, "Q")  # type: ignore[arg-type]
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        ftok(tmp_path / "missing", 1)


C_PEER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>

struct message { long mtype; char mtext[256]; };

/* peer send KEY: sends "from c" as type 42.
 * peer receive KEY TYPE: receives one message of TYPE, prints "TYPE TEXT". */
int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    int id = msgget((key_t)strtol(argv[2], NULL, 0), 0);
    if (id < 0) { perror("msgget"); return 1; }
    struct message m;
    if (strcmp(argv[1], "send") == 0) {
        m.mtype = 42;
        strcpy(m.mtext, "from c");
        if (msgsnd(id, &m, strlen(m.mtext), 0) != 0) { perror("msgsnd"); return 1; }
        return 0;
    }
    ssize_t n = msgrcv(id, &m, sizeof m.mtext, atol(argv[3]), 0);
    if (n < 0) { perror("msgrcv"); return 1; }
    printf("%ld %.*s\n", m.mtype, (int)n, m.mtext);
    return 0;
}
"""


def test_c_and_python_exchange_typed_messages(
    names: Names, cleanup: Cleanup, tmp_path: Path
) -> None:
    peer = compile_c(C_PEER, tmp_path, "msg_peer")
    queue = make_queue(names, cleanup)
    subprocess.run([str(peer), "send", str(queue.key)], check=True, timeout=60)
    assert queue.receive(timeout=0) == (b"from c", 42)
    queue.send(b"seven", type=7)
    queue.send(b"three", type=3)
    for wanted, text in [(3, "three"), (7, "seven")]:
        result = subprocess.run(
            [str(peer), "receive", hex(queue.key), str(wanted)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert result.stdout == f"{wanted} {text}\n"


class Seconds(float):
    """A float subclass: valid, but not what the C fast path takes."""


class Kind(int):
    """An int subclass, as an IntEnum would be."""


def test_unusual_but_valid_arguments_take_the_python_path(names: Names, cleanup: Cleanup) -> None:
    queue = make_queue(names, cleanup)
    queue.send(memoryview(b"slow"), type=Kind(3), timeout=Seconds(1))
    queue.send(b"fast", type=2, timeout=1)
    assert queue.receive(type=Kind(3), timeout=Seconds(0)) == (b"slow", 3)
    assert queue.receive_into(bytearray(8), type=-5, timeout=Kind(0)) == (4, 2)
    with pytest.raises(TypeError, match="timeout"):
        queue.receive(timeout=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        queue.send()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        queue.receive(colour="blue")  # type: ignore[call-arg]


# ---- exact permissions, groups, all-or-nothing creation, what the C trusts ------------

NOBODY = 65534


def _raiser(error: BaseException) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail


def test_create_gives_exact_permissions_and_group(
    names: Names, cleanup: Cleanup, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes_before_the_group: list[int] = []
    real_set = sysv_mq._native.msgctl_set

    def watched(queue_id: int, *args: object) -> None:
        modes_before_the_group.append(sysv_mq._native.msgctl_stat(queue_id)["mode"] & 0o777)
        real_set(queue_id, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(sysv_mq._native, "msgctl_set", watched)
    key = names.key()
    with SysVMessageQueue.create(key, permissions=0o640, group=NOBODY) as queue:
        cleanup(sysv_mq.unlink, key)
        info = queue.info()
        assert (info.permissions, info.gid) == (0o640, NOBODY)
        assert modes_before_the_group == [0o600]  # owner-only until it had its group
        with pytest.raises(ValueError, match="allow_world_writable"):
            SysVMessageQueue.create(names.key(), permissions=0o666)
        queue.set_permissions(0o666, allow_world_writable=True)
        assert queue.info().permissions == 0o666
        queue.unlink()


@pytest.mark.parametrize("step", ["set", "interrupted", "attach"])
def test_a_create_that_fails_after_the_queue_exists_leaves_nothing(
    names: Names, cleanup: Cleanup, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    failure: type[BaseException] = IPCOSError
    if step == "set":
        monkeypatch.setattr(sysv_mq._native, "msgctl_set", _raiser(OSError(errno.EIO, "io")))
    elif step == "interrupted":
        monkeypatch.setattr(sysv_mq._native, "msgctl_set", _raiser(KeyboardInterrupt()))
        failure = KeyboardInterrupt
    else:
        monkeypatch.setattr(SysVMessageQueue, "_attach", _raiser(OSError(errno.EIO, "io")))
    key = names.key()
    before = set(sysv_mq.list_ids())
    with pytest.raises(failure):
        SysVMessageQueue.create(key, group=NOBODY)
    assert not sysv_mq.exists(key)
    assert not set(sysv_mq.list_ids()) - before
    monkeypatch.undo()
    with SysVMessageQueue.create(key) as queue:  # the retry works
        cleanup(sysv_mq.unlink, key)
        queue.unlink()


def test_what_the_c_fast_path_trusts_cannot_be_changed_from_python(
    names: Names, cleanup: Cleanup
) -> None:
    queue = make_queue(names, cleanup)
    for attribute, value in (
        ("_result_type", int),
        ("_limit", 2**40),
        ("_send_limit", 2**40),
        ("_handle", 0),
        ("_label", "x"),
    ):
        with pytest.raises(AttributeError):
            setattr(queue, attribute, value)
    with pytest.raises(RuntimeError, match="attached already"):
        queue._attach(queue.id, "again", SysVMessage)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="tuple subclass"):
        sysv_mq._native.SysVQueueCore()._attach(queue.id, "x", int)
    with pytest.raises(TypeError, match=r"use SysVMessageQueue.create\(...\)"):
        SysVMessageQueue(queue.key, queue.id)
    queue.send(b"still fine")
    assert queue.receive(timeout=0) == (b"still fine", 1)


def test_set_max_bytes_beyond_an_unsigned_long_raises_and_changes_nothing(
    names: Names, cleanup: Cleanup
) -> None:
    queue = make_queue(names, cleanup)
    before = queue.info().max_bytes
    with pytest.raises(ValueError, match="max_bytes"):
        queue.set_max_bytes(2**64)  # used to set 0, after which send blocked forever
    with pytest.raises(OverflowError):
        sysv_mq._native.msgctl_set(queue.id, 0, 0, 0o600, 2**64)
    assert queue.info().max_bytes == before
    queue.send(b"x", timeout=0)


C_FTOK_ZERO_PEER = r"""
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

/* As Stevens' programs do: one key, ftok(path, 0), for a queue, a semaphore set
 * and a segment. Says "ready KEY", then waits for the Python side's answers. */
int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    key_t key = ftok(argv[1], 0);
    int queue = msgget(key, IPC_CREAT | IPC_EXCL | 0600);
    int semaphores = semget(key, 1, IPC_CREAT | IPC_EXCL | 0600);
    int segment = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600);
    if (key == -1 || queue < 0 || semaphores < 0 || segment < 0) { perror("create"); return 1; }
    char *memory = shmat(segment, NULL, 0);
    if (memory == (char *)-1) { perror("shmat"); return 1; }
    strcpy(memory, "hello from C");
    struct { long mtype; char mtext[64]; } message = {3, "from C"};
    struct sembuf post = {0, 1, 0};
    size_t length = strlen(message.mtext);
    if (msgsnd(queue, &message, length, 0) != 0 || semop(semaphores, &post, 1) != 0) {
        perror("send");
        return 1;
    }
    printf("ready %u\n", (unsigned)key);
    fflush(stdout);
    ssize_t n = msgrcv(queue, &message, sizeof message.mtext, 4, 0);
    if (n < 0) { perror("msgrcv"); return 1; }
    struct sembuf wait = {0, -2, 0}; /* the Python side's 2: never our own post back */
    if (semop(semaphores, &wait, 1) != 0) { perror("semop"); return 1; }
    printf("%.*s|%s\n", (int)n, message.mtext, memory);
    shmdt(memory);
    return 0;
}
"""


def test_a_c_program_and_unixipc_meet_on_an_ftok_key_with_proj_id_0(
    tmp_path: Path, cleanup: Cleanup
) -> None:
    from unixipc import SysVSemaphoreSet, SysVSharedMemory, sysv_sem, sysv_shm

    peer = compile_c(C_FTOK_ZERO_PEER, tmp_path, "ftok_zero_peer")
    facilities = (sysv_mq, sysv_sem, sysv_shm)
    for attempt in range(100):  # a file whose key no object of this IPC namespace uses
        path = tmp_path / f"key-file-{attempt}"
        path.write_text("")
        key = ftok(path, 0)
        if not any(facility.exists(key) for facility in facilities):
            break
    with subprocess.Popen([str(peer), str(path)], stdout=subprocess.PIPE, text=True) as c:
        try:
            assert c.stdout is not None
            assert c.stdout.readline() == f"ready {key}\n"  # the same key, the same form
            conftest._sysv_keys.add(key)  # for the session's leak check
            for facility in facilities:  # the C program made them: ours to remove
                cleanup(facility.unlink, key)
            with SysVMessageQueue.open(key) as queue:
                assert queue.receive(type=3, timeout=30) == (b"from C", 3)
                queue.send(b"from Python", type=4, timeout=30)
            with SysVSharedMemory.open(key) as memory:
                assert bytes(memory.buf[:12]) == b"hello from C"
                memory.buf[:18] = b"hello from Python\0"
            with SysVSemaphoreSet.open(key) as semaphores:
                semaphores.op([(0, -1)], timeout=30)  # the C side's post
                semaphores.op([(0, 2)], timeout=30)  # ours, which it waits for
            output, _ = c.communicate(timeout=60)
        finally:
            c.kill()
    assert c.returncode == 0
    assert output == "from Python|hello from Python\n"
