"""``unixipc fifo create|unlink|send|receive``: named pipes from the shell."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import fifo
from .._deadline import Deadline
from ..fifo import Fifo
from ._common import (
    add_base64_option,
    created,
    data_argument,
    emit,
    message_fields,
    mode_text,
    permissions,
    seconds,
)


def register(commands: Any) -> None:
    parser = commands.add_parser("fifo", help="named pipes (FIFOs)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create a FIFO")
    create.add_argument("path")
    create.add_argument("--permissions", type=permissions, default=0o600, metavar="MODE")
    create.set_defaults(func=_create)

    remove = verbs.add_parser("unlink", help="remove a FIFO")
    remove.add_argument("path")
    remove.set_defaults(func=_unlink)

    send = verbs.add_parser("send", help="write TEXT into a FIFO (waits for a reader)")
    send.add_argument("path")
    send.add_argument("text", help="what to write, or - to copy standard input")
    send.add_argument("--timeout", type=seconds, default=None, metavar="S")
    send.set_defaults(func=_send)

    receive = verbs.add_parser("receive", help="read a FIFO until every writer closed it")
    receive.add_argument("path")
    receive.add_argument("--timeout", type=seconds, default=None, metavar="S")
    add_base64_option(receive)
    receive.set_defaults(func=_receive)


def _create(args: argparse.Namespace) -> int:
    fifo.mkfifo(args.path, permissions=args.permissions)
    created(args, "fifo", args.path, {"permissions": mode_text(args.permissions)})
    return 0


def _unlink(args: argparse.Namespace) -> int:
    fifo.unlink(args.path)
    emit(args, {"path": args.path, "removed": True})
    return 0


def _send(args: argparse.Namespace) -> int:
    deadline = Deadline(args.timeout)
    data = data_argument(args.text)
    with Fifo.open(args.path, "w", timeout=deadline.remaining()) as writer:
        writer.send_all(data, timeout=deadline.remaining())
    emit(args, {"path": args.path, "bytes": len(data)})
    return 0


def _receive(args: argparse.Namespace) -> int:
    """Print what arrives until end of stream; --timeout bounds the whole wait."""
    deadline = Deadline(args.timeout)
    chunks = []
    with Fifo.open(args.path, "r", timeout=deadline.remaining()) as reader:
        while chunk := reader.receive_some(timeout=deadline.remaining()):
            chunks.append(chunk)
    data = b"".join(chunks)
    if args.json:
        emit(args, {"path": args.path, **message_fields(data, force_base64=args.base64)})
    else:
        sys.stdout.buffer.write(data if data.endswith(b"\n") or not data else data + b"\n")
        sys.stdout.flush()
    return 0
