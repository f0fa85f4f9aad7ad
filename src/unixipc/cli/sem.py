"""``unixipc sem create|post|wait|value|unlink``: named POSIX semaphores from the shell."""

from __future__ import annotations

import argparse
from typing import Any

from .. import posix_sem
from ..posix_sem import PosixSemaphore
from ._common import created, emit, integer, mode_text, permissions, seconds


def register(commands: Any) -> None:
    parser = commands.add_parser("sem", help="named POSIX semaphores")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create a semaphore holding VALUE")
    create.add_argument("name", help="a name such as /lock")
    create.add_argument("--value", type=integer, default=0, metavar="N")
    create.add_argument("--permissions", type=permissions, default=0o600, metavar="MODE")
    create.set_defaults(func=_create)

    post = verbs.add_parser("post", help="release: add one, waking a waiter")
    post.add_argument("name")
    post.set_defaults(func=_post)

    wait = verbs.add_parser("wait", help="acquire: take one, waiting while it is zero")
    wait.add_argument("name")
    wait.add_argument("--timeout", type=seconds, default=None, metavar="S")
    wait.set_defaults(func=_wait)

    value = verbs.add_parser("value", help="print the current value")
    value.add_argument("name")
    value.set_defaults(func=_value)

    remove = verbs.add_parser("unlink", help="remove a semaphore's name")
    remove.add_argument("name")
    remove.set_defaults(func=_unlink)


def _create(args: argparse.Namespace) -> int:
    semaphore = PosixSemaphore.create(args.name, value=args.value, permissions=args.permissions)
    semaphore.close()
    created(
        args,
        "posix-sem",
        args.name,
        {"value": args.value, "permissions": mode_text(args.permissions)},
    )
    return 0


def _post(args: argparse.Namespace) -> int:
    semaphore = PosixSemaphore.open(args.name)
    try:
        semaphore.release()
        value = semaphore.value
    finally:
        semaphore.close()
    emit(args, {"name": args.name, "value": value})
    return 0


def _wait(args: argparse.Namespace) -> int:
    semaphore = PosixSemaphore.open(args.name)
    try:
        semaphore.acquire(timeout=args.timeout)
        value = semaphore.value
    finally:
        semaphore.close()
    emit(args, {"name": args.name, "value": value})
    return 0


def _value(args: argparse.Namespace) -> int:
    semaphore = PosixSemaphore.open(args.name)
    try:
        value = semaphore.value
    finally:
        semaphore.close()
    emit(args, {"name": args.name, "value": value}, str(value))
    return 0


def _unlink(args: argparse.Namespace) -> int:
    posix_sem.unlink(args.name)
    emit(args, {"name": args.name, "removed": True})
    return 0
