"""``unixipc rpcgen FILE.x [-o MODULE.py]``: a typed Python module from a ``.x`` file.

The module holds the file's constants, enums, structs (dataclasses), unions
and typedefs, and for each program version a client class, a service (server
base) class and their asyncio variants: what ``unixipc.oncrpc.load(FILE.x)``
gives at run time. Without ``-o`` it is written to standard output.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "rpcgen",
        help="write a typed Python module from a Sun RPC .x file",
        description="Write the Python types, clients and services of a Sun RPC .x file.",
    )
    parser.add_argument("source", metavar="FILE.x")
    parser.add_argument("-o", dest="output", metavar="MODULE.py", help="where to write it")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..oncrpc._codegen import generate

    with open(args.source, encoding="utf-8") as file:
        text = generate(file.read(), args.source)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    # Written beside the target and renamed: a failed run never leaves half a module.
    directory = os.path.dirname(os.path.abspath(args.output))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".rpcgen-", suffix=".py")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, args.output)
    except BaseException:
        os.unlink(temporary)
        raise
    return 0
