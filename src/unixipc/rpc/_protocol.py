"""The RPC wire protocol: handshake, message kinds, remote errors (private).

A connection starts with a handshake in plain bytes, so that nothing is
decoded before both sides agreed on the codec (and pickle was allowed)::

    client: b"unixipc-rpc/1 <codec>"
    server: b"unixipc-rpc/1 ok <max_concurrency>"  or  b"unixipc-rpc/1 no <reason>"

Then every message is one codec-encoded list whose first item is its kind and
whose second is the call id the client chose; ids let many calls share one
channel, in any order:

    client -> server                          server -> client
    [CALL, id, name, args, kwargs|None,       [RESULT, id, value]
     timeout|None, window]                    [ERROR, id, type, message, traceback]
    [CANCEL, id]                              [NOT_FOUND, id, name]
    [CREDIT, id, items]                       [STREAM, id] [ITEM, id, value]... [END, id]
    [LIST, id]                                (LIST is answered by a RESULT)
    [CALL, id, name, args]: the short form    [BYE, 0]: the server is closing
     of [CALL, id, name, args, None, None, WINDOW] (the most common call: a
     few fields less to encode and decode)

Every call gets exactly one final message (RESULT, ERROR, NOT_FOUND or END),
even a cancelled one: the client counts its calls in flight against the
server's ``max_concurrency`` until then, so the server never has more than that
many calls of one connection and can refuse a client that sends more. A
stream sends at most ``window`` items ahead; the client returns credit as it
consumes them, so neither side buffers more than a window. A closing server
says BYE (its calls in flight will not be answered): the client's calls raise
:class:`EndOfChannel`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from ..errors import IPCError

MAGIC = b"unixipc-rpc/1"
_MAX_HANDSHAKE = 1024

CALL, CANCEL, CREDIT, LIST = 0, 1, 2, 3
RESULT, ERROR, NOT_FOUND, STREAM, ITEM, END, BYE = 16, 17, 18, 19, 20, 21, 22
FINAL = frozenset((RESULT, ERROR, NOT_FOUND, END))

#: The most items a stream may send ahead of the client's credit.
MAX_WINDOW = 1 << 16
#: The window of a call in the short form (what the clients ask for).
WINDOW = 64
#: The longest method name.
MAX_NAME = 256

# Type names of the errors the RPC layer itself reports.
BAD_REQUEST = "unixipc.rpc.BadRequest"
TOO_MANY_CALLS = "unixipc.rpc.TooManyCalls"
CANCELLED = "unixipc.rpc.Cancelled"
DEADLINE_PASSED = "unixipc.TimeoutExpired"


def hello(codec: str) -> bytes:
    """The client's first message."""
    return MAGIC + b" " + codec.encode()


def parse_hello(data: bytes) -> str | None:
    """The codec a client asks for, or None if ``data`` is not our handshake."""
    if len(data) > _MAX_HANDSHAKE or not data.startswith(MAGIC + b" "):
        return None
    try:
        return data[len(MAGIC) + 1 :].decode("ascii")
    except UnicodeDecodeError:
        return None


def welcome(max_concurrency: int) -> bytes:
    return MAGIC + b" ok " + str(max_concurrency).encode()


def refusal(reason: str) -> bytes:
    return MAGIC + b" no " + reason.encode()[: _MAX_HANDSHAKE - 32]


def parse_welcome(data: bytes, url: str) -> int:
    """The server's ``max_concurrency`` from its answer to the handshake.

    Raises:
        IPCError: the server refused (the message says why) or does not speak
            this protocol.
    """
    if data.startswith(MAGIC + b" no "):
        reason = data[len(MAGIC) + 4 :].decode(errors="replace")
        raise IPCError(f"the RPC server at {url!r} refused the connection: {reason}")
    if data.startswith(MAGIC + b" ok ") and len(data) < 64:
        number = data[len(MAGIC) + 4 :]
        if number.isdigit() and 0 < int(number) <= 1 << 20:
            return int(number)
    raise IPCError(f"{url!r} is not a unixipc RPC server (unexpected handshake answer)")


def type_name(error: BaseException) -> str:
    """``ValueError`` for builtins, else ``module.QualifiedName``."""
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def error_message(call_id: int, error: BaseException) -> list[Any]:
    """The ERROR message reporting ``error`` (type name, text, traceback text)."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return [ERROR, call_id, type_name(error), str(error), text]


class RemoteError(IPCError):
    """A remote handler raised an exception; this carries its description.

    The remote exception is never rebuilt here (that would need pickle): it
    arrives as text. ``str(error)`` is ``"TypeName: message"``; the remote
    traceback is printed as the cause when the error is not caught.

    Attributes:
        type_name: the remote exception's type: ``"ValueError"`` for builtins,
            else ``"module.QualifiedName"``.
        message: ``str()`` of the remote exception.
        traceback: the remote traceback as text (may be empty).
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.message, self.traceback))


class MethodNotFound(RemoteError):
    """The server has no method of that name (see ``client.methods()``)."""

    def __init__(self, name: str, message: str = "", traceback: str = "") -> None:
        super().__init__("unixipc.rpc.MethodNotFound", message or f"no method {name!r}")
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.message))


class RemoteTraceback(Exception):
    """Shown as the cause of a :class:`RemoteError`: the remote traceback text."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


def remote_error(message: list[Any]) -> RemoteError:
    """The exception an ERROR or NOT_FOUND message describes."""
    if message[0] == NOT_FOUND:
        return MethodNotFound(str(message[2]))
    kind_name, text, trace = (str(item) for item in message[2:5])
    error = RemoteError(kind_name, text, trace)
    if trace:
        error.__cause__ = RemoteTraceback(trace)
    return error


@dataclass(frozen=True)
class MethodInfo:
    """One method a server offers, as ``client.methods()`` lists it."""

    #: The name clients call it by.
    name: str
    #: Its parameters and return annotation, as Python writes them: ``"(a, b=1)"``.
    signature: str
    #: Its docstring ("" if none).
    doc: str
    #: True if it streams (a generator or async generator): ``call`` returns an iterator.
    streaming: bool


def check_name(name: object) -> str:
    """Validate a method name (registration and calls share the rule)."""
    if not isinstance(name, str):
        raise TypeError(f"a method name is a str, not {type(name).__name__}")
    if not name or len(name) > MAX_NAME or name.startswith("_") or not name.isprintable():
        raise ValueError(
            f"a method name has 1 to {MAX_NAME} printable characters and does not "
            f"start with '_': {name!r}"
        )
    if any(character.isspace() for character in name):
        raise ValueError(f"a method name has no spaces: {name!r}")
    return name
