"""What the channel tests share: every scheme as an endpoint, and the children's side.

An :class:`Endpoint` hands out connected channels across real processes: for a
pair kind it makes the pair and passes one end to the child (inherited under
fork, pickled by multiprocessing under spawn); for a URL scheme it listens in
the test process and the child connects.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import unixipc
from tests import conftest, nats_support
from tests.conftest import PREFIX, Names
from tests.helpers import Child
from tests.tls_support import session_pki
from unixipc import Channel, Listener
from unixipc import channel as channel_module
from unixipc.channels import registry

# Generous: a busy 2-core machine.
WAIT = 30.0

# Every scheme, from the registry, as test ids: "pair-<kind>" for channel_pair,
# else the URL scheme. Durable conversations (nats+js) are not connections (no
# liveness, one end per listener): tests/test_nats_js.py holds their contract.
URL_SCHEMES = [name for name in channel_module.SCHEMES if not registry.SCHEMES[name].durable]
ALL_SCHEMES = [f"pair-{kind}" for kind in channel_module.PAIR_KINDS] + URL_SCHEMES


def _takes_a_maximum(scheme: str) -> bool:
    if scheme.startswith("pair-"):
        return "max_message_size" in registry.PAIRS[scheme[5:]].options
    return "max_message_size" in registry.SCHEMES[scheme].listen_options


# Options that keep each scheme's maximum small enough to test "the maximum and one
# over" quickly; schemes whose maximum is fixed by the facility take none.
LISTEN_OPTIONS: dict[str, dict[str, Any]] = {
    **{scheme: {"max_message_size": 200_000} for scheme in ALL_SCHEMES if _takes_a_maximum(scheme)},
    "mq": {"max_message_size": 200_000, "backlog": 4},
}
# tls:// needs certificates: a throwaway CA made once per session (tests/tls_support.py).
LISTEN_OPTIONS["tls"] = {**LISTEN_OPTIONS["tls"], "certificate": session_pki().server}
# Small POSIX queues: the per-user RLIMIT_MSGQUEUE is shared with other test runs.
CONNECT_OPTIONS: dict[str, dict[str, Any]] = {
    **LISTEN_OPTIONS,
    "tls": {"max_message_size": 200_000, "ca_file": session_pki().ca},
    "mq": {"max_message_size": 200_000, "queue_length": 4, "queue_message_size": 256},
    # Rings of 64 KiB: messages of 32 KiB - 16 and more travel in pieces.
    "shm": {"capacity": 65536, "max_message_size": 200_000},
    "pair-shm": {"capacity": 65536, "max_message_size": 200_000},
    # A dead peer is noticed after four heartbeats: 2 s; a sender to it blocks
    # once 256 KiB are out (its death is only noticed by silence).
    "nats": {"max_message_size": 200_000, "heartbeat": 0.5, "window": 256 * 1024},
}
LISTEN_OPTIONS["nats"] = CONNECT_OPTIONS["nats"]


def _leftover_sysvmq_tokens() -> list[str]:
    """Liveness tokens of sysvmq:// channels are named after the key, not the prefix."""
    stems = {f"unixipc-sysvmq-{key & 0xFFFFFFFF:08x}" for key in conftest._sysv_keys}
    with contextlib.suppress(FileNotFoundError):
        return [
            f"/dev/shm/{name}" for name in os.listdir("/dev/shm") if name.split(".", 1)[0] in stems
        ]
    return []


conftest.LEAK_CHECKS.append(_leftover_sysvmq_tokens)


@dataclass
class Peer:
    """How a child gets its end: the channel itself, or a URL to connect to."""

    channel: Channel | None = None
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def open(self) -> Channel:
        if self.channel is not None:
            return self.channel
        assert self.url is not None
        return unixipc.connect(self.url, timeout=WAIT, **self.options)


def url_for(scheme: str, names: Names) -> str:
    if scheme == "unix":
        return f"unix://{names.path('sock')}"
    if scheme == "unix-abstract":
        return f"unix-abstract://{names.posix('abstract')[1:]}"
    if scheme in ("tcp", "tls"):
        return f"{scheme}://127.0.0.1:0"
    if scheme == "fifo":
        return f"fifo://{names.path('fifo')}"
    if scheme in ("mq", "shm"):
        return f"{scheme}://{names.posix(scheme)[1:]}"
    if scheme == "sysvmq":
        return f"sysvmq://{names.key():#x}"
    if scheme == "nats":
        return nats_support.shared_server().url(names.posix("nats")[1:])
    raise AssertionError(scheme)


class Endpoint:
    """Connected channels of one scheme between this process and children."""

    def __init__(
        self,
        scheme: str,
        names: Names,
        cleanup: Callable[..., None],
        children: Callable[..., Child],
    ) -> None:
        self.scheme = scheme
        self.options = dict(CONNECT_OPTIONS.get(scheme, {}))
        self._cleanup = cleanup
        self._children = children
        self.listener: Listener | None = None
        if not scheme.startswith("pair-"):
            self.listener = unixipc.listen(url_for(scheme, names), **LISTEN_OPTIONS.get(scheme, {}))
            cleanup(self.listener.close)

    @property
    def is_pair(self) -> bool:
        return self.listener is None

    def start(
        self, function: Callable[..., Any], *args: Any, method: str = "fork"
    ) -> tuple[Child, Channel]:
        """Start ``function(peer, *args)`` in a child; return it and our connected end."""
        if self.listener is None:
            ours, theirs = unixipc.channel_pair(self.scheme[5:], **self.options)
            self._cleanup(ours.close)
            try:
                child = self._children(function, Peer(channel=theirs), *args, method=method)
            finally:
                theirs.close()  # the child has it now; closing our copy says nothing
            return child, ours
        child = self._children(
            function, Peer(url=self.listener.url, options=self.options), *args, method=method
        )
        ours = self._accept_from(child)
        self._cleanup(ours.close)
        return child, ours

    def _accept_from(self, child: Child) -> Channel:
        """Accept, but if the child fails before connecting, report its error at once."""
        assert self.listener is not None
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                return self.listener.accept(timeout=0.2)
            except unixipc.TimeoutExpired:
                if not child.process.is_alive():
                    child.result()  # raises the child's error
                    raise AssertionError("the child finished without connecting") from None
        raise AssertionError(f"no connection from the child within {WAIT} s")

    def connect_here(self) -> tuple[Channel, Channel]:
        """Both ends in this process (for tests that need no second process)."""
        if self.listener is None:
            ours, theirs = unixipc.channel_pair(self.scheme[5:], **self.options)
        else:
            holder: list[Channel] = []
            import threading

            thread = threading.Thread(
                target=lambda: holder.append(
                    unixipc.connect(self.listener.url, timeout=WAIT, **self.options)  # type: ignore[union-attr]
                )
            )
            thread.start()
            ours = self.listener.accept(timeout=WAIT)
            thread.join(WAIT)
            theirs = holder[0]
        self._cleanup(ours.close)
        self._cleanup(theirs.close)
        return ours, theirs


# The fixtures of the channel tests (loaded by conftest.py as a plugin).


@pytest.fixture(scope="session", autouse=True)
def _nats_servers() -> Any:
    """Every nats-server a test started is killed at the end of the session."""
    yield
    nats_support.stop_all()


def _endpoints(name: str, schemes: list[str]) -> Any:
    """A fixture named ``name`` giving an Endpoint of each of ``schemes`` in turn."""

    @pytest.fixture(name=name, params=schemes)
    def fixture(
        request: pytest.FixtureRequest,
        names: Names,
        cleanup: Callable[..., None],
        children: Callable[..., Child],
    ) -> Endpoint:
        return Endpoint(request.param, names, cleanup, children)

    return fixture


endpoint = _endpoints("endpoint", ALL_SCHEMES)  # connected channels of every scheme
url_endpoint = _endpoints("url_endpoint", URL_SCHEMES)  # a listener of every URL scheme


def start_when_ready(
    children: Callable[..., Child], function: Callable[..., Any], *args: Any
) -> Child:
    """A child running ``function(*args, told)``; returns once it wrote b"!" to ``told``."""
    ready, told = os.pipe()
    try:
        child = children(function, *args, told)
        assert os.read(ready, 1) == b"!"
    finally:
        os.close(ready)
        os.close(told)
    return child


def close_quietly(*channels: Channel) -> None:
    for channel in channels:
        with contextlib.suppress(Exception):
            channel.close()


__all__ = ["ALL_SCHEMES", "PREFIX", "URL_SCHEMES", "WAIT", "Endpoint", "Peer", "url_for"]
