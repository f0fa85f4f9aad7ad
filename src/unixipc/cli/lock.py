"""``unixipc lock PATH [--shared] [--timeout S] -- COMMAND...``: run a command under a file lock.

Like flock(1), with which it interoperates (both use flock(2) on PATH). Options
go before PATH or between PATH and ``--``; without ``--``, everything after
PATH is the command (``unixipc lock /tmp/l make deploy``). The exit
status is the command's (128 + N if a signal N killed it); when the lock cannot
be had in time, a one-line error and status 1. The lock's descriptor is not
passed to the command, so the lock lasts exactly as long as this process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

from ..file_lock import FileLock
from ._common import seconds


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "lock",
        help="run a command while holding a file lock (like flock(1))",
        description="Run COMMAND while holding an flock(2) lock on PATH (created if missing).",
    )
    parser.add_argument("path", metavar="PATH")
    _add_options(parser, argparse.SUPPRESS)
    parser.add_argument("program", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    parser.set_defaults(func=_run, shared=False, timeout=None)


def _add_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--shared", action="store_true", default=default, help="take a shared lock, not exclusive"
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=default,
        metavar="S",
        help="give up after S seconds (0: do not wait); default: wait",
    )
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS)


# The options again, for those written between PATH and "--" (argparse hands
# everything after PATH to the command).
_AFTER_PATH = argparse.ArgumentParser(prog="unixipc lock PATH", add_help=False)
_add_options(_AFTER_PATH, argparse.SUPPRESS)


def _run(args: argparse.Namespace) -> int:
    command = list(args.program)
    if "--" in command:
        split = command.index("--")
        _AFTER_PATH.parse_args(command[:split], namespace=args)
        command = command[split + 1 :]
    if not command:
        raise ValueError("no command given: unixipc lock PATH -- COMMAND...")
    lock = FileLock(args.path)
    lock.acquire(shared=args.shared, timeout=args.timeout)
    try:
        status = subprocess.call(command)
    except FileNotFoundError:
        print(f"unixipc lock: error: command not found: {command[0]}", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"unixipc lock: error: cannot run {command[0]}", file=sys.stderr)
        return 126
    finally:
        lock.close()
    return status if status >= 0 else 128 - status
