"""``unixipc bridge SRC_URL DST_URL``: join two channels, every message both ways.

The bridge listens on SRC_URL; for each client it accepts, it connects to
DST_URL and forwards every message in both directions (one thread each way)
until either side ends: a peer's close is passed on as a close (its messages
first), a death as a close too. Clients are served one after another
(``--clients N``, default: until Ctrl-C). On exit it prints how many messages
and bytes went each way. For example, local programs on a shared-memory ring
reach a service on another host through NATS::

    unixipc bridge shm://jobs nats://server:4222/jobs
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

from .._deadline import Deadline
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


def forward(source: Channel, target: Channel, counts: Counts, deadline: Deadline) -> None:
    """Copy messages from ``source`` to ``target`` until ``source`` ends; then close ``target``."""
    try:
        while True:
            message = source.receive(timeout=deadline.remaining())
            target.send(message, timeout=deadline.remaining())
            counts.messages += 1
            counts.bytes += len(message)
    except (EndOfChannel, ClosedResourceError):
        pass
    except IPCError as error:  # a death, a timeout: the other side is told by our close
        counts.errors.append(str(error))
    finally:
        target.close()
        source.close()


def bridge(source: Channel, target: Channel, deadline: Deadline) -> tuple[Counts, Counts]:
    """Forward both ways until either side ends; the counts (source->target, back)."""
    there, back = Counts(), Counts()
    returning = threading.Thread(
        target=forward, args=(target, source, back, deadline), name="unixipc-bridge", daemon=True
    )
    returning.start()
    try:
        forward(source, target, there, deadline)
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


def run(args: argparse.Namespace) -> int:
    deadline = Deadline(args.timeout)
    totals = Totals()
    try:
        with listen(args.src) as listener:
            emit(
                args,
                {"listening": listener.url, "to": args.dst},
                f"bridging {listener.url} <-> {args.dst}",
            )
            while args.clients is None or totals.clients < args.clients:
                client = listener.accept(timeout=deadline.remaining())
                try:
                    remote = connect(args.dst, timeout=deadline.remaining())
                except BaseException:
                    client.close()
                    raise
                totals.add(*bridge(client, remote, deadline))
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
