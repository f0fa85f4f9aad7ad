"""``unixipc rpcinfo``: what rpcbind lists, and NULL-call pings (like rpcinfo(8)).

- ``unixipc rpcinfo -p [HOST]``: the PMAP version 2 list, printed exactly as
  ``rpcinfo -p`` prints it.
- ``unixipc rpcinfo [HOST]``: the RPCBIND version 4 list (netid, universal
  address, owner), as ``rpcinfo`` prints it.
- ``unixipc rpcinfo -t|-u HOST PROGRAM [VERSION]``: call procedure 0 over TCP
  or UDP; without VERSION, every version the server says it has. Exit status 1
  if a version does not answer.

PROGRAM is a number or a name from /etc/rpc. ``--json`` prints the data.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from ..errors import IPCError
from ._common import emit, seconds

if TYPE_CHECKING:  # imported when the command runs: `unixipc` starts faster without it
    from ..oncrpc import rpcbind

RPC_NAMES = "/etc/rpc"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "rpcinfo",
        help="list rpcbind's registrations, or ping a Sun RPC program (like rpcinfo)",
        description="Report what rpcbind on HOST lists, or call procedure 0 of a program.",
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("-p", dest="pmap", action="store_true", help="list PMAP v2 registrations")
    kind.add_argument("-t", dest="ping", action="store_const", const="tcp", help="ping over TCP")
    kind.add_argument("-u", dest="ping", action="store_const", const="udp", help="ping over UDP")
    parser.add_argument("host", nargs="?", default="localhost", metavar="HOST")
    parser.add_argument("program", nargs="?", metavar="PROGRAM", help="number or /etc/rpc name")
    parser.add_argument("version", nargs="?", type=int, metavar="VERSION")
    parser.add_argument(
        "--timeout", type=seconds, default=10.0, metavar="S", help="per call (default 10)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..oncrpc import rpcbind

    if args.ping:
        if args.program is None:
            raise ValueError("-t/-u need HOST and PROGRAM")
        return _ping(args)
    if args.program is not None:
        raise ValueError("PROGRAM is only for -t or -u")
    with rpcbind.RpcbindClient(args.host, timeout=args.timeout) as portmapper:
        if args.pmap:
            mappings = portmapper.pmap_dump()
            data = {"mappings": [dataclasses.asdict(m) for m in mappings]}
            emit(args, data, format_pmap(mappings))
        else:
            bindings = portmapper.dump()
            data = {"bindings": [dataclasses.asdict(b) for b in bindings]}
            emit(args, data, format_bindings(bindings))
    return 0


def rpc_names(path: str = RPC_NAMES) -> dict[int, str]:
    """Program numbers to names, from /etc/rpc (what getrpcbynumber(3) reads)."""
    names: dict[int, str] = {}
    for fields in _rpc_entries(path):
        names.setdefault(int(fields[1]), fields[0])
    return names


def _rpc_entries(path: str = RPC_NAMES) -> list[list[str]]:
    """The lines of /etc/rpc as [name, number, aliases...] (none if it is missing)."""
    entries = []
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2 and fields[1].isdigit():
                entries.append(fields)
    return entries


def program_number(text: str) -> int:
    """A program given as a number or as a name (or alias) from /etc/rpc."""
    with contextlib.suppress(ValueError):
        return int(text, 0)
    for fields in _rpc_entries():
        if text == fields[0] or text in fields[2:]:
            return int(fields[1])
    raise ValueError(f"unknown program {text!r} (not a number, not in {RPC_NAMES})")


def format_pmap(mappings: list[rpcbind.Mapping]) -> str:
    """The text of ``rpcinfo -p``."""
    names = rpc_names()
    lines = ["   program vers proto   port  service"]
    for item in mappings:
        protocol = f"{item.protocol:>6}"
        name = names.get(item.program)
        lines.append(
            f"{item.program:>10}{item.version:>5}{protocol}{item.port:>7}"
            + (f"  {name}" if name else "")
        )
    return "\n".join(lines)


def format_bindings(bindings: list[rpcbind.Binding]) -> str:
    """The text of ``rpcinfo`` (RPCBIND version 4 dump)."""
    names = rpc_names()
    lines = ["   program version netid     address                service    owner"]
    for item in bindings:
        lines.append(
            f"{item.program:>10}{item.version:>5}    {item.netid:<9} {item.address:<22}"
            f" {names.get(item.program, '-'):<10} {item.owner}"
        )
    return "\n".join(lines)


def _ping(args: argparse.Namespace) -> int:
    from ..oncrpc import Client, ProgramMismatch

    program = program_number(args.program)
    versions = [args.version] if args.version is not None else None
    if versions is None:  # ask with version 0, as rpcinfo does: the server names its range
        try:
            with Client(
                args.host,
                program,
                0,
                protocol=args.ping,
                timeout=args.timeout,
                port=_port(args, program),
            ) as client:
                client.null()
            versions = [0]
        except ProgramMismatch as mismatch:
            versions = list(range(mismatch.low, mismatch.high + 1))
    results = []
    status = 0
    for version in versions:
        try:
            with Client(
                args.host, program, version, protocol=args.ping, timeout=args.timeout
            ) as client:
                client.null()
        except (IPCError, OSError) as error:
            results.append(
                {"program": program, "version": version, "ready": False, "error": str(error)}
            )
            print(f"unixipc rpcinfo: {error}", file=sys.stderr)
            status = 1
            continue
        results.append({"program": program, "version": version, "ready": True})
    text = "\n".join(
        f"program {r['program']} version {r['version']} "
        + ("ready and waiting" if r["ready"] else "is not available")
        for r in results
    )
    emit(args, {"protocol": args.ping, "results": results}, text)
    return status


def _port(args: argparse.Namespace, program: int) -> int:
    """The port of any version of ``program`` (rpcinfo asks for version 0 the same way)."""
    from ..oncrpc import ProgramNotRegistered, rpcbind

    with rpcbind.RpcbindClient(args.host, timeout=args.timeout) as portmapper:
        for item in portmapper.pmap_dump():
            if item.program == program and item.protocol == args.ping:
                return item.port
    raise ProgramNotRegistered(f"program {program} is not registered with rpcbind on {args.host}")
