"""``unixipc sysv-shm create|info|unlink``: System V shared memory from the shell.

Keys are written in decimal or 0x hexadecimal; key 0 (IPC_PRIVATE) creates a
segment that only its id finds again, so ``info`` and ``unlink`` take ``--id``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .. import sysv_shm
from ..sysv_shm import SysVSharedMemory
from ._common import emit, integer, permissions


def register(commands: Any) -> None:
    parser = commands.add_parser("sysv-shm", help="System V shared memory segments")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create a segment of SIZE bytes; prints its id")
    create.add_argument("key", type=integer, help="decimal or 0x hex; 0 for IPC_PRIVATE")
    create.add_argument("size", type=integer)
    create.add_argument("--permissions", type=permissions, default=0o600, metavar="MODE")
    create.set_defaults(func=_create)

    for verb, helptext, func in (
        ("info", "size, attach count, pids, owner and times of a segment", _info),
        ("unlink", "remove a segment (it goes when the last process detaches)", _unlink),
    ):
        command = verbs.add_parser(verb, help=helptext)
        command.add_argument("key", type=integer, help="decimal or 0x hex")
        command.add_argument("--id", action="store_true", help="the number is an id, not a key")
        command.set_defaults(func=func)


def _open(args: argparse.Namespace) -> SysVSharedMemory:
    if args.id:
        return SysVSharedMemory.open_id(args.key, read_only=True)
    return SysVSharedMemory.open(args.key, read_only=True)


def _create(args: argparse.Namespace) -> int:
    with SysVSharedMemory.create(args.key, args.size, permissions=args.permissions) as memory:
        data = {"key": memory.key, "id": memory.id, "size": memory.size}
    emit(args, data | {"permissions": oct(args.permissions)}, str(data["id"]))
    return 0


def _info(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        info = memory.info()
    data = dataclasses.asdict(info)
    # Not counting the attachment this command made to read it.
    data["attach_count"] = info.attach_count - 1
    data["permissions"] = oct(info.permissions)
    shown = data | {"key": f"{info.key & 0xFFFFFFFF:#010x}"}
    emit(args, data, "\n".join(f"{name}: {value}" for name, value in shown.items()))
    return 0


def _unlink(args: argparse.Namespace) -> int:
    if not args.id:
        sysv_shm.unlink(args.key)  # by key: no need to attach
        emit(args, {"key": args.key, "removed": True})
        return 0
    with _open(args) as memory:
        memory.unlink()
        data = {"key": memory.key, "id": memory.id, "removed": True}
    emit(args, data)
    return 0
