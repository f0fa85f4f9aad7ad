"""Why a Sun RPC call failed, one exception per reply the server can give (private).

::

    RpcError(IPCError)
    ├── ProgramUnavailable                 PROG_UNAVAIL: the server does not serve the program
    │   └── ProgramNotRegistered           rpcbind knows no such program, version, protocol
    ├── ProgramMismatch                    PROG_MISMATCH: not this version (.low, .high served)
    ├── ProcedureUnavailable               PROC_UNAVAIL: no such procedure in this version
    ├── GarbageArguments                   GARBAGE_ARGS: the server could not decode the arguments
    ├── RemoteSystemError                  SYSTEM_ERR: the server failed while running the call
    ├── RpcMismatch                        denied, RPC_MISMATCH (.low, .high RPC versions)
    └── AuthError                          denied, AUTH_ERROR (.status: an AuthStat)

Garbage from a peer (a reply or call that is not valid XDR) is
:class:`~unixipc.oncrpc.xdr.XdrError`, a ``ValueError``.
"""

from __future__ import annotations

import contextlib
import enum

from ..errors import IPCError


class AuthStat(enum.IntEnum):
    """Why a server refused a call's credentials (RFC 5531 ``auth_stat``)."""

    OK = 0
    BADCRED = 1
    REJECTEDCRED = 2
    BADVERF = 3
    REJECTEDVERF = 4
    TOOWEAK = 5
    INVALIDRESP = 6
    FAILED = 7
    RPCSEC_GSS_CREDPROBLEM = 13
    RPCSEC_GSS_CTXPROBLEM = 14


class RpcError(IPCError):
    """A Sun RPC call was refused or failed on the server; the subclass says why."""


class ProgramUnavailable(RpcError):
    """The server does not serve the program (PROG_UNAVAIL)."""


class ProgramNotRegistered(ProgramUnavailable):
    """rpcbind has no port for this program, version and protocol."""


class ProgramMismatch(RpcError):
    """The server serves the program but not this version (PROG_MISMATCH).

    ``low`` and ``high`` are the lowest and highest versions it serves.
    """

    def __init__(self, message: str, low: int, high: int) -> None:
        super().__init__(message)
        self.low = low
        self.high = high


class ProcedureUnavailable(RpcError):
    """The program version has no such procedure (PROC_UNAVAIL)."""


class GarbageArguments(RpcError):
    """The server could not decode the call's arguments (GARBAGE_ARGS)."""


class RemoteSystemError(RpcError):
    """The server failed while carrying out the call (SYSTEM_ERR)."""


class RpcMismatch(RpcError):
    """The server refused the RPC protocol version (denied, RPC_MISMATCH).

    ``low`` and ``high`` are the RPC versions it accepts.
    """

    def __init__(self, message: str, low: int, high: int) -> None:
        super().__init__(message)
        self.low = low
        self.high = high


class AuthError(RpcError):
    """A call's credentials were refused (denied, AUTH_ERROR); ``status`` says why.

    A server procedure raises it to refuse a caller, e.g.
    ``raise AuthError(AuthStat.TOOWEAK)``.
    """

    def __init__(self, status: AuthStat | int, message: str | None = None) -> None:
        with contextlib.suppress(ValueError):
            status = AuthStat(status)
        name = status.name if isinstance(status, AuthStat) else str(status)
        super().__init__(message or f"authentication refused: {name}")
        self.status = status
