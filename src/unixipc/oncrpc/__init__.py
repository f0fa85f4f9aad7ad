"""Sun RPC (ONC RPC): XDR, rpcbind, ``.x`` files, clients and servers.

Python as a first-class peer of C programs built with ``rpcgen``::

    from unixipc import oncrpc

    calc = oncrpc.load("calc.x")            # types, a client and a service class

    class Calc(calc.CALC_V1_Service):
        def add(self, pair, call):
            return pair.a + pair.b

    with oncrpc.Server(Calc()) as server:    # registered with rpcbind
        server.start()
        with calc.CALC_V1_Client("localhost", protocol="udp") as client:
            assert client.add(calc.pair(2, 3)) == 5

Modules: :mod:`~unixipc.oncrpc.xdr` (RFC 4506 data), :mod:`~unixipc.oncrpc.rpcbind`
(the portmapper, RFC 1833), :mod:`~unixipc.oncrpc.aio` (asyncio). Messages
follow RFC 5531 (RPC version 2, AUTH_NONE and AUTH_SYS, record marking on TCP).
Lifetime: sockets of this process; rpcbind registrations are removed by
``Server.close()``, and one left by a killed server is replaced by the next.
Portability: Linux (any POSIX system with rpcbind should do).
"""

from __future__ import annotations

from . import aio as aio
from . import rpcbind as rpcbind
from . import xdr as xdr
from ._client import CLIENT_TIMEOUT as CLIENT_TIMEOUT
from ._client import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from ._client import Client as Client
from ._codegen import load as load
from ._errors import AuthError as AuthError
from ._errors import AuthStat as AuthStat
from ._errors import GarbageArguments as GarbageArguments
from ._errors import ProcedureUnavailable as ProcedureUnavailable
from ._errors import ProgramMismatch as ProgramMismatch
from ._errors import ProgramNotRegistered as ProgramNotRegistered
from ._errors import ProgramUnavailable as ProgramUnavailable
from ._errors import RemoteSystemError as RemoteSystemError
from ._errors import RpcError as RpcError
from ._errors import RpcMismatch as RpcMismatch
from ._message import AUTH_NONE as AUTH_NONE
from ._message import AuthSys as AuthSys
from ._message import CallInfo as CallInfo
from ._message import OpaqueAuth as OpaqueAuth
from ._server import Procedure as Procedure
from ._server import Server as Server
from ._server import Service as Service
from ._xfile import XFileError as XFileError
from .xdr import XdrError as XdrError

__all__ = (
    "AUTH_NONE",
    "CLIENT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "AuthError",
    "AuthStat",
    "AuthSys",
    "CallInfo",
    "Client",
    "GarbageArguments",
    "OpaqueAuth",
    "Procedure",
    "ProcedureUnavailable",
    "ProgramMismatch",
    "ProgramNotRegistered",
    "ProgramUnavailable",
    "RemoteSystemError",
    "RpcError",
    "RpcMismatch",
    "Server",
    "Service",
    "XFileError",
    "XdrError",
    "aio",
    "load",
    "rpcbind",
    "xdr",
)
