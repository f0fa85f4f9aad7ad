"""``unixipc shm create|info|unlink|read|write``: POSIX shared memory from the shell."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from .. import posix_shm
from ..posix_shm import PosixSharedMemory
from ._common import (
    add_base64_option,
    created,
    data_argument,
    emit,
    lines,
    message_fields,
    mode_text,
    permissions,
    size,
)


def register(commands: Any) -> None:
    parser = commands.add_parser("shm", help="POSIX shared memory objects")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create an object of SIZE zero bytes")
    create.add_argument("name", help="a name such as /data")
    create.add_argument("size", type=size, help="bytes: 4096, 4K, 1M, ...")
    create.add_argument("--permissions", type=permissions, default=0o600, metavar="MODE")
    create.set_defaults(func=_create)

    info = verbs.add_parser("info", help="size, permissions and owner of an object")
    info.add_argument("name")
    info.set_defaults(func=_info)

    remove = verbs.add_parser("unlink", help="remove an object's name")
    remove.add_argument("name")
    remove.set_defaults(func=_unlink)

    read = verbs.add_parser("read", help="print bytes of an object (all of it by default)")
    read.add_argument("name")
    read.add_argument("--offset", type=size, default=0, metavar="N")
    read.add_argument("--size", type=size, default=None, metavar="N")
    add_base64_option(read)
    read.set_defaults(func=_read)

    write = verbs.add_parser("write", help="write TEXT (or standard input for -) into an object")
    write.add_argument("name")
    write.add_argument("text", help="the text to write, or - to copy standard input")
    write.add_argument("--offset", type=size, default=0, metavar="N")
    write.set_defaults(func=_write)


def _create(args: argparse.Namespace) -> int:
    with PosixSharedMemory.create(args.name, args.size, permissions=args.permissions) as memory:
        fields = {"size": memory.size, "permissions": mode_text(args.permissions)}
    created(args, "posix-shm", args.name, fields)
    return 0


def _info(args: argparse.Namespace) -> int:
    with PosixSharedMemory.open(args.name, read_only=True) as memory:
        info = memory.info()
    data = dataclasses.asdict(info) | {"permissions": mode_text(info.permissions)}
    emit(args, data, lines(data))
    return 0


def _unlink(args: argparse.Namespace) -> int:
    posix_shm.unlink(args.name)
    emit(args, {"name": args.name, "removed": True})
    return 0


def region(size: int, offset: int, length: int | None) -> slice:
    """The slice [offset, offset + length) of a SIZE-byte memory, checked."""
    if offset < 0 or offset > size:
        raise ValueError(f"--offset {offset} is outside the memory ({size} bytes)")
    end = size if length is None else offset + length
    if length is not None and (length < 0 or end > size):
        raise ValueError(f"--size {length} at offset {offset} goes past the end ({size} bytes)")
    return slice(offset, end)


def _read(args: argparse.Namespace) -> int:
    with PosixSharedMemory.open(args.name, read_only=True) as memory:
        data = bytes(memory.buf[region(memory.size, args.offset, args.size)])
    if args.json:
        record = {"name": args.name, "offset": args.offset}
        emit(args, record | message_fields(data, force_base64=args.base64))
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def _write(args: argparse.Namespace) -> int:
    data = data_argument(args.text)
    with PosixSharedMemory.open(args.name) as memory:
        target = region(memory.size, args.offset, len(data))
        memory.buf[target] = data
    emit(args, {"name": args.name, "offset": args.offset, "bytes": len(data)})
    return 0
