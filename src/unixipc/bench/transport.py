"""What every benchmarked transport provides: a small adapter, and the plan of one run.

An adapter (a :class:`Transport` subclass) knows how to set up one facility or
library between two processes and gives each process a :class:`Link` with
``send``/``receive``. Everything else (processes, pinning, timing, CPU time,
time limits, cleanup after a kill) is the harness's job, so an adapter stays a
few dozen lines. Adapters are listed in one place, :mod:`unixipc.bench.registry`.

The harness runs each measurement in a fresh *driver* process that calls
:meth:`Transport.setup`, forks the *peer* process, then:

- the peer calls :meth:`Transport.serve` (which announces an address once it
  can be reached and returns its link when connected);
- the driver calls :meth:`Transport.connect` with that address;
- finally the driver calls :meth:`Transport.cleanup`; the harness calls it again
  after killing a run that hung, so it must work from the plan alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

Test = Literal["latency", "throughput"]
Family = Literal["unixipc", "peer", "C"]
#: What a row measures: messages, or remote procedure calls (compared with RPC peers only).
Workload = Literal["messages", "calls"]
Placement = Literal["cross-core", "same-core", "unpinned"]
Role = Literal["driver", "peer"]

TESTS: tuple[Test, ...] = ("latency", "throughput")
FAMILIES: tuple[Family, ...] = ("unixipc", "peer", "C")
PLACEMENTS: tuple[Placement, ...] = ("cross-core", "same-core", "unpinned")

#: Messages whose first byte is END end a run (the echo stops, the stream ends).
DATA, END = 0, 1

#: Bytes in flight that bounded queues and rings are given: the same for every
#: transport that takes a capacity, so none wins by buffering more.
RING_MIN_CAPACITY = 2 << 20


def buffer_capacity(size: int) -> int:
    """Bytes a transport may buffer for messages of ``size`` bytes (at least 4 messages)."""
    return max(RING_MIN_CAPACITY, 4 * size)


def messages_in_flight(size: int, limit: int | None = None) -> int:
    """How many ``size``-byte messages fit in :func:`buffer_capacity` (capped at ``limit``)."""
    count = buffer_capacity(size) // size
    return count if limit is None else max(1, min(count, limit))


class Unsupported(Exception):
    """Raised by an adapter when this configuration cannot run; the row is skipped."""


@dataclass
class Plan:
    """Everything one run needs to know, serializable so a fresh process can get it."""

    transport: str
    adapter: str  # "module:QualifiedName" of the Transport subclass
    test: Test
    size: int
    placement: Placement
    seconds: float
    driver_cpu: int | None
    peer_cpu: int | None
    prefix: str  # unique per run: every named object starts with it
    workdir: str  # a private directory for FIFOs, sockets and files
    sysv_key: int  # an unused System V key reserved for this run
    python_path: list[str] = field(default_factory=list)

    def posix_name(self, stem: str) -> str:
        """A POSIX IPC name (shared memory, queues, semaphores) unique to this run."""
        return f"/{self.prefix}_{stem}"

    def path(self, stem: str) -> str:
        """A filesystem path unique to this run."""
        return f"{self.workdir}/{self.prefix}_{stem}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(**data)


class Link:
    """One process's end of a transport, as the measurement loops use it.

    ``receive`` returns one whole message as a bytes-like object that stays valid
    until the next call (a reused buffer is fine). Batch adapters override
    ``send_batch``/``receive_batch``.
    """

    def send(self, data: Any) -> None:
        raise NotImplementedError

    def receive(self) -> Any:
        raise NotImplementedError

    def send_batch(self, data: bytes, count: int) -> None:
        """Send ``count`` copies of ``data``."""
        for _ in range(count):
            self.send(data)

    def receive_batch(self) -> Sequence[Any]:
        """Receive at least one message."""
        return (self.receive(),)

    def close(self) -> None:
        """Flush what was sent and release this end."""


class AsyncLink(Link):
    """A link whose ends are awaited: the latency loops run in one asyncio event
    loop on each side (``asyncio.run``), awaiting ``asend`` and ``areceive``."""

    async def asend(self, data: Any) -> None:
        raise NotImplementedError

    async def areceive(self) -> Any:
        raise NotImplementedError


class Transport:
    """A benchmarked transport; subclasses set the class attributes and override methods."""

    #: Short, stable name used on the command line and in JSON (``pipe``, ``zmq-ipc``).
    name: ClassVar[str] = ""
    family: ClassVar[Family] = "peer"
    workload: ClassVar[Workload] = "messages"
    #: One line: which API is measured.
    summary: ClassVar[str] = ""
    tests: ClassVar[tuple[Test, ...]] = TESTS
    #: Uses send_batch/receive_batch when streaming.
    batch: ClassVar[bool] = False
    #: Shown for reference but never used as the limit in ratios (memcpy).
    reference_only: ClassVar[bool] = False
    #: Python modules the adapter needs; a missing one skips it with the reason.
    requires: ClassVar[tuple[str, ...]] = ()
    #: Shown when a required module is missing.
    install_hint: ClassVar[str] = "pip install 'unixipc[bench]'"

    @classmethod
    def spec(cls) -> str:
        return f"{cls.__module__}:{cls.__qualname__}"

    def unavailable(self) -> str | None:
        """Why this transport cannot run here at all, or None."""
        for module in self.requires:
            try:
                importlib.import_module(module)
            except ImportError as error:
                return f"{module} is not importable ({error}); {self.install_hint}"
        return None

    def max_size(self) -> int | None:
        """The largest message this transport carries in one piece (None: no limit)."""
        return None

    def command(self, plan: Plan) -> list[str] | None:
        """A program that performs the whole run itself (the C baseline), or None."""
        return None

    # In the driver, before the peer is forked.
    def setup(self, plan: Plan) -> None:
        """Create what both processes inherit or open (named objects, pipes)."""

    # In the peer.
    def serve(self, plan: Plan, announce: Callable[[str], None]) -> Link:
        """Make this process reachable, ``announce(address)``, and return its link."""
        announce("")
        return self.open(plan, "peer", "")

    # In the driver.
    def connect(self, plan: Plan, address: str) -> Link:
        """Return the driver's link, given what the peer announced."""
        return self.open(plan, "driver", address)

    def open(self, plan: Plan, role: Role, address: str) -> Link:
        """Shortcut for adapters whose two sides open alike."""
        raise NotImplementedError

    # In the driver at the end, and in the harness after a kill.
    def cleanup(self, plan: Plan) -> None:
        """Remove every named object the run may have created (idempotent)."""


def load_transport(spec: str) -> Transport:
    """Instantiate the adapter named ``module:QualifiedName``."""
    module_name, _, qualname = spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    transport = target()
    if not isinstance(transport, Transport):
        raise TypeError(f"{spec} is not a unixipc.bench Transport")
    return transport
