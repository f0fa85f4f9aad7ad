"""``unixipc top``: a live view of rings, queues, channel listeners and bridges.

Every interval it surveys the objects (as ``ls`` does, reading only) and shows
depth, rates, live producers/consumers and stale ones. Where the figures come
from (docs/design.md, "Decisions: the command line"); ``rates_from`` in each
row says which applies, and a rate nothing counts is ``-`` (JSON ``null``):

- rings: the header's write and read positions only grow, so bytes in/out per
  second are exact (record bytes: 16-byte headers and padding included); the
  number of messages waiting comes from walking the committed records;
  messages per second come from the ring's message counters where its layout
  has them (``messages_written``/``messages_read`` in its details), else ``-``;
- POSIX queues: the kernel gives the depth (mq_getattr) and its bytes (QSIZE),
  System V queues qnum and cbytes; neither keeps counters of messages sent or
  received, so their rates are ``-`` and the change of depth per second is
  shown instead (DEPTH/s);
- bridges (``unixipc bridge``): the counts the bridge publishes in its status
  object; "in" is SRC to DST, "out" is DST to SRC; CONN is 1 while a client is
  bridged, CLIENTS those served so far;
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
        or (item.unixipc or "").startswith(("ring", "channel", "bridge"))
        or "url" in item.details
    }


# The counters each kind of object has, as (messages in, messages out, bytes in,
# bytes out) keys of its details, and what the row says about them.
_RING = ("messages_written", "messages_read", "bytes_written", "bytes_read")
_BRIDGE = ("src_to_dst_messages", "dst_to_src_messages", "src_to_dst_bytes", "dst_to_src_bytes")
_NOTHING = ("", "", "", "")


def _counters(item: inspect.IPCObject) -> tuple[tuple[str, str, str, str], str]:
    """Which details count messages and bytes in and out, and where rates come from."""
    if item.unixipc == "bridge":
        return _BRIDGE, "bridge counts"
    if (item.unixipc or "").startswith("ring") or "bytes_written" in item.details:
        if "messages_written" in item.details:
            return _RING, "ring counters"
        return _RING, "ring positions: bytes only (this ring layout counts no messages)"
    if item.kind in ("posix-mq", "sysv-mq"):
        return _NOTHING, "depth only: the kernel counts no messages for queues"
    return _NOTHING, "connections only"


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
        bridge = item.unixipc == "bridge"
        depth = None if bridge else details.get("messages")
        keys, rates_from = _counters(item)
        messages_in, messages_out, bytes_in, bytes_out = (
            _rate(details.get(key), old_details.get(key), elapsed) for key in keys
        )
        rows.append(
            {
                **record(item),
                "depth": depth,
                "depth_bytes": None if bridge else details.get("used_bytes", details.get("bytes")),
                "bytes_in_per_s": bytes_in,
                "bytes_out_per_s": bytes_out,
                "messages_in_per_s": messages_in,
                "messages_out_per_s": messages_out,
                "depth_change_per_s": _rate(depth, old_details.get("messages"), elapsed),
                "rates_from": rates_from,
                "producers": details.get("producers"),
                "consumers": details.get("consumers"),
                "connections": details.get("connections"),
                "clients": details.get("clients"),
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
    "messages_in_per_s": "IN MSG/s",
    "messages_out_per_s": "OUT MSG/s",
    "bytes_in_per_s": "IN B/s",
    "bytes_out_per_s": "OUT B/s",
    "depth_change_per_s": "DEPTH/s",
    "producers": "PROD",
    "consumers": "CONS",
    "connections": "CONN",
    "clients": "CLIENTS",
}
_LEGEND = (
    "-: not counted (queues: the kernel keeps only their depth, see DEPTH/s); "
    "a bridge's IN is SRC->DST, OUT is DST->SRC"
)


def _text(rows: list[dict[str, Any]], elapsed: float) -> str:
    cells = [list(_COLUMNS.values())]
    cells += [[to_text(row[key]) for key in _COLUMNS] for row in rows]
    stale = sum(row["state"] == "stale" for row in rows)
    title = f"unixipc top: {len(rows)} objects, {stale} stale (rates over {elapsed:.1f} s)"
    return title + "\n" + table(cells) + "\n" + _LEGEND


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
