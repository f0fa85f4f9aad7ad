"""Entry point of the ``unixipc`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import IPCError

# Subcommand modules in help order; each has register(subparsers).
SUBCOMMANDS = (
    "demo",
    "ls",
    "rm",
    "fifo",
    "shm",
    "sem",
    "sysv-shm",
    "sysv-sem",
    "mq",
    "sysv-mq",
    "lock",
    "bench",
    "signal",
    "channel",
    "ring",
    "rpcinfo",
    "rpcgen",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unixipc",
        description="Every classic UNIX IPC facility: create, inspect, use and compare them.",
    )
    parser.add_argument("--version", action="version", version=f"unixipc {__version__}")
    parser.add_argument("--json", action="store_true", help="print data as JSON")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__package__}.{name.replace('-', '_')}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status (0 success, 1 error, 130 Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except (IPCError, OSError, ValueError, TypeError) as error:
        print(f"unixipc {args.command}: error: {error}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
