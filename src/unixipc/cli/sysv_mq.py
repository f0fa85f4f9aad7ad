"""``unixipc sysv-mq create|send|receive|info|unlink|list``: System V message queues.

Queues are named by KEY (decimal or 0x hex); ``--id`` names one by its id
instead, which is how a queue made with ``create --private`` is reached.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .. import sysv_mq
from .._sysv import IPC_PRIVATE, ftok
from ..sysv_mq import SysVMessageQueue
from ._common import (
    add_base64_option,
    created,
    data_argument,
    emit,
    integer,
    key_text,
    lines,
    mode_text,
    permissions,
    seconds,
    sysv_name,
    timestamp,
    write_message,
)


def _ftok_spec(value: str) -> tuple[str, int]:
    """PATH:ID, where ID is a number (decimal or 0x hex) or one character."""
    path, colon, proj = value.rpartition(":")
    if not colon or not path or not proj:
        raise argparse.ArgumentTypeError(f"expected PATH:ID, got {value!r}")
    try:
        return path, int(proj, 0)
    except ValueError:
        if len(proj) == 1:
            return path, ord(proj)
        raise argparse.ArgumentTypeError(
            f"ID must be a number or one character: {proj!r}"
        ) from None


def _add_queue_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", type=integer, help="the queue's key (decimal or 0x hex)")
    parser.add_argument("--id", action="store_true", help="KEY is the queue's id, not its key")


def register(commands: Any) -> None:
    parser = commands.add_parser("sysv-mq", help="System V message queues")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create a queue")
    which = create.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", type=integer, metavar="K", help="decimal or 0x hex")
    which.add_argument("--ftok", type=_ftok_spec, metavar="PATH:ID", help="the key ftok(3) gives")
    which.add_argument("--private", action="store_true", help="IPC_PRIVATE: reach it by --id")
    create.add_argument("--permissions", type=permissions, default=0o600, metavar="MODE")
    create.set_defaults(func=_create)

    send = verbs.add_parser("send", help="send TEXT as a message of --type (default 1)")
    _add_queue_argument(send)
    send.add_argument("text", help="the message, or - for standard input")
    send.add_argument("--type", type=integer, default=1, metavar="T")
    send.add_argument("--timeout", type=seconds, default=None, metavar="S")
    send.set_defaults(func=_send)

    receive = verbs.add_parser(
        "receive", help="print a message: --type 0 oldest, T>0 of type T, T<0 lowest <= |T|"
    )
    _add_queue_argument(receive)
    receive.add_argument("--type", type=integer, default=0, metavar="T")
    receive.add_argument(
        "--except", dest="except_type", action="store_true", help="any type but T (MSG_EXCEPT)"
    )
    receive.add_argument(
        "--truncate", action="store_true", help="cut an oversize message (MSG_NOERROR)"
    )
    receive.add_argument("--timeout", type=seconds, default=None, metavar="S")
    add_base64_option(receive)
    receive.set_defaults(func=_receive)

    info = verbs.add_parser("info", help="show a queue's status (IPC_STAT)")
    _add_queue_argument(info)
    info.set_defaults(func=_info)

    remove = verbs.add_parser("unlink", help="remove a queue (IPC_RMID)")
    _add_queue_argument(remove)
    remove.set_defaults(func=_unlink)

    listing = verbs.add_parser("list", help="list every queue's id")
    listing.set_defaults(func=_list)


def _open(args: argparse.Namespace) -> SysVMessageQueue:
    if args.id:
        return SysVMessageQueue.open_id(args.key)
    return SysVMessageQueue.open(args.key)


def _describe(queue: SysVMessageQueue) -> dict[str, Any]:
    return {"key": key_text(queue.key), "id": queue.id}


def _create(args: argparse.Namespace) -> int:
    if args.private:
        key = IPC_PRIVATE
    elif args.ftok is not None:
        key = ftok(*args.ftok)
    else:
        key = args.key
    with SysVMessageQueue.create(key, permissions=args.permissions) as queue:
        fields = _describe(queue) | {"permissions": mode_text(args.permissions)}
    created(args, "sysv-mq", sysv_name(key), fields)
    return 0


def _send(args: argparse.Namespace) -> int:
    data = data_argument(args.text)
    with _open(args) as queue:
        queue.send(data, type=args.type, timeout=args.timeout)
        emit(args, {**_describe(queue), "bytes": len(data), "type": args.type})
    return 0


def _receive(args: argparse.Namespace) -> int:
    with _open(args) as queue:
        data, message_type = queue.receive(
            type=args.type,
            timeout=args.timeout,
            truncate=args.truncate,
            except_type=args.except_type,
        )
        described = _describe(queue)
    write_message(args, data, described | {"type": message_type})
    return 0


def _info(args: argparse.Namespace) -> int:
    with _open(args) as queue:
        info = dataclasses.asdict(queue.info())
    info["key"] = key_text(info["key"])
    info["permissions"] = mode_text(info["permissions"])
    for field in ("last_send_time", "last_receive_time", "last_change_time"):
        info[field] = timestamp(info[field])
    emit(args, info, lines(info))
    return 0


def _unlink(args: argparse.Namespace) -> int:
    with _open(args) as queue:
        queue.unlink()
        emit(args, {**_describe(queue), "removed": True})
    return 0


def _list(args: argparse.Namespace) -> int:
    ids = sysv_mq.list_ids()
    emit(args, {"ids": ids}, "\n".join(map(str, ids)) if ids else None)
    return 0
