"""Entry point of the ``unixipc`` command (also ``python -m unixipc``)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator, Sequence

from .. import __version__
from ..errors import IPCError

# Subcommand modules in help order; each has register(subparsers).
SUBCOMMANDS = (
    "demo",
    "ls",
    "rm",
    "top",
    "doctor",
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
    "bridge",
    "ring",
    "rpc",
    "rpcinfo",
    "rpcgen",
)

_JSON_HELP = "print data as JSON (accepted before or after the subcommand)"


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield child
                yield from _subparsers(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unixipc",
        description="Every classic UNIX IPC facility: create, inspect, use and compare them.",
    )
    parser.add_argument("--version", action="version", version=f"unixipc {__version__}")
    parser.add_argument("--json", action="store_true", help=_JSON_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__package__}.{name.replace('-', '_')}").register(commands)
    # --json after any subcommand too; SUPPRESS keeps a --json given before it.
    for subparser in _subparsers(parser):
        if "--json" not in subparser._option_string_actions:
            subparser.add_argument(
                "--json", action="store_true", default=argparse.SUPPRESS, help=_JSON_HELP
            )
    return parser


def error_text(error: BaseException) -> str:
    """An error as one line for people: the message without ``[Errno N]``."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
        if error.filename is not None and str(error.filename) not in text:
            text = f"{error.filename}: {text}"
        return text
    return str(error) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status (0 success, 1 error, 130 Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as error:
        if isinstance(error, IPCError):  # PeerDied: a channel's peer, a real error
            print(f"unixipc {args.command}: error: {error_text(error)}", file=sys.stderr)
            return 1
        # `unixipc ls | head`: our reader left, which is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (IPCError, OSError, ValueError, TypeError) as error:
        print(f"unixipc {args.command}: error: {error_text(error)}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
