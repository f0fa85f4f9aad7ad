"""``unixipc rm``: remove one IPC object, those with a name prefix, or unixipc's stale ones.

``rm KIND NAME`` (or ``--id N`` for System V), ``rm --prefix P`` and
``rm --stale`` refuse an object that is live (held by a process, a bound
socket, a listener whose owner lives) unless ``--force``, naming who holds it.
``--stale`` removes only unixipc's objects of your uid whose owner died and
that nobody holds. ``--dry-run`` only says what would go.
"""

from __future__ import annotations

import argparse
from typing import Any

from .. import inspect
from ..errors import IPCError, ResourceNotFoundError
from ._common import emit, integer
from .ls import add_filters, record, survey


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "rm",
        help="remove IPC objects: KIND NAME (a POSIX name, a System V key, a path), "
        "KIND --id N, --prefix P, or --stale",
    )
    parser.add_argument("target_kind", nargs="?", choices=inspect.KINDS, metavar="KIND")
    parser.add_argument("name", nargs="?", help="POSIX name, System V key (0x...) or path")
    parser.add_argument("--id", type=integer, help="System V id (for IPC_PRIVATE objects)")
    add_filters(parser)
    parser.add_argument(
        "--stale",
        action="store_true",
        help="remove unixipc's objects of your uid whose owner died and that nobody holds",
    )
    parser.add_argument("--force", action="store_true", help="remove live objects too")
    parser.add_argument("--dry-run", action="store_true", help="only say what would go")
    parser.set_defaults(func=run)


def _report(args: argparse.Namespace, item: inspect.IPCObject, outcome: str) -> None:
    what = f" ({item.unixipc})" if item.unixipc else ""
    ident = "" if item.id is None else f" (id {item.id})"
    emit(
        args,
        record(item) | {"outcome": outcome},
        f"{outcome.replace('-', ' ')} {item.kind} {item.name}{ident}{what}",
    )


def run(args: argparse.Namespace) -> int:
    if args.stale:
        if args.name is not None or args.id is not None or args.force:
            raise ValueError(
                "--stale takes no NAME, --id or --force: it removes stale objects only"
            )
        kinds = [args.target_kind] if args.target_kind else args.kind
        for item in inspect.remove_stale(kinds, prefix=args.prefix, dry_run=args.dry_run):
            _report(args, item, "would-remove" if args.dry_run else "removed")
        return 0
    if args.prefix is not None:
        if args.name is not None or args.id is not None:
            raise ValueError("give either --prefix (and optionally KIND) or KIND NAME/--id")
        if not args.prefix.strip("/"):
            raise ValueError("--prefix must name something more than '/'")
        if args.target_kind:
            args.kind = [args.target_kind]
        targets = [item for item in survey(args).objects if item.kind != "file-lock"]
    else:
        if args.target_kind is None or (args.name is None) == (args.id is None):
            raise ValueError("give KIND and either NAME or --id (or --prefix, or --stale)")
        targets = [_one(args)]
    refused = 0
    for target in targets:
        live = target.state == "live" or bool(target.holders)
        if live and not args.force:
            if len(targets) == 1:
                in_use = f"{target.kind} {target.name} is in use ({inspect.held_by(target)})"
                raise IPCError(f"{in_use}; use --force to remove it")
            refused += 1
            _report(args, target, "refused")
            continue
        if args.dry_run:
            _report(args, target, "would-remove")
            continue
        try:
            inspect.remove(target, force=True)
        except ResourceNotFoundError:
            if len(targets) == 1:
                raise
            continue  # removed by someone else meanwhile
        _report(args, target, "removed")
    return 1 if refused else 0


def _one(args: argparse.Namespace) -> inspect.IPCObject:
    kind, name, object_id = args.target_kind, args.name, args.id
    directories = args.dir
    if kind in ("unix-socket", "fifo") and name is not None and directories is None:
        directories = [name.rpartition("/")[0] or "/"]
    items = inspect.find([kind], directories=directories)
    if kind.startswith("sysv-"):
        key = None if name is None else integer(name)
        for item in items:
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
    for item in items:
        if item.name == name:
            return item
    raise ResourceNotFoundError(2, f"no {kind} object called {name!r}", name)
