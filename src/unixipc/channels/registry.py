"""The table of schemes: from a URL scheme or a pair kind to its driver (private).

A new scheme is one driver module plus one entry here: its address parser, its
``listen`` and ``connect``, and the options each takes, declared once in the
driver with their defaults and checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .._deadline import Deadline
from . import auth, fifo, mq, nats, natsjs, pipe, shm, socket, sysvmq, tls
from .core import Channel, Listener, Option, establish, take_options
from .url import split_url


@dataclass(frozen=True)
class Scheme:
    """A URL scheme: how to parse its address, listen, connect, and with which options."""

    name: str
    parse: Callable[[str, str], Any]
    listen: Callable[[str, Any, dict[str, Any]], Listener]
    connect: Callable[[str, Any, Deadline, dict[str, Any]], Channel]
    listen_options: dict[str, Option]
    connect_options: dict[str, Option]
    #: A durable conversation (``nats+js``) rather than a connection: no liveness,
    #: one end per listener (the channel suites, about connections, leave it out).
    durable: bool = False


@dataclass(frozen=True)
class PairKind:
    """A kind of channel_pair: how to make the two ends, and with which options."""

    name: str
    make: Callable[[dict[str, Any]], tuple[Channel, Channel]]
    options: dict[str, Option]


def _secured(scheme: Scheme) -> Scheme:
    """Every scheme takes the options of :mod:`.auth` (a shared secret) too."""
    return replace(
        scheme,
        listen_options={**scheme.listen_options, **auth.OPTIONS},
        connect_options={**scheme.connect_options, **auth.OPTIONS},
    )


SCHEMES: dict[str, Scheme] = {
    scheme.name: _secured(scheme)
    for scheme in (
        Scheme("fifo", fifo.parse, fifo.listen, fifo.connect, fifo.OPTIONS, fifo.OPTIONS),
        Scheme("mq", mq.parse, mq.listen, mq.connect, mq.LISTEN_OPTIONS, mq.CONNECT_OPTIONS),
        Scheme(
            "sysvmq",
            sysvmq.parse,
            sysvmq.listen,
            sysvmq.connect,
            sysvmq.LISTEN_OPTIONS,
            sysvmq.CONNECT_OPTIONS,
        ),
        Scheme(
            "unix",
            socket.parse_unix,
            socket.listen_unix,
            socket.connect_unix,
            socket.UNIX_LISTEN_OPTIONS,
            socket.UNIX_CONNECT_OPTIONS,
        ),
        Scheme(
            "unix-abstract",
            socket.parse_abstract,
            socket.listen_abstract,
            socket.connect_abstract,
            socket.ABSTRACT_LISTEN_OPTIONS,
            socket.ABSTRACT_CONNECT_OPTIONS,
        ),
        Scheme(
            "tcp",
            socket.parse_tcp,
            socket.listen_tcp,
            socket.connect_tcp,
            socket.TCP_LISTEN_OPTIONS,
            socket.CONNECT_OPTIONS,
        ),
        Scheme("shm", shm.parse, shm.listen, shm.connect, shm.LISTEN_OPTIONS, shm.CONNECT_OPTIONS),
        Scheme("tls", tls.parse, tls.listen, tls.connect, tls.LISTEN_OPTIONS, tls.CONNECT_OPTIONS),
        Scheme(
            "nats", nats.parse, nats.listen, nats.connect, nats.LISTEN_OPTIONS, nats.CONNECT_OPTIONS
        ),
        Scheme(
            "nats+js",
            natsjs.parse,
            natsjs.listen,
            natsjs.connect,
            natsjs.LISTEN_OPTIONS,
            natsjs.CONNECT_OPTIONS,
            durable=True,
        ),
    )
}

PAIRS: dict[str, PairKind] = {
    kind.name: kind
    for kind in (
        PairKind("pipe", pipe.pair, pipe.PAIR_OPTIONS),
        PairKind("socketpair", socket.pair, socket.PAIR_OPTIONS),
        PairKind("shm", shm.pair, shm.PAIR_OPTIONS),
    )
}


def parse_url(url: str) -> tuple[Scheme, Any]:
    """The scheme of ``url`` and the address its driver parsed from it."""
    name, rest = split_url(url)
    scheme = SCHEMES.get(name)
    if scheme is None:
        raise ValueError(
            f"url must be scheme://address with scheme one of {', '.join(SCHEMES)}; got {url!r}"
        )
    if not rest:
        raise ValueError(f"url {url!r} has no address")
    return scheme, scheme.parse(url, rest)


def listen(url: str, options: dict[str, Any]) -> Listener:
    scheme, address = parse_url(url)
    opts = take_options(scheme.name, "listen", options, scheme.listen_options)
    gate = auth.gate(opts)
    listener = scheme.listen(url, address, opts)
    if gate is not None:
        listener._require(gate)
    return listener


def connect(url: str, deadline: Deadline, options: dict[str, Any]) -> Channel:
    """connect() with a deadline made by the caller (unixipc.aio cancels through it)."""
    scheme, address = parse_url(url)
    opts = take_options(scheme.name, "connect", options, scheme.connect_options)
    gate = auth.gate(opts)
    channel = scheme.connect(url, address, deadline, opts)
    return establish(channel, gate, server=False, deadline=deadline)


def pair(kind: str, options: dict[str, Any]) -> tuple[Channel, Channel]:
    found = PAIRS.get(kind)
    if found is None:
        raise ValueError(f"kind must be one of {', '.join(map(repr, PAIRS))}; got {kind!r}")
    return found.make(take_options(kind, "channel_pair", options, found.options))
