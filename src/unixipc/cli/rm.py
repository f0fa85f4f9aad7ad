"""``unixipc rm``: remove one IPC object, or every object whose name has a given prefix."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .. import inspect
from ..errors import ResourceNotFoundError
from ._common import emit, integer


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "rm",
        help="remove an IPC object: KIND NAME (a POSIX name, a System V key, a socket "
        "path), KIND --id N, or --prefix P",
    )
    parser.add_argument("kind", nargs="?", choices=inspect.KINDS, metavar="KIND")
    parser.add_argument("name", nargs="?", help="POSIX name, System V key (0x...) or path")
    parser.add_argument("--id", type=integer, help="System V id (for IPC_PRIVATE objects)")
    parser.add_argument(
        "--prefix", help="remove every object whose POSIX name or socket path starts with this"
    )
    parser.add_argument("--dry-run", action="store_true", help="only say what would go")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.prefix is not None:
        if args.name is not None or args.id is not None:
            raise ValueError("give either --prefix (and optionally KIND) or KIND NAME/--id")
        if not args.prefix.strip("/"):
            raise ValueError("--prefix must name something more than '/'")
        targets = inspect.find([args.kind] if args.kind else None, prefix=args.prefix)
    else:
        if args.kind is None or (args.name is None) == (args.id is None):
            raise ValueError("give KIND and either NAME or --id (or --prefix)")
        targets = [_one(args.kind, args.name, args.id)]
    for target in targets:
        if not args.dry_run:
            inspect.remove(target)
        emit(
            args,
            {
                "kind": target.kind,
                "name": target.name,
                "id": target.id,
                "removed": not args.dry_run,
            },
            f"{'would remove' if args.dry_run else 'removed'} {target.kind} {target.name}"
            + ("" if target.id is None else f" (id {target.id})"),
        )
    return 0


def _one(kind: str, name: str | None, object_id: int | None) -> inspect.IPCObject:
    if kind.startswith("sysv-"):
        key = None if name is None else integer(name)
        for item in inspect.find([kind]):
            if (object_id is not None and item.id == object_id) or (
                key is not None
                and key != 0
                and item.key is not None
                and item.key & 0xFFFFFFFF == key & 0xFFFFFFFF
            ):
                return item
        what = f"id {object_id}" if object_id is not None else f"key {name}"
        raise ResourceNotFoundError(2, f"no {kind} object with {what}", str(name or object_id))
    if name is None:
        raise ValueError(f"{kind} objects are named, not numbered: give NAME")
    return dataclasses.replace(inspect.IPCObject(kind, name, 0, 0))
