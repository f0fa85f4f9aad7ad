"""Two hosts, simulated: network namespaces joined by a veth pair, with delay and loss.

Host A (namespace one) runs the server side of ``examples/echo_any_url.py`` (and,
for ``nats://``, the nats-server); host B (namespace two) runs its clients. The
same program goes over ``tcp://`` and ``nats://`` while both ends of the link
delay and drop packets, and every answer must still arrive, whole and in order
(each client checks each answer). ``tc netem`` (delay 5 ms, loss 2%) where the
kernel has it; a kernel built without it (CONFIG_NET_SCH_NETEM unset, as on the
project's test machine) gets a ``tbf`` rate limit (queueing delay) and an
nftables rule dropping 2% of the packets at random instead. Needs root
(CAP_NET_ADMIN), as CI has; the namespaces (unique names) are deleted at the
end, also on failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import nats_support
from tests.conftest import PREFIX

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="making network namespaces needs root (CAP_NET_ADMIN)"
)

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "echo_any_url.py")
HOST_A, HOST_B = "192.0.2.1", "192.0.2.2"  # TEST-NET-1: only inside our namespaces
CLIENTS, REQUESTS = 2, 40
WAIT = 120.0


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, timeout=30)


@pytest.fixture
def hosts() -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth pair with netem (delay 5 ms, loss 2%) on both ends."""
    one, two = f"{PREFIX}_a", f"{PREFIX}_b"
    veth = f"ux{os.getpid() % 100000}"
    made: list[str] = []
    try:
        for namespace in (one, two):
            _ip("netns", "add", namespace)
            made.append(namespace)
        _ip("link", "add", f"{veth}a", "type", "veth", "peer", "name", f"{veth}b")
        for namespace, end, address in ((one, "a", HOST_A), (two, "b", HOST_B)):
            device = f"{veth}{end}"
            _ip("link", "set", device, "netns", namespace)
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", device)
            _ip("-n", namespace, "link", "set", device, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            _impair(namespace, device)
        yield one, two
    finally:
        for namespace in made:  # its end of the veth pair goes with it
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


def _run_in(namespace: str, *command: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *command], capture_output=True, timeout=30
    )


def _impair(namespace: str, device: str) -> None:
    """Delay and drop what leaves ``device``: netem, or tbf and an nftables rule."""
    netem = ("tc", "qdisc", "add", "dev", device, "root", "netem", "delay", "5ms", "loss", "2%")
    if _run_in(namespace, *netem).returncode == 0:
        return
    shaping = ("tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", "4mbit")
    assert _run_in(namespace, *shaping, "burst", "16kb", "latency", "50ms").returncode == 0
    drop = ("numgen", "random", "mod", "100", "<", "2", "drop")
    for rule in (
        ("add", "table", "inet", "lossy"),
        ("add", "chain", "inet", "lossy", "out", "{ type filter hook output priority 0; }"),
        ("add", "rule", "inet", "lossy", "out", "oifname", device, *drop),
    ):
        made = _run_in(namespace, "nft", *rule)
        assert made.returncode == 0, made.stderr


def _in(namespace: str, *arguments: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, sys.executable, EXAMPLE, *arguments]


def _echo_across(hosts: tuple[str, str], url: str) -> None:
    one, two = hosts
    server = subprocess.Popen(
        _in(one, "serve", url, str(CLIENTS), str(REQUESTS)), stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("serving ")  # listening now
        clients = subprocess.run(
            _in(two, "clients", url, str(CLIENTS), str(REQUESTS)),
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert clients.returncode == 0, clients.stderr
        expected = CLIENTS * REQUESTS
        assert f"answers verified {expected}, expected {expected}" in clients.stdout
        rest, _ = server.communicate(timeout=WAIT)
        assert server.returncode == 0
        assert f"served {CLIENTS} clients; failed servers 0" in rest
    finally:
        server.kill()
        server.wait()


def test_the_echo_program_across_hosts_over_tcp(hosts: tuple[str, str]) -> None:
    _echo_across(hosts, f"tcp://{HOST_A}:5000")


def test_the_echo_program_across_hosts_over_nats(hosts: tuple[str, str]) -> None:
    with nats_support.NatsServer(address=HOST_A, netns=hosts[0]) as server:
        _echo_across(hosts, server.url("echo"))
