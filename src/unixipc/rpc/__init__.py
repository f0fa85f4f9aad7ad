"""Remote procedure calls over every channel URL: ``unixipc.rpc``.

The same service answers over ``shm://`` at memory speed, over ``unix://`` to
other local users, and over ``tcp://`` to other hosts::

    server = unixipc.rpc.Server("unix:///tmp/calc.sock")

    @server.function
    def add(a, b):
        return a + b

    server.serve_forever()                                   # in the server process

    with unixipc.rpc.connect("unix:///tmp/calc.sock", timeout=10) as client:
        client.call("add", 1, 2)                             # 3
        client.api.add(1, 2)                                 # the same
        client.methods()                                     # names, signatures, docs

Safe by default: values travel as MessagePack (or JSON), never pickle unless
both sides ask for it on an authenticated channel; a remote exception arrives
as :class:`RemoteError` carrying its type name, message and traceback text.
Many calls share one connection (each has an id), from many threads or, with
:mod:`unixipc.aio.rpc`, from many tasks. Generators stream; a client's
``timeout`` travels with the call (:func:`current_deadline`).

Persistence and portability: those of the channel URL (see :mod:`unixipc.channel`).
"""

from __future__ import annotations

from ._client import Client as Client
from ._client import Stream as Stream
from ._client import connect as connect
from ._codec import CODEC_NAMES as CODEC_NAMES
from ._protocol import MethodInfo as MethodInfo
from ._protocol import MethodNotFound as MethodNotFound
from ._protocol import RemoteError as RemoteError
from ._server import Server as Server
from ._server import current_deadline as current_deadline

__all__ = (
    "CODEC_NAMES",
    "Client",
    "MethodInfo",
    "MethodNotFound",
    "RemoteError",
    "Server",
    "Stream",
    "connect",
    "current_deadline",
)

# unixipc.aio.rpc (the asyncio flavour) is reachable once unixipc is imported.
from ..aio import rpc as _aio_rpc  # noqa: F401
