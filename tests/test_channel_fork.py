"""Channels across fork behave like inherited descriptors, on every scheme.

A forked child inherits every open channel. Three textbook cases decide who ends
a conversation: the forking server (the parent closes its copy at once and the
child goes on), a bystander child (the parent goes on and closes; the child's
copy must not keep the conversation open), and a child that dies before it uses
its copy (the peer must learn it instead of waiting forever).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from tests.channel_support import WAIT, Endpoint
from tests.helpers import Child
from unixipc import Channel, EndOfChannel, PeerDied


def _connected(endpoint: Endpoint) -> tuple[Channel, Channel]:
    """Two ends in this process that have both spoken."""
    ours, theirs = endpoint.connect_here()
    ours.send(b"hello", timeout=WAIT)
    assert theirs.receive(timeout=WAIT) == b"hello"
    theirs.send(b"hello back", timeout=WAIT)
    assert ours.receive(timeout=WAIT) == b"hello back"
    return ours, theirs


def _serve_inherited(channel: Channel) -> int:
    """The forked server's child: answer until the client closes, then close."""
    answered = 0
    while True:
        try:
            request = channel.receive(timeout=WAIT)
        except EndOfChannel:
            channel.close()
            return answered
        channel.send(request.upper(), timeout=WAIT)
        answered += 1


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def test_forking_server_parent_closes_at_once_and_the_child_goes_on(
    endpoint: Endpoint, children: Callable[..., Child]
) -> None:
    ours, theirs = _connected(endpoint)
    server = children(_serve_inherited, ours)
    ours.close()  # the parent's copy, right after the fork: must say nothing
    for index in range(20):
        theirs.send(b"request %d" % index, timeout=WAIT)
        assert theirs.receive(timeout=WAIT) == b"REQUEST %d" % index
    theirs.close()
    assert server.result() == 20


def test_a_bystander_childs_copy_does_not_delay_the_end(
    endpoint: Endpoint, children: Callable[..., Child]
) -> None:
    ours, theirs = _connected(endpoint)
    bystander = children(_sleep, 3 * WAIT)  # inherits `ours` and never touches it
    ours.send(b"last", timeout=WAIT)  # the parent goes on with the conversation
    ours.close()
    assert theirs.receive(timeout=WAIT) == b"last"
    with pytest.raises(EndOfChannel):
        theirs.receive(timeout=WAIT)
    assert bystander.process.is_alive()  # the end came from our close, not its exit
    bystander.kill()


def test_a_child_killed_before_using_its_copy_is_a_dead_peer(
    endpoint: Endpoint, children: Callable[..., Child]
) -> None:
    ours, theirs = _connected(endpoint)
    child = children(_sleep, 3 * WAIT)
    ours.close()  # handed over to the child...
    os.kill(child.pid, signal.SIGKILL)  # ...which dies before it says anything
    child.process.join(WAIT)
    with pytest.raises(PeerDied):
        theirs.receive(timeout=WAIT)
