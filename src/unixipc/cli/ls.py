"""``unixipc ls``: every IPC object on this machine, who holds it and its state."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .. import inspect
from ._common import emit, key_text, mode_text, to_text


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "ls",
        help="list IPC objects: kind, name, state (live/idle/stale), what unixipc made of "
        "it, who holds it",
    )
    add_filters(parser)
    parser.add_argument(
        "--state", action="append", choices=inspect.STATES, help="only this state (repeatable)"
    )
    parser.set_defaults(func=run)


def add_filters(parser: argparse.ArgumentParser) -> None:
    """--kind, --prefix and --dir, shared by ls, rm and top."""
    parser.add_argument(
        "--kind", action="append", choices=inspect.KINDS, help="only this kind (repeatable)"
    )
    parser.add_argument("--prefix", help="only POSIX names / paths starting with this")
    parser.add_argument(
        "--dir",
        action="append",
        metavar="DIR",
        help="look for socket files and FIFOs here (repeatable; default: "
        + ", ".join(inspect.DEFAULT_DIRECTORIES)
        + ")",
    )


def survey(args: argparse.Namespace) -> inspect.Survey:
    """The objects the filters select; notes on what could not be seen go to stderr."""
    found = inspect.survey(args.kind, prefix=args.prefix, directories=args.dir)
    for note in found.notes:
        print(f"unixipc {args.command}: note: {note}", file=sys.stderr)
    return found


def record(item: inspect.IPCObject) -> dict[str, Any]:
    """An object as data: the same fields in ls, rm and top (docs/design.md)."""
    return {
        "kind": item.kind,
        "name": item.name,
        "id": item.id,
        "key": None if item.key is None else key_text(item.key),
        "uid": item.uid,
        "permissions": mode_text(item.permissions),
        "size": item.size,
        "state": item.state,
        "unixipc": item.unixipc,
        "holders": [
            {"pid": holder.pid, "command": holder.command, "how": holder.how}
            for holder in item.holders
        ],
        "details": dict(item.details),
    }


def holders_text(item: inspect.IPCObject) -> str:
    pids: dict[int, str] = {}
    for holder in item.holders:
        pids.setdefault(holder.pid, holder.command)
    return ",".join(f"{pid}/{command}" for pid, command in pids.items()) or "-"


# Details worth a column in the table; the rest are in --json.
_SHOWN = (
    "url",
    "src",
    "dst",
    "clients",
    "status",
    "messages",
    "used_bytes",
    "bytes",
    "producers",
    "consumers",
    "dead_handles",
    "connections",
    "attached",
    "values",
    "locked_by_tid",
    "owner_died",
    "closed",
    "bound",
    "type",
    "mode",
    "start",
    "end",
)


def details_text(item: inspect.IPCObject) -> str:
    shown = []
    for key in _SHOWN:
        if key in item.details and item.details[key] not in (None, [], False):
            shown.append(f"{key}={to_text(item.details[key])}")
    return " ".join(shown)


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last one left ragged."""
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]]
        ).rstrip()
        for row in rows
    )


def run(args: argparse.Namespace) -> int:
    items = survey(args).objects
    if args.state:
        items = [item for item in items if item.state in args.state]
    rows = [
        ("KIND", "NAME", "ID", "STATE", "UNIXIPC", "UID", "PERMS", "SIZE", "HELD BY", "DETAILS")
    ]
    for item in items:
        rows.append(
            (
                item.kind,
                item.name,
                to_text(item.id),
                item.state,
                item.unixipc or "-",
                str(item.uid),
                mode_text(item.permissions),
                to_text(item.size),
                holders_text(item),
                details_text(item),
            )
        )
    emit(args, [record(item) for item in items], table(rows))
    return 0
