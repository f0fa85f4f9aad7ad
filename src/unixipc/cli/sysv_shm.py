"""``unixipc sysv-shm create|info|unlink``: System V shared memory from the shell.

Keys are written in decimal or 0x hexadecimal; key 0 (IPC_PRIVATE) creates a
segment that only its id finds again, so ``info`` and ``unlink`` take ``--id``.
Neither attaches to the segment (they read /proc/sysvipc/shm and remove by id),
so its attach count, last pid and times stay as they were.
"""

from __future__ import annotations

import argparse
from typing import Any

from .. import inspect
from ..errors import ResourceNotFoundError
from ..sysv_shm import SysVSharedMemory
from ._common import (
    created,
    emit,
    integer,
    key_text,
    lines,
    mode_text,
    permissions,
    size,
    sysv_name,
)


def register(commands: Any) -> None:
    parser = commands.add_parser("sysv-shm", help="System V shared memory segments")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create a segment of SIZE bytes")
    create.add_argument("key", type=integer, help="decimal or 0x hex; 0 for IPC_PRIVATE")
    create.add_argument("size", type=size, help="bytes: 4096, 4K, 1M, ...")
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


def _find(args: argparse.Namespace) -> inspect.IPCObject:
    """The segment from /proc/sysvipc/shm: no attaching, so its pids and times stay."""
    for item in inspect.find(["sysv-shm"]):
        if (
            item.id == args.key
            if args.id
            else (item.key or 0) & 0xFFFFFFFF == args.key & 0xFFFFFFFF
        ):
            return item
    what = f"id {args.key}" if args.id else key_text(args.key)
    raise ResourceNotFoundError(2, f"System V shared memory {what!r} does not exist", what)


def _create(args: argparse.Namespace) -> int:
    with SysVSharedMemory.create(args.key, args.size, permissions=args.permissions) as memory:
        fields = {
            "key": key_text(memory.key),
            "id": memory.id,
            "size": memory.size,
            "permissions": mode_text(args.permissions),
        }
    created(args, "sysv-shm", sysv_name(args.key), fields)
    return 0


def _info(args: argparse.Namespace) -> int:
    item = _find(args)
    data = {
        "key": key_text(item.key or 0),
        "id": item.id,
        "size": item.size,
        "permissions": mode_text(item.permissions),
        "uid": item.uid,
        **item.details,
    }
    emit(args, data, lines(data))
    return 0


def _unlink(args: argparse.Namespace) -> int:
    item = _find(args)
    inspect.remove(item, force=True)  # IPC_RMID by id: it goes at the last detach
    emit(args, {"key": key_text(item.key or 0), "id": item.id, "removed": True})
    return 0
