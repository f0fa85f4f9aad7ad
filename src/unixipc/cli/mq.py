"""``unixipc mq create|send|receive|info|unlink|list``: POSIX message queues from the shell."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .. import posix_mq
from ..posix_mq import PosixMessageQueue
from ._common import (
    add_base64_option,
    created,
    data_argument,
    emit,
    integer,
    lines,
    mode_text,
    permissions,
    seconds,
    size,
    write_message,
)


def register(commands: Any) -> None:
    parser = commands.add_parser("mq", help="POSIX message queues")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create a queue")
    create.add_argument("name", help="a name such as /jobs")
    create.add_argument("--max-messages", type=integer, default=10, metavar="N")
    create.add_argument("--max-message-size", type=size, default=8192, metavar="BYTES")
    create.add_argument("--permissions", type=permissions, default=0o600, metavar="MODE")
    create.set_defaults(func=_create)

    send = verbs.add_parser("send", help="send TEXT (waits while the queue is full)")
    send.add_argument("name")
    send.add_argument("text", help="the message, or - for standard input")
    send.add_argument("--priority", type=integer, default=0, metavar="P")
    send.add_argument("--timeout", type=seconds, default=None, metavar="S")
    send.set_defaults(func=_send)

    receive = verbs.add_parser(
        "receive", help="print the next message (highest priority first; waits while empty)"
    )
    receive.add_argument("name")
    receive.add_argument("--timeout", type=seconds, default=None, metavar="S")
    add_base64_option(receive)
    receive.set_defaults(func=_receive)

    info = verbs.add_parser("info", help="show a queue's attributes and message count")
    info.add_argument("name")
    info.set_defaults(func=_info)

    remove = verbs.add_parser("unlink", help="remove a queue")
    remove.add_argument("name")
    remove.set_defaults(func=_unlink)

    listing = verbs.add_parser("list", help="list every queue (needs the mqueue filesystem)")
    listing.set_defaults(func=_list)


def _create(args: argparse.Namespace) -> int:
    with PosixMessageQueue.create(
        args.name,
        max_messages=args.max_messages,
        max_message_size=args.max_message_size,
        permissions=args.permissions,
    ) as queue:
        fields = {
            "max_messages": queue.max_messages,
            "max_message_size": queue.max_message_size,
            "permissions": mode_text(args.permissions),
        }
    created(args, "posix-mq", args.name, fields)
    return 0


def _send(args: argparse.Namespace) -> int:
    data = data_argument(args.text)
    with PosixMessageQueue.open(args.name, read=False) as queue:
        queue.send(data, priority=args.priority, timeout=args.timeout)
    emit(args, {"name": args.name, "bytes": len(data), "priority": args.priority})
    return 0


def _receive(args: argparse.Namespace) -> int:
    with PosixMessageQueue.open(args.name, write=False) as queue:
        data, priority = queue.receive(timeout=args.timeout)
    write_message(args, data, {"name": args.name, "priority": priority})
    return 0


def _info(args: argparse.Namespace) -> int:
    with PosixMessageQueue.open(args.name, read=False) as queue:
        info = dataclasses.asdict(queue.info())
    info["permissions"] = mode_text(info["permissions"])
    emit(args, info, lines(info))
    return 0


def _unlink(args: argparse.Namespace) -> int:
    posix_mq.unlink(args.name)
    emit(args, {"name": args.name, "removed": True})
    return 0


def _list(args: argparse.Namespace) -> int:
    names = posix_mq.list_names()
    emit(args, {"names": names}, "\n".join(names) if names else None)
    return 0
