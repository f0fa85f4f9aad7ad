"""RPC version 2 messages (RFC 5531): calls, replies and credentials (private).

Layouts, in 4-byte XDR words::

    call:   xid CALL(0) rpcvers(2) prog vers proc  cred  verf  arguments...
    reply:  xid REPLY(1) MSG_ACCEPTED(0)  verf  accept_stat  results... | low high
            xid REPLY(1) MSG_DENIED(1)  RPC_MISMATCH(0) low high | AUTH_ERROR(1) auth_stat

where ``cred`` and ``verf`` are ``opaque_auth``: a flavor and at most 400 bytes.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from .._names import check_int
from ._errors import (
    AuthError,
    AuthStat,
    GarbageArguments,
    ProcedureUnavailable,
    ProgramMismatch,
    ProgramUnavailable,
    RemoteSystemError,
    RpcError,
    RpcMismatch,
)
from .xdr import XdrError

RPC_VERSION = 2
CALL, REPLY = 0, 1
MSG_ACCEPTED, MSG_DENIED = 0, 1
SUCCESS, PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL, GARBAGE_ARGS, SYSTEM_ERR = range(6)
RPC_MISMATCH, AUTH_ERROR = 0, 1
AUTH_NONE_FLAVOR, AUTH_SYS_FLAVOR = 0, 1

#: RFC 5531: the body of an opaque_auth is at most 400 bytes.
MAX_AUTH_BYTES = 400
#: AUTH_SYS: machine names of at most 255 bytes, at most 16 supplementary groups.
MAX_MACHINE_NAME = 255
MAX_GROUPS = 16

_U32 = struct.Struct(">I")
_TWO = struct.Struct(">II")
CALL_HEADER = struct.Struct(">IIIIII")  # xid CALL 2 prog vers proc
_REPLY_HEAD = struct.Struct(">III")  # xid REPLY reply_stat
_ACCEPTED_REPLY = struct.Struct(">IIIIII")  # xid REPLY ACCEPTED flavor(0) length(0) stat
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")


@dataclass(frozen=True)
class OpaqueAuth:
    """Credentials or a verifier of any flavor, as raw bytes (``AUTH_NONE`` has flavor 0)."""

    flavor: int = AUTH_NONE_FLAVOR
    body: bytes = b""

    def __post_init__(self) -> None:
        check_int(self.flavor, "flavor", minimum=0)
        if self.flavor > 0xFFFFFFFF:
            raise ValueError(f"flavor must fit in 32 bits, got {self.flavor}")
        if not isinstance(self.body, bytes):
            raise TypeError(f"body must be bytes, not {type(self.body).__name__}")
        if len(self.body) > MAX_AUTH_BYTES:
            raise ValueError(f"an auth body holds at most {MAX_AUTH_BYTES} bytes")

    def to_xdr(self) -> bytes:
        """The ``opaque_auth`` encoding."""
        return _TWO.pack(self.flavor, len(self.body)) + self.body + _PAD[len(self.body) & 3]


AUTH_NONE = OpaqueAuth()


@dataclass(frozen=True)
class AuthSys:
    """AUTH_SYS (formerly AUTH_UNIX) credentials: who the caller says it is.

    The server cannot verify them; they name the caller's machine, user and
    groups as its own system knows them.
    """

    machine_name: str
    uid: int
    gid: int
    gids: tuple[int, ...] = ()
    stamp: int = 0

    flavor = AUTH_SYS_FLAVOR

    def __post_init__(self) -> None:
        if not isinstance(self.machine_name, str):
            raise TypeError("machine_name must be a str")
        if len(self.machine_name.encode("utf-8", "surrogateescape")) > MAX_MACHINE_NAME:
            raise ValueError(f"machine_name is longer than {MAX_MACHINE_NAME} bytes")
        for name in ("uid", "gid", "stamp"):
            value = check_int(getattr(self, name), name, minimum=0)
            if value > 0xFFFFFFFF:
                raise ValueError(f"{name} must fit in 32 bits, got {value}")
        gids = tuple(self.gids)
        object.__setattr__(self, "gids", gids)
        if len(gids) > MAX_GROUPS:
            raise ValueError(f"AUTH_SYS carries at most {MAX_GROUPS} groups, got {len(gids)}")
        for gid in gids:
            if check_int(gid, "gids[]", minimum=0) > 0xFFFFFFFF:
                raise ValueError(f"gids must fit in 32 bits, got {gid}")

    @classmethod
    def current(cls) -> AuthSys:
        """This process's credentials: host name, effective uid and gid, first 16 groups."""
        name = socket.gethostname().encode("utf-8", "surrogateescape")[:MAX_MACHINE_NAME]
        groups = tuple(g for g in os.getgroups() if g != os.getegid())[:MAX_GROUPS]
        return cls(
            name.decode("utf-8", "surrogateescape"),
            os.geteuid(),
            os.getegid(),
            groups,
            int(time.time()) & 0xFFFFFFFF,
        )

    @property
    def body(self) -> bytes:
        """The encoded ``authsys_parms``."""
        name = self.machine_name.encode("utf-8", "surrogateescape")
        return b"".join(
            (
                _TWO.pack(self.stamp, len(name)),
                name,
                _PAD[len(name) & 3],
                struct.pack(
                    f">III{len(self.gids)}I", self.uid, self.gid, len(self.gids), *self.gids
                ),
            )
        )

    def to_xdr(self) -> bytes:
        """The ``opaque_auth`` encoding."""
        body = self.body
        return _TWO.pack(AUTH_SYS_FLAVOR, len(body)) + body


Auth = OpaqueAuth | AuthSys


def check_auth(auth: object) -> Auth:
    """The credentials a client sends (None: AUTH_NONE)."""
    if auth is None:
        return AUTH_NONE
    if not isinstance(auth, (OpaqueAuth, AuthSys)):
        raise TypeError(f"auth must be AuthSys, OpaqueAuth or None, not {type(auth).__name__}")
    return auth


def _opaque_auth(data: bytes, offset: int, what: str) -> tuple[int, bytes, int]:
    """Decode an opaque_auth at ``offset``: (flavor, body, offset after it)."""
    if offset + 8 > len(data):
        raise XdrError(f"{what}: the message ends before its {len(data)} bytes")
    flavor, length = _TWO.unpack_from(data, offset)
    if length > MAX_AUTH_BYTES:
        raise XdrError(f"{what}: {length} bytes is more than {MAX_AUTH_BYTES}")
    start = offset + 8
    end = start + ((length + 3) & ~3)
    if end > len(data):
        raise XdrError(f"{what}: the message ends inside it")
    return flavor, data[start : start + length], end


def parse_auth_sys(body: bytes) -> AuthSys:
    """Decode an AUTH_SYS body (raises XdrError when it is malformed)."""
    try:
        stamp, length = _TWO.unpack_from(body, 0)
        if length > MAX_MACHINE_NAME:
            raise XdrError(f"AUTH_SYS machine name of {length} bytes")
        offset = 8 + ((length + 3) & ~3)
        name = body[8 : 8 + length]
        uid, gid, count = struct.unpack_from(">III", body, offset)
        if count > MAX_GROUPS:
            raise XdrError(f"AUTH_SYS with {count} groups")
        gids = struct.unpack_from(f">{count}I", body, offset + 12)
        if offset + 12 + 4 * count != len(body) or len(name) != length:
            raise XdrError("AUTH_SYS body of the wrong length")
    except struct.error:
        raise XdrError("AUTH_SYS body too short") from None
    return AuthSys(name.decode("utf-8", "surrogateescape"), uid, gid, gids, stamp)


# ---------------------------------------------------------------------------
# Calls


@dataclass(frozen=True)
class CallInfo:
    """What a server knows about the call it is running (the C library's ``svc_req``).

    ``credential`` is :class:`AuthSys` for AUTH_SYS callers, else an
    :class:`OpaqueAuth` (flavor 0 for AUTH_NONE). ``peer`` is the caller's
    socket address and ``protocol`` ``"tcp"`` or ``"udp"``.
    """

    xid: int
    program: int
    version: int
    procedure: int
    credential: Auth
    verifier: OpaqueAuth
    protocol: str
    peer: Any = field(default=None)

    @property
    def auth_sys(self) -> AuthSys | None:
        """The caller's AUTH_SYS credentials, or None if it sent another flavor."""
        return self.credential if isinstance(self.credential, AuthSys) else None


class Denied(Exception):
    """A call the server answers with MSG_DENIED without running it (internal)."""

    def __init__(self, reply: bytes) -> None:
        super().__init__("denied")
        self.reply = reply


def parse_call(data: bytes, protocol: str, peer: Any) -> tuple[CallInfo, int]:
    """Decode a call's header; return it and the offset of the arguments.

    Raises:
        XdrError: not a call at all (no reply can be sent).
        Denied: a call to refuse (RPC version, credentials), with the reply to send.
    """
    if len(data) < 24:
        raise XdrError(f"a call of {len(data)} bytes is shorter than its header")
    xid, kind, rpc_version, program, version, procedure = CALL_HEADER.unpack_from(data, 0)
    if kind != CALL:
        raise XdrError(f"message type {kind} where a call was expected")
    if rpc_version != RPC_VERSION:
        raise Denied(denied_reply(xid, RPC_MISMATCH, RPC_VERSION, RPC_VERSION))
    try:
        flavor, body, offset = _opaque_auth(data, 24, "credentials")
        verifier_flavor, verifier_body, offset = _opaque_auth(data, offset, "verifier")
    except XdrError:
        raise Denied(denied_reply(xid, AUTH_ERROR, AuthStat.BADCRED)) from None
    credential: Auth
    if flavor == AUTH_SYS_FLAVOR:
        try:
            credential = parse_auth_sys(body)
        except XdrError:
            raise Denied(denied_reply(xid, AUTH_ERROR, AuthStat.BADCRED)) from None
    elif flavor == AUTH_NONE_FLAVOR:
        credential = AUTH_NONE if not body else OpaqueAuth(flavor, body)
    else:
        raise Denied(denied_reply(xid, AUTH_ERROR, AuthStat.REJECTEDCRED))
    verifier = AUTH_NONE if verifier_flavor == 0 and not verifier_body else None
    if verifier is None:
        verifier = OpaqueAuth(verifier_flavor, verifier_body)
    info = CallInfo(xid, program, version, procedure, credential, verifier, protocol, peer)
    return info, offset


def accepted_reply(xid: int, stat: int, body: bytes = b"") -> bytes:
    """A MSG_ACCEPTED reply with an AUTH_NONE verifier."""
    return _ACCEPTED_REPLY.pack(xid, REPLY, MSG_ACCEPTED, 0, 0, stat) + body


def denied_reply(xid: int, stat: int, *values: int) -> bytes:
    """A MSG_DENIED reply: RPC_MISMATCH low high, or AUTH_ERROR auth_stat."""
    return _REPLY_HEAD.pack(xid, REPLY, MSG_DENIED) + struct.pack(
        f">{1 + len(values)}I", stat, *values
    )


# ---------------------------------------------------------------------------
# Replies


def reply_xid(data: bytes) -> int | None:
    """The xid of a reply, or None when the message is too short or not a reply."""
    if len(data) < 12:
        return None
    xid, kind = _TWO.unpack_from(data, 0)
    return xid if kind == REPLY else None


def parse_reply(data: bytes, what: str) -> int:
    """Check a reply (whose xid matched); return the offset of the results.

    Raises:
        ProgramUnavailable, ProgramMismatch, ProcedureUnavailable,
        GarbageArguments, RemoteSystemError, RpcMismatch, AuthError: the server's answer.
        XdrError: the reply is malformed.
    """
    stat = _U32.unpack_from(data, 8)[0]
    if stat == MSG_ACCEPTED:
        _, _, offset = _opaque_auth(data, 12, f"{what}: reply verifier")
        if offset + 4 > len(data):
            raise XdrError(f"{what}: the reply ends before its status")
        accepted = _U32.unpack_from(data, offset)[0]
        if accepted == SUCCESS:
            return offset + 4
        raise _accept_error(accepted, data, offset + 4, what)
    if stat == MSG_DENIED:
        if len(data) < 16:
            raise XdrError(f"{what}: the denied reply ends early")
        reason = _U32.unpack_from(data, 12)[0]
        if reason == RPC_MISMATCH and len(data) >= 24:
            low, high = _TWO.unpack_from(data, 16)
            raise RpcMismatch(f"{what}: RPC version 2 refused (accepts {low}-{high})", low, high)
        if reason == AUTH_ERROR and len(data) >= 20:
            status = _U32.unpack_from(data, 16)[0]
            name = AuthStat(status).name if status in AuthStat._value2member_map_ else status
            raise AuthError(status, f"{what}: credentials refused ({name})")
        raise XdrError(f"{what}: denied reply with reason {reason}")
    raise XdrError(f"{what}: reply status {stat} is neither accepted nor denied")


def _accept_error(stat: int, data: bytes, offset: int, what: str) -> RpcError | XdrError:
    if stat == PROG_UNAVAIL:
        return ProgramUnavailable(f"{what}: the server does not serve this program")
    if stat == PROG_MISMATCH:
        if offset + 8 > len(data):
            return XdrError(f"{what}: PROG_MISMATCH without the versions")
        low, high = _TWO.unpack_from(data, offset)
        return ProgramMismatch(
            f"{what}: version not served (the server has versions {low} to {high})", low, high
        )
    if stat == PROC_UNAVAIL:
        return ProcedureUnavailable(f"{what}: no such procedure")
    if stat == GARBAGE_ARGS:
        return GarbageArguments(f"{what}: the server could not decode the arguments")
    if stat == SYSTEM_ERR:
        return RemoteSystemError(f"{what}: the server failed while running the call")
    return XdrError(f"{what}: unknown accept status {stat}")
