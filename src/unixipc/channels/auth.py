"""Who may talk on a channel: kernel credentials and a shared secret (private).

Every new connection passes a :class:`Gate` (the core's ``Authenticator``) before
its first application message (:func:`.core.establish`), on both sides, with the
channel's receive limit lowered to :data:`BUDGET` bytes:

1. **Peer credentials** (``allowed_uids``, ``allowed_gids``; UNIX sockets only):
   the uid and gid the kernel recorded when the peer connected (SO_PEERCRED),
   which the peer cannot forge. A listener checks its clients; a client checks
   the listener it reached (someone else may have bound the name first). An
   abstract socket has no file permissions, so there both sides admit only
   their own effective uid unless told otherwise (CPython's CVE-2022-42919);
   ``allowed_uids="any"`` opens it. A stranger is dropped before any byte of
   the handshake is sent to it.
2. **A shared secret** (``secret``; every scheme): both sides prove they know it
   with HMAC-SHA256 over fresh random nonces from both sides, compared in
   constant time. Each proof is labelled with the prover's role, so a proof can
   never be reflected back as the other side's; the listener proves itself only
   after the client did, so an unauthenticated client learns nothing it could
   replay. A wrong or missing proof, or more than ``BUDGET`` bytes in one
   message, or no answer within ``handshake_timeout``: the listener drops that
   client (and tells it, ``REFUSED``) and goes on with the others; ``connect``
   raises :class:`AuthenticationError`.

Wire format: each line is one channel message (a frame or a piece), all fixed sizes::

    listener -> client  CHALLENGE  b"UXA1C" + listener_nonce (32)                   37 bytes
    client -> listener  RESPONSE   b"UXA1R" + client_nonce (32) + client_proof (32) 69 bytes
    listener -> client  WELCOME    b"UXA1W" + listener_proof (32)                   37 bytes
                     or REFUSED    b"UXA1F"                                          5 bytes

    client_proof   = HMAC-SHA256(secret, b"unixipc-auth-1 client\\0" + listener_nonce
                                         + client_nonce)
    listener_proof = HMAC-SHA256(secret, b"unixipc-auth-1 server\\0" + listener_nonce
                                         + client_nonce)

The secret authenticates; it does not encrypt, and it cannot stop an active
man in the middle on a network from relaying a handshake: traffic that leaves
the host goes over ``tls://`` (with the secret or client certificates on top).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import os
import secrets
from typing import TYPE_CHECKING, Any

from .._deadline import Deadline, check_timeout
from .._names import check_bytes_like
from ..errors import AuthenticationError, IPCError
from ..sockets import ANY_UID, _peer_sets
from .core import Option

if TYPE_CHECKING:
    from .core import Channel

#: The largest message a peer may send before it is authenticated (bytes).
BUDGET = 256
#: How long a peer has to complete the handshake, unless told otherwise (seconds).
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
#: The shortest secret accepted (bytes): 128 bits; ``secrets.token_bytes(32)`` is better.
MIN_SECRET = 16

MAGIC = b"UXA1"
CHALLENGE = MAGIC + b"C"
RESPONSE = MAGIC + b"R"
WELCOME = MAGIC + b"W"
REFUSED = MAGIC + b"F"
NONCE_SIZE = 32
_PROOF_SIZE = hashlib.sha256().digest_size
_LABELS = {"client": b"unixipc-auth-1 client\0", "server": b"unixipc-auth-1 server\0"}

#: ``allowed_uids`` left unset on an abstract socket: this process's effective uid.
OWN_UID = "own"


def proof(secret: bytes, role: str, listener_nonce: bytes, client_nonce: bytes) -> bytes:
    """The HMAC-SHA256 proof of ``role`` ("client" or "server") over both nonces."""
    message = _LABELS[role] + listener_nonce + client_nonce
    return hmac.new(secret, message, hashlib.sha256).digest()


class Gate:
    """The checks of one listener or connect (see the module docstring)."""

    budget = BUDGET

    def __init__(
        self,
        secret: bytes | None,
        uids: frozenset[int] | None,
        gids: frozenset[int] | None,
        handshake_timeout: float,
    ) -> None:
        self._secret = secret
        self._uids = uids
        self._gids = gids
        self._timeout = handshake_timeout

    def authenticate(self, channel: Channel, *, server: bool, deadline: Deadline) -> bool:
        """Check the peer of a new ``channel``; True when a check proved who it is.

        A listener gives each client ``handshake_timeout`` whatever its own
        ``accept`` timeout (an honest client is never dropped because accept
        was called with a short one); a client spends at most what is left of
        its connect timeout.

        Raises:
            AuthenticationError: the peer failed (the caller drops the connection).
            TimeoutExpired: the peer did not answer in time.
            IPCError: the peer went away or sent garbage.
        """
        left = deadline.remaining()
        if server or deadline.timeout == 0 or left is None or left > self._timeout:
            deadline = Deadline(self._timeout)
        checked = self._check_credentials(channel, server)
        if self._secret is None:
            return checked
        if server:
            self._server_handshake(channel, self._secret, deadline)
        else:
            self._client_handshake(channel, self._secret, deadline)
        return True

    def _check_credentials(self, channel: Channel, server: bool) -> bool:
        if self._uids is None and self._gids is None:
            return False
        credentials = channel.peer_credentials()
        who = "client" if server else "listener"
        if credentials is None:
            raise AuthenticationError(
                f"{channel.describe()}: the kernel did not say who the {who} is"
            )
        uids, gids = self._uids, self._gids
        if (uids is None or credentials.uid not in uids) and (
            gids is None or credentials.gid not in gids
        ):
            raise AuthenticationError(
                f"{channel.describe()}: the {who} (pid {credentials.pid}, uid "
                f"{credentials.uid}, gid {credentials.gid}) is not allowed "
                f"({_describe_allowed(uids, gids)})"
            )
        return True

    def _server_handshake(self, channel: Channel, secret: bytes, deadline: Deadline) -> None:
        listener_nonce = secrets.token_bytes(NONCE_SIZE)
        channel.send(CHALLENGE + listener_nonce, timeout=deadline.remaining())
        answer = channel.receive(timeout=deadline.remaining())
        well_formed = len(answer) == len(RESPONSE) + NONCE_SIZE + _PROOF_SIZE and answer.startswith(
            RESPONSE
        )
        client_nonce = answer[len(RESPONSE) : len(RESPONSE) + NONCE_SIZE]
        if not well_formed or not hmac.compare_digest(
            answer[len(RESPONSE) + NONCE_SIZE :],
            proof(secret, "client", listener_nonce, client_nonce),
        ):
            with contextlib.suppress(IPCError):
                channel.send(REFUSED, timeout=0)
            what = "a wrong proof of the secret" if well_formed else "no proof of the secret"
            raise AuthenticationError(f"{channel.describe()}: the client sent {what}")
        channel.send(
            WELCOME + proof(secret, "server", listener_nonce, client_nonce),
            timeout=deadline.remaining(),
        )

    def _client_handshake(self, channel: Channel, secret: bytes, deadline: Deadline) -> None:
        challenge = _receive(channel, deadline)
        if len(challenge) != len(CHALLENGE) + NONCE_SIZE or not challenge.startswith(CHALLENGE):
            raise AuthenticationError(
                f"{channel.describe()}: the listener sent no challenge (does it use a secret?)"
            )
        listener_nonce = challenge[len(CHALLENGE) :]
        client_nonce = secrets.token_bytes(NONCE_SIZE)
        channel.send(
            RESPONSE + client_nonce + proof(secret, "client", listener_nonce, client_nonce),
            timeout=deadline.remaining(),
        )
        answer = _receive(channel, deadline)
        if answer == REFUSED:
            raise AuthenticationError(
                f"{channel.describe()}: the listener refused our proof (a different secret?)"
            )
        expected = proof(secret, "server", listener_nonce, client_nonce)
        if not (
            answer.startswith(WELCOME) and hmac.compare_digest(answer[len(WELCOME) :], expected)
        ):
            raise AuthenticationError(
                f"{channel.describe()}: the listener did not prove that it knows the secret"
            )


def _receive(channel: Channel, deadline: Deadline) -> bytes:
    """The listener's next handshake message; its refusal or departure is an
    AuthenticationError (a listener drops a client it does not admit)."""
    try:
        return channel.receive(timeout=deadline.remaining())
    except IPCError as error:
        if isinstance(error, (BlockingIOError, TimeoutError)):
            raise
        raise AuthenticationError(
            f"{channel.describe()}: the listener closed the connection during the "
            f"handshake (are we allowed? {error})"
        ) from None


def _describe_allowed(uids: frozenset[int] | None, gids: frozenset[int] | None) -> str:
    parts = []
    if uids is not None:
        parts.append(f"uids {sorted(uids)}")
    if gids is not None:
        parts.append(f"gids {sorted(gids)}")
    return "allowed: " + " or ".join(parts)


# Options: checked when listen/connect is called, before any system call.


def check_secret(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError("secret must be bytes (for a text secret, pass text.encode())")
    secret = bytes(check_bytes_like(value, "secret"))
    if len(secret) < MIN_SECRET:
        raise ValueError(
            f"secret must have at least {MIN_SECRET} bytes (128 bits); got {len(secret)} "
            "(make one with secrets.token_bytes(32))"
        )
    return secret


def check_handshake_timeout(value: object) -> float:
    seconds = check_timeout(value, "handshake_timeout")
    if seconds is None or seconds == 0 or math.isinf(seconds):
        raise ValueError(f"handshake_timeout must be a positive number of seconds, got {value!r}")
    return seconds


def check_uids(value: object) -> object:
    if value is None or value in (ANY_UID, OWN_UID):
        return value
    uids, _ = _peer_sets("stream", False, value, None)
    return uids


def check_gids(value: object) -> object:
    if value is None:
        return None
    _, gids = _peer_sets("stream", False, None, value)
    return gids


#: Every scheme's listen and connect take these (the registry adds them).
OPTIONS: dict[str, Option] = {
    "secret": Option(None, check_secret),
    "handshake_timeout": Option(DEFAULT_HANDSHAKE_TIMEOUT, check_handshake_timeout),
}


def peer_options(default_uids: object) -> dict[str, Option]:
    """The options of a scheme whose kernel reports the peer's credentials."""
    return {
        "allowed_uids": Option(default_uids, check_uids),
        "allowed_gids": Option(None, check_gids),
    }


def gate(options: dict[str, Any]) -> Gate | None:
    """The gate that ``options`` (validated) ask for, or None when they ask for nothing."""
    uids: Any = options.get("allowed_uids")
    gids: Any = options.get("allowed_gids")
    if uids == OWN_UID:
        uids = None if gids is not None else frozenset({os.geteuid()})
    elif uids == ANY_UID:
        uids = None
    secret = options.get("secret")
    if secret is None and uids is None and gids is None:
        return None
    return Gate(secret, uids, gids, options.get("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT))
