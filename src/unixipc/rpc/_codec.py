"""How RPC messages become bytes and back: MessagePack, JSON, pickle (private).

A codec turns one message (a list whose items are plain values) into one
channel message. Decoding never trusts its input: anything malformed raises
:class:`ValueError`, and only MessagePack and JSON run on unauthenticated
channels; :func:`check_codec_allowed` is the one place that decides when
pickle may run.

MessagePack carries None, bool, int, float, str, bytes (and any bytes-like
object: bytearray, memoryview), list (tuples arrive as lists), dict, and NumPy
arrays as an extension type holding the dtype, the shape and the raw data. An
array arrives read-only, over the bytes received (no further copy, no pickle).
"""

from __future__ import annotations

import json
import pickle
import struct
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]

from ..channel import Channel

#: MessagePack extension type code of a NumPy array: header (dtype, shape) + raw data.
EXT_NDARRAY = 1

# Array header: dtype string length, number of dimensions; then the dtype string
# (such as "<f8") and one unsigned 64-bit extent per dimension.
_ARRAY_HEAD = struct.Struct("<BB")
_MAX_DTYPE = 64
_MAX_DIMENSIONS = 64


class Codec:
    """Encodes and decodes messages; ``safe`` codecs may run on any channel.

    ``pack``/``unpack`` are the raw functions for hot paths: they may raise any
    exception on a bad value or bad bytes; ``encode``/``decode`` say what went
    wrong with TypeError/ValueError.
    """

    name = ""
    safe = True
    pack: Callable[[Any], bytes]
    unpack: Callable[[Any], Any]

    def encode(self, message: Any) -> bytes:
        """Bytes for ``message``. Raises TypeError naming what cannot be carried."""
        raise NotImplementedError

    def decode(self, data: Any) -> Any:
        """The message in ``data``. Raises ValueError on anything malformed."""
        raise NotImplementedError


class BadValue(ValueError):
    """A well-formed message holding a value we refuse (an array that lies, ...)."""


def _is_numpy(value: object) -> bool:
    return type(value).__module__ == "numpy"


def _encode_array(array: Any) -> msgpack.ExtType:
    import numpy

    dtype = array.dtype
    if dtype.hasobject or dtype.fields is not None:
        raise TypeError(
            f"the msgpack codec carries NumPy arrays of plain dtypes, not {dtype} "
            "(objects and structured dtypes would need pickle)"
        )
    if array.ndim > _MAX_DIMENSIONS:
        raise TypeError(f"the msgpack codec carries arrays of at most {_MAX_DIMENSIONS} dimensions")
    name = dtype.str.encode()
    head = _ARRAY_HEAD.pack(len(name), array.ndim) + name
    head += struct.pack(f"<{array.ndim}Q", *array.shape)
    return msgpack.ExtType(EXT_NDARRAY, head + numpy.ascontiguousarray(array).tobytes())


def _decode_array(data: bytes) -> Any:
    try:
        import numpy
    except ImportError:
        raise BadValue("a NumPy array arrived, but NumPy is not installed here") from None
    if len(data) < _ARRAY_HEAD.size:
        raise BadValue("truncated array header")
    name_length, ndim = _ARRAY_HEAD.unpack_from(data)
    if name_length > _MAX_DTYPE or ndim > _MAX_DIMENSIONS:
        raise BadValue("malformed array header")
    offset = _ARRAY_HEAD.size + name_length
    shape_end = offset + 8 * ndim
    if len(data) < shape_end:
        raise BadValue("truncated array header")
    try:
        dtype = numpy.dtype(data[_ARRAY_HEAD.size : offset].decode("ascii"))
    except (TypeError, ValueError, UnicodeDecodeError):
        raise BadValue("an array with an unknown dtype") from None
    if dtype.hasobject or dtype.fields is not None:
        raise BadValue(f"refused an array of dtype {dtype}")
    shape = struct.unpack_from(f"<{ndim}Q", data, offset)
    count = 1
    for extent in shape:
        count *= extent
    if count * dtype.itemsize != len(data) - shape_end:
        raise BadValue("an array whose data does not match its dtype and shape")
    return numpy.frombuffer(data, dtype, count, shape_end).reshape(shape)


def _msgpack_default(value: Any) -> Any:
    if _is_numpy(value):
        import numpy

        if isinstance(value, numpy.ndarray):
            return _encode_array(value)
        if isinstance(value, numpy.generic):
            return value.item()
    raise TypeError(f"the msgpack codec cannot carry a {type(value).__qualname__}")


def _msgpack_ext(code: int, data: bytes) -> Any:
    if code == EXT_NDARRAY:
        return _decode_array(data)
    raise BadValue(f"unknown MessagePack extension type {code}")


class MsgpackCodec(Codec):
    """MessagePack (the default): plain values, bytes-likes, NumPy arrays."""

    name = "msgpack"

    def __init__(self) -> None:
        # A Packer reuses its buffer; callers serialize pack() (the send lock).
        self.pack = msgpack.Packer(default=_msgpack_default, use_bin_type=True).pack

    def unpack(self, data: Any) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_msgpack_ext)

    def encode(self, message: Any) -> bytes:
        try:
            data: bytes = self.pack(message)
        except (TypeError, ValueError, OverflowError) as error:
            raise TypeError(f"cannot encode with msgpack: {error}") from None
        return data

    def decode(self, data: Any) -> Any:
        try:
            return self.unpack(data)
        except BadValue:
            raise
        except Exception as error:  # msgpack raises several kinds on garbage
            raise ValueError(f"malformed MessagePack ({type(error).__name__})") from None


class JsonCodec(Codec):
    """JSON: None, bool, int, float, str, list, dict with str keys (no bytes, no arrays)."""

    name = "json"

    def pack(self, message: Any) -> bytes:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()

    def unpack(self, data: Any) -> Any:
        return json.loads(bytes(data))

    def encode(self, message: Any) -> bytes:
        try:
            return self.pack(message)
        except (TypeError, ValueError) as error:
            raise TypeError(f"cannot encode with json: {error}") from None

    def decode(self, data: Any) -> Any:
        try:
            return self.unpack(data)
        except (ValueError, RecursionError) as error:
            raise ValueError(f"malformed JSON ({type(error).__name__})") from None


class PickleCodec(Codec):
    """pickle: any picklable object, and only on an authenticated channel."""

    name = "pickle"
    safe = False

    def pack(self, message: Any) -> bytes:
        return pickle.dumps(message, protocol=5)

    def unpack(self, data: Any) -> Any:
        return pickle.loads(data)

    def encode(self, message: Any) -> bytes:
        try:
            return self.pack(message)
        except Exception as error:
            raise TypeError(f"cannot encode with pickle: {error}") from None

    def decode(self, data: Any) -> Any:
        try:
            return self.unpack(data)
        except Exception as error:
            raise ValueError(f"malformed pickle ({type(error).__name__})") from None


_CODECS = {codec.name: codec for codec in (MsgpackCodec, JsonCodec, PickleCodec)}

#: The codec names :func:`make_codec` accepts.
CODEC_NAMES = tuple(_CODECS)


def check_codec_name(name: object) -> str:
    """Validate a ``codec=`` argument (before any system call)."""
    if not isinstance(name, str):
        raise TypeError(f"codec must be a str, not {type(name).__name__}")
    if name not in _CODECS:
        raise ValueError(f"codec must be one of {', '.join(map(repr, CODEC_NAMES))}; got {name!r}")
    return name


def make_codec(name: str) -> Codec:
    """A new codec object (each connection has its own: an encoder keeps state)."""
    return _CODECS[check_codec_name(name)]()


def check_codec_allowed(codec: Codec, channel: Channel) -> None:
    """The one place that decides whether ``codec`` may run on ``channel``.

    MessagePack and JSON run anywhere. pickle runs only on a channel whose peer
    proved who it is (``Channel.authenticated``: a shared ``secret`` or checked
    peer credentials), because unpickling runs code chosen by the sender.

    Raises:
        ValueError: the codec needs an authenticated channel and this one is not.
    """
    if codec.safe or channel.authenticated is True:
        return
    raise ValueError(
        f"codec={codec.name!r} runs only on an authenticated channel (its peer could "
        f"run any code here); {channel.describe()} is not authenticated"
    )
