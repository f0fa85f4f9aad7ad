"""Sun RPC rows: NULL calls and 64-byte echoes over TCP and UDP to one C server
(built by rpcgen), from the Python client and from the C client.

Each run is :mod:`unixipc.bench.oncrpc_peers` in a process group of its own
(the harness kills the group, C server included, at the time limit).
"""

from __future__ import annotations

import json
import sys
from typing import ClassVar

from ..oncrpc_peers import build
from ..transport import Family, Plan, Test, Transport


class _SunRpc(Transport):
    tests: ClassVar[tuple[Test, ...]] = ("latency",)
    client: ClassVar[str] = "python"
    call: ClassVar[str] = "null"
    protocol: ClassVar[str] = "tcp"

    def unavailable(self) -> str | None:
        built = build()
        return built if isinstance(built, str) else None

    def command(self, plan: Plan) -> list[str]:
        return [
            sys.executable,
            "-m",
            "unixipc.bench.oncrpc_peers",
            json.dumps(plan.to_json()),
            self.client,
            self.call,
            self.protocol,
        ]


class _PythonClient(_SunRpc):
    family: ClassVar[Family] = "unixipc"


class _CClient(_SunRpc):
    family: ClassVar[Family] = "C"
    client = "c"


class SunRpcNullTcp(_PythonClient):
    name = "oncrpc-null-tcp"
    summary = "Sun RPC NULL call over TCP: unixipc.oncrpc.Client -> C server (rpcgen)"


class SunRpcNullUdp(_PythonClient):
    name = "oncrpc-null-udp"
    summary = "Sun RPC NULL call over UDP: unixipc.oncrpc.Client -> C server (rpcgen)"
    protocol = "udp"


class SunRpcEchoTcp(_PythonClient):
    name = "oncrpc-echo-tcp"
    summary = "Sun RPC 64 B echo over TCP: unixipc.oncrpc.Client -> C server (rpcgen)"
    call = "echo"


class SunRpcEchoUdp(_PythonClient):
    name = "oncrpc-echo-udp"
    summary = "Sun RPC 64 B echo over UDP: unixipc.oncrpc.Client -> C server (rpcgen)"
    call, protocol = "echo", "udp"


class CSunRpcNullTcp(_CClient):
    name = "c-oncrpc-null-tcp"
    summary = "Sun RPC NULL call over TCP: C client (libtirpc) -> the same C server"


class CSunRpcNullUdp(_CClient):
    name = "c-oncrpc-null-udp"
    summary = "Sun RPC NULL call over UDP: C client (libtirpc) -> the same C server"
    protocol = "udp"


class CSunRpcEchoTcp(_CClient):
    name = "c-oncrpc-echo-tcp"
    summary = "Sun RPC 64 B echo over TCP: C client (libtirpc) -> the same C server"
    call = "echo"


class CSunRpcEchoUdp(_CClient):
    name = "c-oncrpc-echo-udp"
    summary = "Sun RPC 64 B echo over UDP: C client (libtirpc) -> the same C server"
    call, protocol = "echo", "udp"
