"""``nats+js://[user:pass@]host:port/NAME``: a durable conversation in NATS JetStream (driver).

What a *connection* is here: one durable conversation named ``NAME`` between a
listener's end and a client's end, stored by the server in the stream
``UNIXIPC_NAME`` (subjects ``unixipc.NAME.up``, client to listener, and
``unixipc.NAME.down``). It outlives the processes: either end may be killed and
come back (``listen`` + ``accept``, or ``connect``, on the same URL) and goes on
from the first message it had not finished with. ``listen`` makes the stream
(if it is not there yet), ``connect`` needs it (else ECONNREFUSED), and a
listener accepts one end: the conversation (a second ``accept`` waits, then
times out). The stream is a work queue: a message is removed once its receiver
has finished with it, and stays (durably, on the server's disk) until then.

- *At least once, each message once per run*: a message is acknowledged when its
  receiver asks for the next one (or closes), before that one is handed out, so a
  receiver killed while it handled a message gets that message again when it comes
  back, then the rest, in order: on binding, the end replaces its durable consumer
  with one that starts at the first unacknowledged message. Messages the server
  redelivers to a live end (one slower than the consumer's ``ack_wait``) are
  dropped by their stream sequence number; a send that must be repeated (no
  confirmation in time) carries the same ``Nats-Msg-Id``, which the server's
  duplicate window drops.
- *Sends* wait for the server's confirmation (a round trip), whatever their
  timeout: a message is stored when ``send`` returns, and there is no
  backpressure other than the server's limits. A server that does not confirm
  within 10 s ends the channel with :class:`IPCError`.
- *Ends*: ``close()`` stores a GOODBYE after the last message, which gives the
  peer :class:`EndOfChannel`. A peer's death is no end here (its messages are
  kept and it may come back): there is no :class:`PeerDied`.
- Messages longer than the servers' ``max_payload`` go as pieces (:mod:`.pieces`),
  acknowledged together once the whole message was received.
- An end cannot be used by a forked child or passed to one: connect there.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
from collections import deque
from typing import TYPE_CHECKING, Any

from .. import _nats
from .._deadline import Deadline
from ..errors import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    TimeoutExpired,
    UnsupportedFeature,
    WouldBlock,
)
from .core import (
    MAX_SPLIT,
    RECEIVE,
    SEND,
    Channel,
    LinkBase,
    LinkEnded,
    Listener,
    Option,
    PeerState,
    WaitSpec,
    Waker,
    max_size_option,
    refused,
)
from .nats import TLS_OPTIONS, Address, server_of
from .nats import parse as parse_nats
from .pieces import PieceChannel

if TYPE_CHECKING:
    from typing_extensions import Buffer

_DATA, _GOODBYE = b"\x01", b"\x02"
# Room left in each message for the kind byte and the Nats-Msg-Id header.
_OVERHEAD = 256
# How long a send waits for the server to store it, and a fetch slice.
_CONFIRM_WAIT = 10.0
_SLICE = 0.2
# Messages asked for at once.
_BATCH = 64
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def parse(url: str, rest: str) -> Address:
    """``[user[:password]@]host[:port][,...]/NAME``: NAME of letters, digits, ``_``, ``-``."""
    address = parse_nats(url, rest, "nats+js")
    if not _NAME.fullmatch(address.subject):
        raise ValueError(
            f"nats+js:// names a conversation with 1 to 64 letters, digits, _ or -: {url!r}"
        )
    return address


def _stream(name: str) -> str:
    return f"UNIXIPC_{name}"


class JetStreamLink(LinkBase):
    """One end of a durable conversation (see the module docstring)."""

    probe_interval = None
    direct = False

    def __init__(self, url: str, connection: _nats.Connection, name: str, client: bool) -> None:
        super().__init__()
        self._url = url
        self._connection = connection
        self._owner = connection.owner
        self._pid = os.getpid()
        self._name = name
        self._send_subject = f"unixipc.{name}.{'up' if client else 'down'}"
        self._receive_subject = f"unixipc.{name}.{'down' if client else 'up'}"
        self._durable = f"{name}_{'down' if client else 'up'}"
        self._js = connection.client.jetstream()
        self._sender = secrets.token_hex(8)  # with a counter: each piece's Nats-Msg-Id
        self._count = 0
        self._subscription: Any = None
        self._rx: deque[tuple[bytes, Any]] = deque()  # (kind + piece, message) fetched
        self._highest = 0  # stream sequence of the last message fetched
        self._taken: list[Any] = []  # pieces of the messages taken since the last ack
        self._finished = 0  # of them, the ones of whole messages
        self._ending: tuple[type[IPCError], str] | None = None
        self._closing = False
        self.piece_size = self.rx_piece_size = connection.max_payload - _OVERHEAD

    async def bind(self) -> None:
        """Replace our durable consumer by one that starts at the first message not done."""
        from nats.js import api
        from nats.js.errors import NotFoundError

        with contextlib.suppress(NotFoundError):
            await self._js.delete_consumer(_stream(self._name), self._durable)
        config = api.ConsumerConfig(
            durable_name=self._durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            filter_subject=self._receive_subject,
            max_ack_pending=-1,
        )
        self._subscription = await self._js.pull_subscribe(
            self._receive_subject, durable=self._durable, stream=_stream(self._name), config=config
        )

    def _run(self, coroutine: Any, timeout: float, what: str) -> Any:
        try:
            return self._owner.run(coroutine, timeout, f"{what} on {self._url}")
        except (WouldBlock, TimeoutExpired):
            raise
        except Exception as error:
            raise LinkEnded(IPCError, f"JetStream refused to {what}: {error}") from None

    # Sending: stored when put returns.

    def put(self, piece: Buffer, *, timeout: float | None) -> None:
        self.inside[SEND] = True
        try:
            self._check()
            self._publish(_DATA + bytes(piece))
        finally:
            self.inside[SEND] = False

    def _publish(self, data: bytes) -> None:
        self._count += 1
        headers = {"Nats-Msg-Id": f"{self._sender}-{self._count}"}
        for _ in range(3):  # the same id each time: the server keeps one copy
            try:
                self._run(
                    self._js.publish(
                        self._send_subject, data, headers=headers, timeout=_CONFIRM_WAIT / 3
                    ),
                    _CONFIRM_WAIT,
                    "store a message",
                )
                return
            except LinkEnded as error:
                if "timeout" not in error.detail.lower():
                    raise
        raise LinkEnded(IPCError, f"JetStream did not store a message within {_CONFIRM_WAIT:g} s")

    def _check(self) -> None:
        if self._closing:
            raise ClosedResourceError
        if self._ending is not None:
            raise LinkEnded(*self._ending)

    # Receiving.

    def take(self, *, timeout: float | None) -> bytes:
        self.inside[RECEIVE] = True
        try:
            self._acknowledge()
            deadline = Deadline(timeout)
            while not self._rx:
                self._check()
                left = deadline.remaining()
                if left is not None and left <= 0 and deadline.timeout != 0:
                    raise TimeoutExpired
                self._fetch(_SLICE if left is None else max(0.001, min(_SLICE, left)))
                if not self._rx and deadline.timeout == 0:
                    raise WouldBlock
            data, message = self._rx.popleft()
            self._taken.append(message)
            if data[:1] == _GOODBYE:
                self._ending = (EndOfChannel, "the peer closed the channel")
                self._finished = len(self._taken)
                raise EndOfChannel
            piece = data[1:]
            if len(piece) < self.rx_piece_size:
                self._finished = len(self._taken)  # a whole message: acknowledged at the next take
            return piece
        finally:
            self.inside[RECEIVE] = False

    def take_into(self, buffer: Buffer, *, timeout: float | None) -> int:
        raise NotImplementedError  # direct is False: the core copies

    def _fetch(self, seconds: float) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        async def fetch() -> list[Any]:
            try:
                messages: list[Any] = await self._subscription.fetch(_BATCH, timeout=seconds)
                return messages
            except (NatsTimeout, TimeoutError):
                return []

        for message in self._run(fetch(), seconds + _CONFIRM_WAIT, "fetch messages"):
            sequence = message.metadata.sequence.stream
            if sequence <= self._highest:
                continue  # redelivered while we still had it
            self._highest = sequence
            self._rx.append((message.data, message))

    def _acknowledge(self) -> None:
        """The user finished with the whole messages taken so far: acknowledge their pieces."""
        done = self._taken[: self._finished]
        if not done:
            return
        del self._taken[: self._finished]
        self._finished = 0
        # Written at once (the loop parked), so they are on their way before the
        # next message is handed out: a receiver killed while it handles that one
        # gets only that one again. A lost connection loses them: redelivered.
        with self._owner.lock:
            for message in done:
                self._connection.write(message.reply.encode(), [b"+ACK"])

    def peer_state(self) -> PeerState:
        return PeerState.ALIVE  # a durable conversation: a peer's death is not its end

    def say_goodbye(self) -> None:
        if self._pid != os.getpid() or self._ending is not None:
            return
        with contextlib.suppress(IPCError):
            self._publish(_GOODBYE)

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(None, None)

    def interrupt(self) -> None:
        self._closing = True
        self.waker.wake()

    def speak(self) -> None:
        if self._pid != os.getpid():
            raise UnsupportedFeature(
                f"a nats+js:// end cannot be used in a forked child: connect to {self._url} there"
            )

    def close(self, announce: bool) -> None:
        self._closing = True
        if self._pid != os.getpid():
            return
        try:
            if announce:
                self._acknowledge()
            subscription = self._subscription
            if subscription is not None:
                self._owner.start(_unsubscribe(subscription))
        finally:
            _nats.release(self._connection)
            self.waker.close()


async def _unsubscribe(subscription: Any) -> None:
    with contextlib.suppress(Exception):
        await subscription.unsubscribe()


class JetStreamAcceptor:
    """A listener of a durable conversation: makes the stream, hands out the one end."""

    def __init__(self, url: str, address: Address, options: dict[str, Any]) -> None:
        self._url = url
        self._name = address.subject
        self._max_message_size = options["max_message_size"]
        self._connection = _nats.acquire(server_of(address, options), None)
        self._waker = Waker()
        self._fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._given = False
        try:
            self._connection.owner.run(self._make_stream(), _CONFIRM_WAIT, f"listening on {url}")
        except BaseException:
            self.close()
            raise

    async def _make_stream(self) -> None:
        from nats.js import api
        from nats.js.errors import BadRequestError

        js = self._connection.client.jetstream()
        config = api.StreamConfig(
            name=_stream(self._name),
            subjects=[f"unixipc.{self._name}.up", f"unixipc.{self._name}.down"],
            retention=api.RetentionPolicy.WORK_QUEUE,
            duplicate_window=120.0,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:  # it exists already (with messages kept for us)
            await js.stream_info(_stream(self._name))

    def take(self, timeout: float | None) -> Channel | None:
        if self._given:  # the conversation's one end is out: wait for nothing
            if timeout == 0:
                raise WouldBlock
            self._waker.wait(((self._fd, select.POLLIN),), timeout)
            raise TimeoutExpired
        _nats.share(self._connection)
        link = JetStreamLink(self._url, self._connection, self._name, client=False)
        try:
            self._connection.owner.run(link.bind(), _CONFIRM_WAIT, f"accepting on {self._url}")
        except BaseException:
            link.close(False)
            raise
        self._given = True
        return PieceChannel(self._url, link, max_message_size=self._max_message_size)

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(None, None)

    def interrupt(self) -> None:
        self._waker.wake()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._waker.close()
        _nats.release(self._connection)


def listen(url: str, address: Address, options: dict[str, Any]) -> Listener:
    return Listener(url, JetStreamAcceptor(url, address, options))


def connect(url: str, address: Address, deadline: Deadline, options: dict[str, Any]) -> Channel:
    """Bind the client's end of the conversation (the listener made its stream)."""
    connection = _nats.acquire(server_of(address, options), deadline.remaining())
    link = JetStreamLink(url, connection, address.subject, client=True)
    try:
        js = connection.client.jetstream()

        async def bind() -> bool:
            from nats.js.errors import NotFoundError

            try:
                await js.stream_info(_stream(address.subject))
            except NotFoundError:
                return False
            await link.bind()
            return True

        wait = _CONFIRM_WAIT if deadline.blocking else deadline.remaining()
        if not connection.owner.run(bind(), wait, f"connecting to {url}"):
            raise refused(url, f"no conversation {address.subject!r}: nobody listened on it")
    except BaseException:
        link.close(False)
        raise
    return PieceChannel(url, link, max_message_size=options["max_message_size"])


LISTEN_OPTIONS: dict[str, Option] = {"max_message_size": max_size_option(MAX_SPLIT), **TLS_OPTIONS}
CONNECT_OPTIONS = LISTEN_OPTIONS
