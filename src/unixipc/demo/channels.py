"""Demo of channels: the same ping-pong program over several URLs, one line each.

A forked child connects to the URL (or takes its end of a pair) and echoes;
the parent sends 64-byte messages and checks each echo. Only the URL changes.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ..channel import Channel, PairKind, channel_pair, connect, listen
from ..errors import ResourceExistsError
from ._common import DemoLine, fork_child, reap

ROUND_TRIPS = 1000
MESSAGE = b"x" * 64
# Small POSIX queues: the per-user queue memory (RLIMIT_MSGQUEUE) is shared.
_MQ_OPTIONS = {"queue_length": 8, "queue_message_size": 1024}


def _echo(channel: Channel) -> None:
    with channel:
        for _ in range(ROUND_TRIPS):
            channel.send(channel.receive(timeout=30), timeout=30)


def _ping_pong(label: str, url: str, ours: Channel, pid: int) -> DemoLine:
    try:
        with ours:
            start = time.perf_counter()
            for _ in range(ROUND_TRIPS):
                ours.send(MESSAGE, timeout=30)
                if ours.receive(timeout=30) != MESSAGE:
                    raise RuntimeError(f"{url}: the echo differs")
            elapsed = time.perf_counter() - start
    finally:
        reap(pid)
    per_trip = elapsed / ROUND_TRIPS * 1e6
    return DemoLine(
        label,
        f"{per_trip:6.1f} us per 64 B round trip with a forked child over {url}",
        elapsed,
    )


def _over_pair(kind: PairKind) -> DemoLine:
    ours, theirs = channel_pair(kind)
    pid = fork_child(lambda: _echo(theirs))
    theirs.close()  # the child uses it; closing our copy says nothing
    label = "ch-shm-pair" if kind == "shm" else f"ch-{kind}"
    return _ping_pong(label, f"channel_pair({kind!r})", ours, pid)


def _over_url(label: str, make_url: Callable[[], str], **options: Any) -> DemoLine:
    while True:
        try:
            listener = listen(make_url())
            break
        except ResourceExistsError:  # a System V key in use: draw another
            continue
    with listener:
        url = listener.url
        pid = fork_child(lambda: _echo(connect(url, timeout=30, **options)))
        ours = listener.accept(timeout=30)
    return _ping_pong(label, url, ours, pid)


def run_ch_pipe() -> DemoLine:
    """Two pipes made by channel_pair("pipe") before fork."""
    return _over_pair("pipe")


def run_ch_socketpair() -> DemoLine:
    """A socketpair made by channel_pair("socketpair") before fork."""
    return _over_pair("socketpair")


def run_ch_unix() -> DemoLine:
    """A UNIX stream socket, length-prefixed frames."""
    with tempfile.TemporaryDirectory(prefix="unixipc-demo-") as directory:
        return _over_url("ch-unix", lambda: f"unix://{directory}/socket")


def run_ch_tcp() -> DemoLine:
    """TCP on the loopback interface (the same program would cross hosts)."""
    return _over_url("ch-tcp", lambda: "tcp://127.0.0.1:0")


def run_ch_fifo() -> DemoLine:
    """A well-known server FIFO; each client makes two private FIFOs."""
    with tempfile.TemporaryDirectory(prefix="unixipc-demo-") as directory:
        return _over_url("ch-fifo", lambda: f"fifo://{directory}/server")


def run_ch_mq() -> DemoLine:
    """A well-known POSIX request queue; private queues per connection."""
    return _over_url("ch-mq", lambda: f"mq:///unixipc-demo-{os.getpid()}", **_MQ_OPTIONS)


def run_ch_shm_pair() -> DemoLine:
    """Two shared-memory rings made by channel_pair("shm") before fork."""
    return _over_pair("shm")


def run_ch_shm() -> DemoLine:
    """A ring per direction; the connection made through a small well-known ring."""
    return _over_url("ch-shm", lambda: f"shm://unixipc-demo-{os.getpid()}", capacity=65536)


def run_ch_sysvmq() -> DemoLine:
    """One System V queue; a message type per client and direction."""
    return _over_url("ch-sysvmq", lambda: f"sysvmq://{random.randint(0x10000000, 0x7FFFFFFF):#x}")
