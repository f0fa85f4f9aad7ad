"""Every blocking call of unixipc that takes a timeout, as cases for the timeout tests.

A case sets up a situation in which its call must wait (an empty queue, a held
lock, nobody connecting...) and knows how to end that wait from another thread.
``tests/test_timeouts.py`` runs every case with ``timeout=math.inf`` and huge
values (the call must block, then finish when released) and, under a shim that
steps the wall clock, with a short timeout (the call must give up on time).
Names carry the session prefix; each case removes what it made.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import unixipc
from unixipc import (
    Fifo,
    FileLock,
    Pipe,
    PosixMessageQueue,
    PosixSemaphore,
    RecordLock,
    Ring,
    SharedBarrier,
    SharedCondition,
    SharedMutex,
    SharedRWLock,
    SysVMessageQueue,
    SysVSemaphoreSet,
    fifo,
    pipe,
    signals,
    sockets,
)

PREFIX = os.environ.get("UNIXIPC_TEST_PREFIX", f"uxt{os.getpid()}")
_counter = itertools.count()

#: Signals the cases use (the clock shim's worker nudges with SIGUSR1).
WAIT_SIGNAL = signal.SIGRTMIN + 6
RECEIVER_SIGNAL = signal.SIGRTMIN + 7


@dataclass
class Blocked:
    """A call that waits until ``release`` runs (in another thread)."""

    call: Callable[[float | None], object]
    release: Callable[[int], object]  # gets the waiting thread's ident
    cleanup: list[Callable[[], object]] = field(default_factory=list)


class Scratch:
    """Unique names for one case, and what to undo afterwards (newest first)."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix=f"{PREFIX}_blk_")
        self._undo: list[Callable[[], object]] = [lambda: os.rmdir(self.directory)]
        #: What the session's leak check must know about (conftest's registries).
        self.posix_names: list[str] = []
        self.keys: list[int] = []

    def posix(self, stem: str) -> str:
        name = f"/{PREFIX}_blk_{stem}_{os.getpid()}_{next(_counter)}"
        self.posix_names.append(name)
        return name

    def path(self, stem: str) -> str:
        return os.path.join(self.directory, f"{stem}_{next(_counter)}")

    def key(self) -> int:
        while True:
            key = random.randint(0x10000000, 0x7FFFFFFF)
            if not any(
                sysv.exists(key) for sysv in (unixipc.sysv_mq, unixipc.sysv_sem, unixipc.sysv_shm)
            ):
                self.keys.append(key)
                return key

    def later(self, action: Callable[..., object], *args: object) -> None:
        self._undo.append(lambda: action(*args))

    def close(self) -> None:
        for action in reversed(self._undo):
            with contextlib.suppress(Exception):
                action()


CASES: dict[str, Callable[[Scratch], Blocked]] = {}


def case(name: str) -> Callable[[Callable[[Scratch], Blocked]], Callable[[Scratch], Blocked]]:
    def register(setup: Callable[[Scratch], Blocked]) -> Callable[[Scratch], Blocked]:
        CASES[name] = setup
        return setup

    return register


def _holder(
    acquire: Callable[[], object], release: Callable[[], object], s: Scratch
) -> threading.Event:
    """Hold a lock in another thread until the returned event is set."""
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        acquire()
        held.set()
        done.wait()
        release()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    held.wait()
    s.later(thread.join, 30)
    s.later(done.set)
    return done


# ---- message queues -------------------------------------------------------------


@case("posix_mq.receive")
def _(s: Scratch) -> Blocked:
    name = s.posix("mq")
    queue = PosixMessageQueue.create(name, max_messages=1, max_message_size=16)
    s.later(queue.close)
    s.later(unixipc.posix_mq.unlink, name)
    return Blocked(lambda t: queue.receive(timeout=t), lambda _: queue.send(b"x"))


@case("posix_mq.receive_into")
def _(s: Scratch) -> Blocked:
    name = s.posix("mq")
    queue = PosixMessageQueue.create(name, max_messages=1, max_message_size=16)
    s.later(queue.close)
    s.later(unixipc.posix_mq.unlink, name)
    return Blocked(
        lambda t: queue.receive_into(bytearray(16), timeout=t), lambda _: queue.send(b"x")
    )


@case("posix_mq.send")
def _(s: Scratch) -> Blocked:
    name = s.posix("mq")
    queue = PosixMessageQueue.create(name, max_messages=1, max_message_size=16)
    s.later(queue.close)
    s.later(unixipc.posix_mq.unlink, name)
    queue.send(b"fills it")
    return Blocked(lambda t: queue.send(b"x", timeout=t), lambda _: queue.receive())


@case("sysv_mq.receive")
def _(s: Scratch) -> Blocked:
    queue = SysVMessageQueue.create(s.key())
    s.later(queue.close)
    s.later(queue.unlink)
    return Blocked(lambda t: queue.receive(type=2, timeout=t), lambda _: queue.send(b"x", type=2))


@case("sysv_mq.send")
def _(s: Scratch) -> Blocked:
    queue = SysVMessageQueue.create(s.key())
    s.later(queue.close)
    s.later(queue.unlink)
    queue.set_max_bytes(8)
    queue.send(b"12345678")
    return Blocked(lambda t: queue.send(b"x", timeout=t), lambda _: queue.receive())


# ---- semaphores and process-shared locks ----------------------------------------------


@case("posix_sem.acquire")
def _(s: Scratch) -> Blocked:
    name = s.posix("sem")
    semaphore = PosixSemaphore.create(name, value=0)
    s.later(semaphore.close)
    s.later(unixipc.posix_sem.unlink, name)
    return Blocked(lambda t: semaphore.acquire(timeout=t), lambda _: semaphore.release())


@case("sysv_sem.op")
def _(s: Scratch) -> Blocked:
    semaphores = SysVSemaphoreSet.create(s.key(), 1)
    s.later(semaphores.close)
    s.later(semaphores.unlink)
    return Blocked(lambda t: semaphores.op([(0, -1)], timeout=t), lambda _: semaphores.op([(0, 1)]))


@case("shared_sync.SharedMutex.acquire")
def _(s: Scratch) -> Blocked:
    name = s.posix("mutex")
    mutex = SharedMutex.create(name)
    s.later(mutex.close)
    s.later(mutex.unlink)
    done = _holder(mutex.acquire, mutex.release, s)

    def call(timeout: float | None) -> None:
        mutex.acquire(timeout=timeout)
        mutex.release()

    return Blocked(call, lambda _: done.set())


@case("shared_sync.SharedCondition.wait")
def _(s: Scratch) -> Blocked:
    name = s.posix("cond")
    condition = SharedCondition.create(name)
    s.later(condition.close)
    s.later(condition.unlink)

    def call(timeout: float | None) -> bool:
        with condition:
            return condition.wait(timeout)

    def release(_: int) -> None:
        with condition:
            condition.notify()

    return Blocked(call, release)


@case("shared_sync.SharedRWLock.acquire_write")
def _(s: Scratch) -> Blocked:
    name = s.posix("rwlock")
    lock = SharedRWLock.create(name)
    s.later(lock.close)
    s.later(lock.unlink)
    done = _holder(lock.acquire_read, lock.release, s)

    def call(timeout: float | None) -> None:
        lock.acquire_write(timeout=timeout)
        lock.release()

    return Blocked(call, lambda _: done.set())


@case("shared_sync.SharedBarrier.wait")
def _(s: Scratch) -> Blocked:
    name = s.posix("barrier")
    barrier = SharedBarrier.create(name, 2)
    s.later(barrier.close)
    s.later(barrier.unlink)
    return Blocked(lambda t: barrier.wait(t), lambda _: barrier.wait(30))


@case("file_lock.FileLock.acquire")
def _(s: Scratch) -> Blocked:
    path = s.path("flock")
    holder, waiter = FileLock(path), FileLock(path)
    s.later(os.unlink, path)
    holder.acquire()

    def call(timeout: float | None) -> None:
        waiter.acquire(timeout=timeout)
        waiter.release()

    s.later(lambda: holder.release() if holder.locked else None)
    return Blocked(call, lambda _: holder.release())


@case("file_lock.RecordLock.acquire")
def _(s: Scratch) -> Blocked:
    path = s.path("record")
    holder = RecordLock(path, per_open_file=True)
    waiter = RecordLock(path, per_open_file=True)
    s.later(os.unlink, path)
    s.later(holder.close)
    s.later(waiter.close)
    holder.acquire()

    def call(timeout: float | None) -> None:
        waiter.acquire(timeout=timeout)
        waiter.release()

    return Blocked(call, lambda _: holder.release())


# ---- the ring ----------------------------------------------------------------------


def _ring_ends(s: Scratch) -> tuple[Ring, Ring]:
    name = s.posix("ring")
    receiver = Ring.create(name, 4096)
    sender = Ring.open(name)
    s.later(receiver.close)
    s.later(sender.close)
    s.later(unixipc.ring.unlink, name)
    sender.declare(producer=True)
    receiver.declare(consumer=True)
    return sender, receiver


@case("ring.receive")
def _(s: Scratch) -> Blocked:
    sender, receiver = _ring_ends(s)
    return Blocked(lambda t: receiver.receive(timeout=t), lambda _: sender.send(b"x"))


@case("ring.send")
def _(s: Scratch) -> Blocked:
    sender, receiver = _ring_ends(s)
    with contextlib.suppress(unixipc.WouldBlock):
        while True:
            sender.send(b"y" * 512, timeout=0)
    return Blocked(lambda t: sender.send(b"y" * 512, timeout=t), lambda _: receiver.receive())


# ---- topics and waiting on many objects -----------------------------------------------


def _topic_ends(s: Scratch) -> tuple[Any, Any]:
    name = s.posix("topic")
    topic = unixipc.Topic.create(name, capacity=4096, max_message_size=512)
    s.later(topic.close)
    s.later(topic.unlink)
    publisher = topic.publisher()
    subscriber = topic.subscribe()
    s.later(publisher.close)
    s.later(subscriber.close)
    return publisher, subscriber


@case("topic.Subscriber.receive")
def _(s: Scratch) -> Blocked:
    publisher, subscriber = _topic_ends(s)
    return Blocked(lambda t: subscriber.receive(timeout=t), lambda _: publisher.publish(b"x"))


@case("topic.Publisher.publish")
def _(s: Scratch) -> Blocked:
    publisher, subscriber = _topic_ends(s)
    with contextlib.suppress(unixipc.WouldBlock):
        while True:  # a blocking subscriber that reads nothing: the topic fills up
            publisher.publish(b"y" * 256, timeout=0)
    return Blocked(
        lambda t: publisher.publish(b"y" * 256, timeout=t), lambda _: subscriber.receive()
    )


@case("wait")
def _(s: Scratch) -> Blocked:
    reader, writer = Pipe.create()
    s.later(reader.close)
    s.later(writer.close)
    return Blocked(lambda t: unixipc.wait([reader], timeout=t), lambda _: writer.send_all(b"x"))


# ---- pipes, FIFOs, sockets, signals ----------------------------------------------------


@case("pipe.receive_some")
def _(s: Scratch) -> Blocked:
    reader, writer = Pipe.create()
    s.later(reader.close)
    s.later(writer.close)
    return Blocked(lambda t: reader.receive_some(timeout=t), lambda _: writer.send_all(b"x"))


@case("popen.wait")
def _(s: Scratch) -> Blocked:
    path = s.path("fifo")
    fifo.mkfifo(path)
    s.later(os.unlink, path)
    command = pipe.popen(f"read line < {path}", "r")  # waits for a line in the FIFO
    s.later(lambda: command._process.wait())
    s.later(lambda: command._process.kill())
    s.later(command.close)

    def release(_: int) -> None:
        with Fifo.open(path, "w", timeout=30) as writer:
            writer.send_all(b"done\n", timeout=30)

    return Blocked(lambda t: command.wait(timeout=t), release)


@case("fifo.open")
def _(s: Scratch) -> Blocked:
    path = s.path("fifo")
    fifo.mkfifo(path)
    s.later(os.unlink, path)
    writers: list[Any] = []
    s.later(lambda: [writer.close() for writer in writers])

    def call(timeout: float | None) -> None:
        Fifo.open(path, "r", timeout=timeout).close()

    return Blocked(call, lambda _: writers.append(Fifo.open(path, "w", timeout=30)))


@case("sockets.receive_message")
def _(s: Scratch) -> Blocked:
    left, right = socket.socketpair()
    s.later(left.close)
    s.later(right.close)
    return Blocked(
        lambda t: sockets.receive_message(right, max_size=16, timeout=t),
        lambda _: sockets.send_message(left, b"x"),
    )


@case("sockets.UnixListener.accept")
def _(s: Scratch) -> Blocked:
    path = s.path("sock")
    listener = sockets.unix_listen(path)
    s.later(listener.close)
    s.later(listener.unlink)
    clients: list[socket.socket] = []
    s.later(lambda: [client.close() for client in clients])

    def call(timeout: float | None) -> None:
        listener.accept(timeout=timeout)[0].close()

    return Blocked(call, lambda _: clients.append(sockets.unix_connect(path, timeout=30)))


@case("signals.wait")
def _(s: Scratch) -> Blocked:
    return Blocked(
        lambda t: signals.wait(WAIT_SIGNAL, timeout=t),
        lambda ident: signal.pthread_kill(ident, WAIT_SIGNAL),
    )


@case("signals.SignalReceiver.receive")
def _(s: Scratch) -> Blocked:
    def call(timeout: float | None) -> object:
        with signals.SignalReceiver(RECEIVER_SIGNAL) as receiver:  # blocks it in this thread
            return receiver.receive(timeout=timeout)

    return Blocked(call, lambda ident: signal.pthread_kill(ident, RECEIVER_SIGNAL))


# ---- channels ------------------------------------------------------------------------


def _pair_case(kind: str) -> None:
    @case(f"channel_pair({kind!r}).receive")
    def _(s: Scratch) -> Blocked:
        left, right = unixipc.channel_pair(kind)
        s.later(left.close)
        s.later(right.close)
        return Blocked(lambda t: right.receive(timeout=t), lambda _: left.send(b"x"))


for _kind in ("pipe", "socketpair", "shm"):
    _pair_case(_kind)


def _url(s: Scratch, scheme: str) -> str:
    if scheme == "mq":
        return f"mq://{s.posix('ch')}"
    if scheme == "shm":
        return f"shm://{s.posix('ch')}"
    if scheme == "sysvmq":
        return f"sysvmq://{s.key():#x}"
    if scheme == "tcp":
        return "tcp://127.0.0.1:0"
    return f"{scheme}://{s.path('ch')}"


def _listener(s: Scratch, scheme: str) -> tuple[unixipc.Listener, str]:
    listener = unixipc.listen(_url(s, scheme))
    s.later(listener.close)
    return listener, listener.url


def _accept_case(scheme: str) -> None:
    @case(f"listen({scheme!r}).accept")
    def _(s: Scratch) -> Blocked:
        listener, url = _listener(s, scheme)
        ends: list[unixipc.Channel] = []  # closed at the end: a client may still be greeting
        s.later(lambda: [end.close() for end in ends])

        def call(timeout: float | None) -> None:
            ends.append(listener.accept(timeout=timeout))

        return Blocked(call, lambda _: ends.append(unixipc.connect(url, timeout=30)))


def _receive_case(scheme: str) -> None:
    @case(f"connect({scheme!r}).receive")
    def _(s: Scratch) -> Blocked:
        listener, url = _listener(s, scheme)
        accepted: list[unixipc.Channel] = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept(timeout=30)))
        thread.start()
        client = unixipc.connect(url, timeout=30)
        thread.join()
        server = accepted[0]
        s.later(client.close)
        s.later(server.close)
        return Blocked(lambda t: client.receive(timeout=t), lambda _: server.send(b"x"))


for _scheme in ("mq", "sysvmq", "unix", "fifo", "shm", "tcp"):
    _accept_case(_scheme)
for _scheme in ("mq", "sysvmq"):
    _receive_case(_scheme)
