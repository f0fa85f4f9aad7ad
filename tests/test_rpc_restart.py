"""A restarted RPC server: the process that owns the listener is SIGKILLed mid-call
and a new process takes its URL over (part of the conformance suite of test_rpc.py,
over every scheme: a dead listener's names are reclaimed by the next ``listen``).
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Callable

import pytest

import unixipc
from tests.conftest import Names
from tests.helpers import Child
from tests.rpc_support import CONNECT_OPTIONS, SCHEMES, WAIT, make_server, url_for
from unixipc import rpc


def _serve_until_told(url: str, scheme: str, told: int, stop: int, stop_write: int) -> str:
    """Child: own the listener and serve; write the URL to ``told`` once serving, and
    b"!" when a call of "hold" arrives; close the server at the end of ``stop``."""
    os.close(stop_write)  # inherited: the test's copy alone decides when to stop
    server, _ = make_server(url, scheme)

    @server.function
    def hold() -> None:
        os.write(told, b"!")
        time.sleep(3 * WAIT)  # killed before

    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.write(told, server.url.encode() + b"\n")
    os.read(stop, 1)
    server.close()
    return "closed"


class _ServerProcess:
    """A server in a child process that owns its listener."""

    def __init__(self, children: Callable[..., Child], url: str, scheme: str) -> None:
        self.reports, told = os.pipe()
        stop, self._stop = os.pipe()
        try:
            self.child = children(_serve_until_told, url, scheme, told, stop, self._stop)
        finally:
            os.close(told)
            os.close(stop)
        line = b""
        while not line.endswith(b"\n"):
            part = self.report()
            assert part, "the server process died before serving"
            line += part
        self.url = line[:-1].decode()

    def report(self) -> bytes:
        """What the server wrote to the test next (b"" once it ended)."""
        readable, _, _ = select.select([self.reports], [], [], WAIT)
        assert readable, f"the server process said nothing within {WAIT} s"
        return os.read(self.reports, 4096)

    def stop(self) -> str:
        """Close the server (it must still live) and wait for its process to end."""
        os.close(self._stop)
        os.close(self.reports)
        result: str = self.child.result()
        return result

    def kill(self) -> None:
        os.kill(self.child.pid, signal.SIGKILL)
        self.child.process.join(WAIT)
        os.close(self._stop)
        os.close(self.reports)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_server_process_killed_and_replaced(
    scheme: str, names: Names, children: Callable[..., Child]
) -> None:
    # The listener belongs to the process that dies; a new process takes its URL over.
    options = CONNECT_OPTIONS.get(scheme, {})
    first = _ServerProcess(children, url_for(scheme, names), scheme)
    client = rpc.connect(first.url, timeout=WAIT, **options)
    assert client.call("add", 1, 2) == 3
    outcome: list[BaseException] = []

    def call_held() -> None:
        try:
            client.call("hold")
        except BaseException as error:
            outcome.append(error)

    caller = threading.Thread(target=call_held)
    caller.start()
    assert first.report() == b"!"  # the call is running in the server
    first.kill()
    caller.join(WAIT)
    assert len(outcome) == 1
    assert isinstance(outcome[0], unixipc.PeerDied), outcome
    with pytest.raises(unixipc.PeerDied):
        client.call("add", 1, 2)  # sticky: a client does not reconnect by itself
    client.close()

    second = _ServerProcess(children, first.url, scheme)  # the same URL, taken over
    assert second.url == first.url
    with rpc.connect(first.url, timeout=WAIT, **options) as again:
        assert again.call("add", 2, 2) == 4
    assert second.stop() == "closed"
