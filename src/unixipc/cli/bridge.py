"""``unixipc bridge SRC_URL DST_URL``: join two channels, every message both ways.

The bridge listens on SRC_URL; for each client it accepts, it connects to
DST_URL and forwards every message in both directions (one thread each way)
until either side ends: a peer's close is passed on as a close (its messages
first), a death as a close too. Clients are served one after another
(``--clients N``, default: until Ctrl-C). On exit it prints how many messages
and bytes went each way. While it runs, its counts are in a status object
(``unixipc._status``: /dev/shm/unixipc-bridge-<pid>-<random>, 0600, removed on
exit, ``stale`` after a SIGKILL), which ``unixipc ls`` and ``unixipc top`` read.
For example, local programs on a shared-memory ring reach a service on another
host through NATS::

    unixipc bridge shm://jobs nats://server:4222/jobs
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._deadline import Deadline
from .._status import StatusObject, redact
from ..channel import Channel, connect, listen
from ..errors import ClosedResourceError, EndOfChannel, IPCError
from ._common import emit, seconds


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "bridge", help="forward every message between a listened URL and a connected one"
    )
    parser.add_argument("src", metavar="SRC_URL", help="listened on, e.g. shm://jobs")
    parser.add_argument("dst", metavar="DST_URL", help="connected to, e.g. nats://host:4222/jobs")
    parser.add_argument(
        "--clients", type=int, default=None, metavar="N", help="stop after N clients"
    )
    parser.add_argument(
        "--timeout", type=seconds, default=None, metavar="S", help="bound the whole run"
    )
    parser.set_defaults(func=run)


@dataclass
class Counts:
    """Messages and bytes forwarded one way."""

    messages: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


def _nothing() -> None:
    pass


def forward(
    source: Channel,
    target: Channel,
    counts: Counts,
    deadline: Deadline,
    tick: Callable[[], None] = _nothing,
) -> None:
    """Copy messages from ``source`` to ``target`` until ``source`` ends; then close
    ``target``. ``tick`` is called after each message (to publish the counts)."""
    try:
        while True:
            message = source.receive(timeout=deadline.remaining())
            target.send(message, timeout=deadline.remaining())
            counts.messages += 1
            counts.bytes += len(message)
            tick()
    except (EndOfChannel, ClosedResourceError):
        pass
    except IPCError as error:  # a death, a timeout: the other side is told by our close
        counts.errors.append(str(error))
    finally:
        target.close()
        source.close()


def bridge(
    source: Channel,
    target: Channel,
    deadline: Deadline,
    counts: tuple[Counts, Counts] | None = None,
    tick: Callable[[], None] = _nothing,
) -> tuple[Counts, Counts]:
    """Forward both ways until either side ends; the counts (source->target, back)."""
    there, back = counts or (Counts(), Counts())
    returning = threading.Thread(
        target=forward,
        args=(target, source, back, deadline, tick),
        name="unixipc-bridge",
        daemon=True,
    )
    returning.start()
    try:
        forward(source, target, there, deadline, tick)
    finally:
        returning.join()
    return there, back


@dataclass
class Totals:
    """What the whole run forwarded."""

    clients: int = 0
    there: Counts = field(default_factory=Counts)
    back: Counts = field(default_factory=Counts)

    def add(self, there: Counts, back: Counts) -> None:
        self.clients += 1
        for total, counts in ((self.there, there), (self.back, back)):
            total.messages += counts.messages
            total.bytes += counts.bytes
            total.errors += counts.errors


class Board:
    """The bridge's status object: the totals and the current client's counts,
    published at most every :data:`PUBLISH_INTERVAL` while messages flow, and at
    once when a client comes or goes."""

    #: How often counts are published while messages flow (seconds).
    PUBLISH_INTERVAL = 0.1

    def __init__(self, src: str, dst: str, totals: Totals) -> None:
        self.totals = totals
        self.current: tuple[Counts, Counts] | None = None
        self._next = 0.0
        self._status = StatusObject.publish("bridge", f"{redact(src)}\n{redact(dst)}", {})

    def counts(self) -> dict[str, int]:
        there, back = self.totals.there, self.totals.back
        now = self.current or (Counts(), Counts())
        return {
            "src_to_dst_messages": there.messages + now[0].messages,
            "src_to_dst_bytes": there.bytes + now[0].bytes,
            "dst_to_src_messages": back.messages + now[1].messages,
            "dst_to_src_bytes": back.bytes + now[1].bytes,
            "clients": self.totals.clients + (self.current is not None),
            "connections": int(self.current is not None),
        }

    def publish(self) -> None:
        self._next = time.monotonic() + self.PUBLISH_INTERVAL
        with contextlib.suppress(OSError):  # counts for people: never stops the bridge
            self._status.update(self.counts())

    def tick(self) -> None:
        if time.monotonic() >= self._next:
            self.publish()

    def serve(self, client: Channel, remote: Channel, deadline: Deadline) -> None:
        """Bridge one client, its counts published as they grow."""
        self.current = (Counts(), Counts())
        self.publish()
        try:
            there, back = bridge(client, remote, deadline, self.current, self.tick)
        finally:
            self.current = None
        self.totals.add(there, back)
        self.publish()

    @property
    def name(self) -> str:
        """The status object's name."""
        return self._status.name

    def close(self) -> None:
        self._status.close()


def run(args: argparse.Namespace) -> int:
    deadline = Deadline(args.timeout)
    totals = Totals()
    try:
        with listen(args.src) as listener:
            board = Board(listener.url, args.dst, totals)
            try:
                emit(
                    args,
                    {"listening": listener.url, "to": args.dst, "status": board.name},
                    f"bridging {listener.url} <-> {args.dst}",
                )
                while args.clients is None or totals.clients < args.clients:
                    client = listener.accept(timeout=deadline.remaining())
                    try:
                        remote = connect(args.dst, timeout=deadline.remaining())
                    except BaseException:
                        client.close()
                        raise
                    board.serve(client, remote, deadline)
            finally:
                board.close()
    except KeyboardInterrupt:
        pass
    finally:
        _report(args, totals)
    return 0


def _report(args: argparse.Namespace, totals: Totals) -> None:
    there, back = totals.there, totals.back
    with contextlib.suppress(BrokenPipeError):
        emit(
            args,
            {
                "src": args.src,
                "dst": args.dst,
                "clients": totals.clients,
                "src_to_dst": {"messages": there.messages, "bytes": there.bytes},
                "dst_to_src": {"messages": back.messages, "bytes": back.bytes},
                "errors": there.errors + back.errors,
            },
            f"{totals.clients} client(s); {args.src} -> {args.dst}: "
            f"{there.messages} messages, {there.bytes} bytes; back: "
            f"{back.messages} messages, {back.bytes} bytes",
        )
