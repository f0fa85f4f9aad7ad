"""``unixipc top``: a live view of rings, queues and channel listeners.

Every interval it surveys the objects (as ``ls`` does, reading only) and shows
depth, rates, live producers/consumers and stale ones. Where the figures come
from (docs/design.md, "Decisions: the command line"):

- rings: the header's write and read positions only grow, so bytes in/out per
  second are exact (record bytes: 16-byte headers and padding included); the
  number of messages waiting comes from walking the committed records; a
  ring keeps no message counter, so messages per second are not known;
- POSIX queues: the kernel gives the depth (mq_getattr) and its bytes (QSIZE),
  System V queues qnum and cbytes; neither keeps counters of messages sent or
  received, so rates are not known for them (a change of depth is shown);
- producers/consumers: a ring's live handles by role; connections of a
  channel listener from the names its connections still hold.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .. import inspect
from ._common import emit, seconds, to_text
from .ls import record, table

_KINDS = ("posix-shm", "posix-mq", "sysv-mq", "unix-socket", "fifo")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "top", help="live view of rings, queues and channel listeners: depth, rates, peers"
    )
    parser.add_argument("--interval", type=seconds, default=1.0, metavar="S", help="default 1")
    parser.add_argument(
        "--once", action="store_true", help="one view (over one interval), then exit"
    )
    parser.add_argument("--count", type=int, default=None, metavar="N", help="stop after N views")
    parser.add_argument("--prefix", help="only names / paths starting with this")
    parser.set_defaults(func=run)


def _watched(args: argparse.Namespace) -> dict[tuple[str, str, int | None], inspect.IPCObject]:
    found = inspect.survey(_KINDS, prefix=args.prefix)
    return {
        (item.kind, item.name, item.id): item
        for item in found.objects
        if item.kind in ("posix-mq", "sysv-mq")
        or (item.unixipc or "").startswith(("ring", "channel"))
        or "url" in item.details
    }


def _rate(now: Any, before: Any, elapsed: float) -> float | None:
    if not isinstance(now, int) or not isinstance(before, int) or elapsed <= 0:
        return None
    return round((now - before) / elapsed, 1)


def view(
    before: dict[tuple[str, str, int | None], inspect.IPCObject],
    after: dict[tuple[str, str, int | None], inspect.IPCObject],
    elapsed: float,
) -> list[dict[str, Any]]:
    """One row per object seen in ``after``, with rates against ``before``."""
    rows = []
    for ident, item in after.items():
        old = before.get(ident)
        details, old_details = item.details, old.details if old else {}
        depth = details.get("messages")
        rows.append(
            {
                **record(item),
                "depth": depth,
                "depth_bytes": details.get("used_bytes", details.get("bytes")),
                "bytes_in_per_s": _rate(
                    details.get("bytes_written"), old_details.get("bytes_written"), elapsed
                ),
                "bytes_out_per_s": _rate(
                    details.get("bytes_read"), old_details.get("bytes_read"), elapsed
                ),
                "messages_in_per_s": None,
                "messages_out_per_s": None,
                "depth_change_per_s": _rate(depth, old_details.get("messages"), elapsed),
                "producers": details.get("producers"),
                "consumers": details.get("consumers"),
                "connections": details.get("connections"),
            }
        )
    return rows


_COLUMNS = {
    "kind": "KIND",
    "name": "NAME",
    "state": "STATE",
    "unixipc": "UNIXIPC",
    "depth": "DEPTH",
    "depth_bytes": "BYTES",
    "bytes_in_per_s": "IN B/s",
    "bytes_out_per_s": "OUT B/s",
    "depth_change_per_s": "DEPTH/s",
    "producers": "PROD",
    "consumers": "CONS",
    "connections": "CONN",
}


def _text(rows: list[dict[str, Any]], elapsed: float) -> str:
    cells = [list(_COLUMNS.values())]
    cells += [[to_text(row[key]) for key in _COLUMNS] for row in rows]
    stale = sum(row["state"] == "stale" for row in rows)
    title = f"unixipc top: {len(rows)} objects, {stale} stale (rates over {elapsed:.1f} s)"
    return title + "\n" + table(cells)


def run(args: argparse.Namespace) -> int:
    before = _watched(args)
    started = time.monotonic()
    shown = 0
    while True:
        time.sleep(args.interval)
        after = _watched(args)
        now = time.monotonic()
        rows = view(before, after, now - started)
        if not args.json and not args.once:
            sys.stdout.write("\x1b[H\x1b[2J")  # clear the screen, as top does
        emit(args, rows, _text(rows, now - started))
        shown += 1
        if args.once or (args.count is not None and shown >= args.count):
            return 0
        before, started = after, now
