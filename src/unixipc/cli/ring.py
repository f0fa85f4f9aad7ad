"""``unixipc ring create|info|send|receive|unlink``: shared-memory rings from the shell."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from .. import ring
from .._deadline import Deadline
from ..errors import EndOfChannel
from ..ring import Ring
from ._common import (
    add_base64_option,
    created,
    data_argument,
    emit,
    integer,
    lines,
    message_fields,
    mode_text,
    permissions,
    seconds,
    size,
)


def register(commands: Any) -> None:
    parser = commands.add_parser("ring", help="shared-memory message rings")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create a ring")
    create.add_argument("name", help="a POSIX name such as /jobs")
    create.add_argument(
        "--capacity", type=size, default=1 << 20, metavar="BYTES", help="e.g. 64K, 1M (default)"
    )
    create.add_argument("--permissions", type=permissions, default=0o600, metavar="MODE")
    create.set_defaults(func=_create)

    info = verbs.add_parser("info", help="capacity, use, messages and attached processes")
    info.add_argument("name")
    info.set_defaults(func=_info)

    send = verbs.add_parser("send", help="send each TEXT as one message")
    send.add_argument("name")
    send.add_argument("text", nargs="+", help="messages; - reads one from standard input")
    send.add_argument("--timeout", type=seconds, default=None, metavar="S")
    send.set_defaults(func=_send)

    receive = verbs.add_parser("receive", help="print messages, one per line")
    receive.add_argument("name")
    receive.add_argument("--count", type=integer, default=1, metavar="N", help="default 1")
    receive.add_argument("--timeout", type=seconds, default=None, metavar="S")
    add_base64_option(receive)
    receive.set_defaults(func=_receive)

    remove = verbs.add_parser("unlink", help="remove a ring")
    remove.add_argument("name")
    remove.set_defaults(func=_unlink)


def _create(args: argparse.Namespace) -> int:
    with Ring.create(args.name, args.capacity, permissions=args.permissions) as made:
        fields = {
            "capacity": made.capacity,
            "max_message_size": made.max_message_size,
            "permissions": mode_text(args.permissions),
        }
    created(args, "ring", args.name, fields)
    return 0


def _info(args: argparse.Namespace) -> int:
    with Ring.open(args.name) as opened:
        # Our own handle is attached too while we look: leave it out.
        described = dataclasses.replace(opened.info(), attached=opened.info().attached - 1)
    data = dataclasses.asdict(described)
    emit(args, data, lines(data))
    return 0


def _send(args: argparse.Namespace) -> int:
    deadline = Deadline(args.timeout)
    with Ring.open(args.name) as opened:
        for text in args.text:
            opened.send(data_argument(text), timeout=deadline.remaining())
    emit(args, {"name": args.name, "messages": len(args.text)})
    return 0


def _receive(args: argparse.Namespace) -> int:
    """Print up to --count messages; stop early when every producer closed the ring."""
    deadline = Deadline(args.timeout)
    messages = []
    with Ring.open(args.name) as opened:
        for _ in range(args.count):
            try:
                messages.append(opened.receive(timeout=deadline.remaining()))
            except EndOfChannel:
                break
    if args.json:
        records = [message_fields(data, force_base64=args.base64) for data in messages]
        emit(args, {"name": args.name, "messages": records})
    else:
        for data in messages:
            sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
    return 0


def _unlink(args: argparse.Namespace) -> int:
    ring.unlink(args.name)
    emit(args, {"name": args.name, "removed": True})
    return 0
