"""``unixipc sysv-sem create|op|values|unlink``: System V semaphore sets from the shell.

Keys are written in decimal or 0x hexadecimal. ``op`` takes INDEX:DELTA pairs
applied together, all or none (``0:-1`` takes one from semaphore 0, ``1:+2``
adds two to semaphore 1, ``2:0`` waits until semaphore 2 is zero).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..sysv_sem import SysVSemaphoreSet
from ._common import created, emit, integer, key_text, mode_text, permissions, seconds, sysv_name


def operation(text: str) -> tuple[int, int]:
    """Parse INDEX:DELTA such as 0:-1 or 1:+2."""
    index, colon, delta = text.partition(":")
    try:
        if not colon:
            raise ValueError
        return int(index), int(delta)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not INDEX:DELTA (such as 0:-1): {text!r}") from None


def value_list(text: str) -> list[int]:
    """Parse comma-separated values such as 1,0,5."""
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated integers: {text!r}") from None


def register(commands: Any) -> None:
    parser = commands.add_parser("sysv-sem", help="System V semaphore sets")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create a set of COUNT semaphores")
    create.add_argument("key", type=integer, help="decimal or 0x hex; 0 for IPC_PRIVATE")
    create.add_argument("count", type=integer)
    create.add_argument("--values", type=value_list, default=None, metavar="V,V,...")
    create.add_argument("--permissions", type=permissions, default=0o600, metavar="MODE")
    create.set_defaults(func=_create)

    op = verbs.add_parser("op", help="apply INDEX:DELTA operations atomically (waits if needed)")
    op.add_argument("key", type=integer)
    op.add_argument("operations", type=operation, nargs="+", metavar="INDEX:DELTA")
    op.add_argument("--timeout", type=seconds, default=None, metavar="S")
    op.add_argument("--id", action="store_true", help="the number is an id, not a key")
    op.set_defaults(func=_op)

    values = verbs.add_parser("values", help="print every semaphore's value")
    values.add_argument("key", type=integer)
    values.add_argument("--id", action="store_true", help="the number is an id, not a key")
    values.set_defaults(func=_values)

    remove = verbs.add_parser("unlink", help="remove a set (its waiters wake with an error)")
    remove.add_argument("key", type=integer)
    remove.add_argument("--id", action="store_true", help="the number is an id, not a key")
    remove.set_defaults(func=_unlink)


def _open(args: argparse.Namespace) -> SysVSemaphoreSet:
    return SysVSemaphoreSet.open_id(args.key) if args.id else SysVSemaphoreSet.open(args.key)


def _create(args: argparse.Namespace) -> int:
    with SysVSemaphoreSet.create(
        args.key, args.count, values=args.values, permissions=args.permissions
    ) as semaphores:
        fields = {
            "key": key_text(semaphores.key),
            "id": semaphores.id,
            "values": semaphores.values,
            "permissions": mode_text(args.permissions),
        }
    created(args, "sysv-sem", sysv_name(args.key), fields)
    return 0


def _op(args: argparse.Namespace) -> int:
    with _open(args) as semaphores:
        semaphores.op(args.operations, timeout=args.timeout)
        data = {"key": key_text(semaphores.key), "id": semaphores.id, "values": semaphores.values}
    emit(args, data)
    return 0


def _values(args: argparse.Namespace) -> int:
    with _open(args) as semaphores:
        values = semaphores.values
        data = {"key": key_text(semaphores.key), "id": semaphores.id, "values": values}
    emit(args, data, " ".join(str(value) for value in values))
    return 0


def _unlink(args: argparse.Namespace) -> int:
    with _open(args) as semaphores:
        semaphores.unlink()
        data = {"key": key_text(semaphores.key), "id": semaphores.id, "removed": True}
    emit(args, data)
    return 0
