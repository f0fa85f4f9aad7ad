"""``unixipc ls``: every IPC object on this machine, or those of some kinds or a prefix."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from .. import inspect
from ..errors import UnsupportedFeature


def register(commands: Any) -> None:
    parser = commands.add_parser("ls", help="list IPC objects (shared memory, queues, ...)")
    parser.add_argument(
        "--kind", action="append", choices=inspect.KINDS, help="only this kind (repeatable)"
    )
    parser.add_argument("--prefix", help="only POSIX names / socket paths starting with this")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kinds = args.kind or inspect.KINDS
    if "posix-mq" in kinds:
        try:
            inspect.find(["posix-mq"])
        except UnsupportedFeature as error:
            print(f"unixipc ls: note: POSIX message queues not listed: {error}", file=sys.stderr)
    items = inspect.find(kinds, prefix=args.prefix)
    if args.json:
        print(json.dumps([dataclasses.asdict(item) for item in items], sort_keys=True))
        return 0
    rows = [("KIND", "NAME", "ID", "UID", "PERMS", "SIZE", "DETAILS")]
    for item in items:
        details = " ".join(f"{k}={v}" for k, v in item.details.items())
        rows.append(
            (
                item.kind,
                item.name,
                "" if item.id is None else str(item.id),
                str(item.uid),
                f"{item.permissions:04o}",
                "" if item.size is None else str(item.size),
                details,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return 0
