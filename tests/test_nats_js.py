"""nats+js:// (JetStream): a durable conversation, at least once across a receiver's death.

A real nats-server with JetStream (its store in a temporary directory). The
receiver is a child process SIGKILLed in the middle of the stream; a new one
takes the conversation over and gets the message the dead one was handling,
then the rest, in order, each once; the sender's close arrives as EndOfChannel.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import unixipc
from tests import nats_support
from tests.channel_support import WAIT
from tests.conftest import Names
from tests.helpers import Child
from unixipc import EndOfChannel, IPCOSError

COUNT = 60
KILLED_AFTER = 25


@pytest.fixture(scope="module")
def server() -> Iterator[nats_support.NatsServer]:
    with nats_support.NatsServer(jetstream=True, config="max_payload: 8192") as started:
        yield started


def _message(index: int) -> bytes:
    body = b"%04d" % index
    return body * 5000 if index % 10 == 3 else body  # some travel in several pieces


def _receive(url: str, report: Any, die_after: int | None) -> None:
    """Report every message as it is handled; die (SIGKILL) while handling one."""
    listener = unixipc.listen(url)
    channel = listener.accept(timeout=WAIT)
    handled = 0
    while True:
        try:
            message = channel.receive(timeout=WAIT)
        except EndOfChannel:
            report.send("end")
            channel.close()
            listener.close()
            return
        report.send(message)
        handled += 1
        if handled == die_after:  # in the middle of handling it: not acknowledged
            os.kill(os.getpid(), signal.SIGKILL)


def _collect(report: Any, child: Child) -> list[Any]:
    received = []
    while True:
        if not report.poll(WAIT):
            raise AssertionError(f"the receiver went silent after {len(received)}")
        try:
            item = report.recv()
        except EOFError:
            return received
        received.append(item)
        if item == "end":
            return received


def _connect_when_listening(url: str) -> unixipc.Channel:
    give_up = time.monotonic() + WAIT
    while True:
        try:
            return unixipc.connect(url, timeout=WAIT)
        except IPCOSError as error:
            if error.errno != errno.ECONNREFUSED or time.monotonic() > give_up:
                raise
        time.sleep(0.05)


def test_redelivery_after_the_receiver_is_killed(
    server: nats_support.NatsServer, names: Names, children: Callable[..., Child]
) -> None:
    url = server.url(names.posix("js")[1:].replace(".", "_"), scheme="nats+js")
    context = multiprocessing.get_context("fork")
    first_report, first_end = context.Pipe(duplex=False)
    first = children(_receive, url, first_end, KILLED_AFTER)
    first_end.close()
    # The sender waits for the listener's stream, sends everything, and closes.
    sender = _connect_when_listening(url)
    for index in range(COUNT):
        sender.send(_message(index), timeout=WAIT)  # stored when send returns
    sender.close()
    got_first = _collect(first_report, first)
    first.process.join(WAIT)
    assert first.process.exitcode == -signal.SIGKILL
    assert got_first == [_message(index) for index in range(KILLED_AFTER)]
    # A new receiver takes the conversation over.
    second_report, second_end = context.Pipe(duplex=False)
    second = children(_receive, url, second_end, None)
    second_end.close()
    got_second = _collect(second_report, second)
    second.result()
    # The message being handled comes again, then the rest, in order, each once.
    assert got_second == [_message(index) for index in range(KILLED_AFTER - 1, COUNT)] + ["end"]


def test_connect_needs_the_conversation(server: nats_support.NatsServer, names: Names) -> None:
    with pytest.raises(IPCOSError) as refused:
        unixipc.connect(server.url("nobody_here", scheme="nats+js"), timeout=WAIT)
    assert refused.value.errno == errno.ECONNREFUSED
    with pytest.raises(ValueError, match="nats\\+js"):
        unixipc.connect(server.url("a.b", scheme="nats+js"), timeout=WAIT)
