"""unixipc.rpc with codec="pickle": only over a channel whose peer proved the shared
secret (issue 14.2 and the pickle gate of issue 17). A client that knows the secret
calls from another process; one that does not is refused, and pickle never runs on
its bytes."""

from __future__ import annotations

import fractions
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import unixipc
from tests.channel_support import url_for
from tests.conftest import Names
from tests.rpc_support import CONNECT_OPTIONS, LISTEN_OPTIONS, WAIT
from unixipc import rpc
from unixipc.channels import auth

SECRET = b"the rpc test secret, 32 bytes!!!"

# The client: another process, which knows the secret only from its environment.
CLIENT = """
import fractions, json, os, sys
from unixipc import rpc
options = json.loads(sys.argv[2])
secret = bytes.fromhex(os.environ["RPC_SECRET"])
with rpc.connect(sys.argv[1], timeout=30, codec="pickle", secret=secret, **options) as client:
    third = client.call("scale", fractions.Fraction(1, 3), 2)  # not msgpack nor JSON
    assert third == fractions.Fraction(2, 3) and type(third) is fractions.Fraction, third
    print(client.call("pid"))
"""


class _Planted:
    """Unpickling this creates ``path``: proof that pickle ran on the bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


@pytest.mark.parametrize("scheme", ["unix", "shm"])
def test_pickle_rpc_needs_the_secret(scheme: str, names: Names, tmp_path: Path) -> None:
    server = rpc.Server(
        url_for(scheme, names), codec="pickle", secret=SECRET, **LISTEN_OPTIONS[scheme]
    )

    @server.function
    def scale(value: fractions.Fraction, factor: int) -> fractions.Fraction:
        return value * factor

    @server.function
    def pid() -> int:
        return os.getpid()

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # The right secret, from another process.
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, server.url, _json(CONNECT_OPTIONS[scheme])],
            env={**os.environ, "RPC_SECRET": SECRET.hex()},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) == os.getpid()  # the calls ran here, in the server

        # Without the secret, the client's own gate refuses pickle before sending...
        options = CONNECT_OPTIONS[scheme]
        with pytest.raises(ValueError, match="only on an authenticated channel"):
            rpc.connect(server.url, timeout=WAIT, codec="pickle", **options)
        # ...a wrong secret fails the handshake...
        with pytest.raises(unixipc.AuthenticationError, match="refused our proof"):
            rpc.connect(server.url, timeout=WAIT, codec="pickle", secret=b"x" * 32, **options)
        # ...and a hostile client that skips the handshake and sends pickles anyway
        # is dropped: none of its bytes is ever unpickled.
        marker = tmp_path / "pickle ran"
        planted = pickle.dumps(_Planted(marker))
        with unixipc.connect(server.url, timeout=WAIT, **options) as raw:
            assert raw.receive(timeout=WAIT).startswith(auth.CHALLENGE)
            for message in (b"unixipc-rpc/1 pickle", planted, planted):
                try:
                    raw.send(message, timeout=WAIT)
                except (unixipc.EndOfChannel, unixipc.PeerDied):
                    break
            assert raw.receive(timeout=WAIT) == auth.REFUSED
            with pytest.raises((unixipc.EndOfChannel, unixipc.PeerDied)):
                raw.receive(timeout=WAIT)
        assert not marker.exists()

        # The server still serves those who know the secret.
        with rpc.connect(
            server.url, timeout=WAIT, codec="pickle", secret=SECRET, **options
        ) as client:
            assert client.call("scale", fractions.Fraction(3, 4), 4) == 3
        assert not marker.exists()
    finally:
        server.close()
        thread.join(WAIT)


def _json(options: dict[str, Any]) -> str:
    import json

    return json.dumps(options)
