"""XDR, the External Data Representation of RFC 4506, as composable type objects.

Every XDR type is a :class:`Type` with ``encode(value) -> bytes`` and
``decode(data) -> value``::

    from unixipc.oncrpc import xdr

    xdr.INT.encode(-1)                                  # b"\\xff\\xff\\xff\\xff"
    names = xdr.Array(xdr.String(255), 16)              # string<255> names<16>
    assert names.decode(names.encode(["a", "bc"])) == ["a", "bc"]

Python values: ``int`` (int, unsigned, hyper, unsigned hyper), ``float`` (float,
double), ``bool``, members of an :class:`enum.IntEnum` (:class:`Enum`),
``bytes`` (opaque), ``str`` (string: UTF-8, with bytes that are not UTF-8 kept
as lone surrogates, so any bytes round-trip exactly; ``bytes`` are accepted
when encoding), ``list`` (arrays), ``None`` or a value (optional data), and
dataclasses deriving from :class:`Struct` and :class:`Union` (see
:func:`define_struct` and :func:`define_union`; ``unixipc.oncrpc.load`` and
``unixipc rpcgen`` write them from a ``.x`` file).

Decoding treats the data as hostile: every length and count read from it is
checked against the declared maximum and against the bytes actually left
before anything is allocated, booleans, enums, optional flags and union
discriminants must have a declared value, and the whole input must be
consumed; anything else raises :class:`XdrError` (a ``ValueError``). Encoding
refuses values that do not fit with ``TypeError``/``ValueError`` naming the
field. Padding bytes are written as zeros and not checked when read (as the C
library does). ``quadruple`` has no Python type and is not supported.

Speed: runs of fixed-size fields in a struct are packed with one precompiled
:class:`struct.Struct`, arrays of numbers with one ``struct`` call, and each
struct gets an encoder and decoder compiled for it on first use. Linked lists
written the rpcgen way (a struct whose last field is an optional pointer to
the same struct) are encoded and decoded in a loop, so their length is not
limited by Python's recursion limit.
"""

from __future__ import annotations

import dataclasses
import enum
import keyword
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from ..errors import IPCError

__all__ = (
    "BOOL",
    "DOUBLE",
    "FLOAT",
    "HYPER",
    "INT",
    "UNSIGNED",
    "UNSIGNED_HYPER",
    "VOID",
    "Array",
    "Enum",
    "FixedArray",
    "FixedOpaque",
    "Opaque",
    "Optional",
    "String",
    "Struct",
    "StructType",
    "Type",
    "Union",
    "UnionType",
    "XdrError",
    "as_type",
    "define_struct",
    "define_union",
)

T = TypeVar("T")
_S = TypeVar("_S", bound="Struct")
_U = TypeVar("_U", bound="Union")
_C = TypeVar("_C", bound="_Composite")

#: The largest length or count XDR can express (the default maximum of ``<>``).
UNLIMITED = 0xFFFFFFFF

_U32 = struct.Struct(">I")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by length % 4
_FALSE, _TRUE = b"\0\0\0\0", b"\0\0\0\1"

Encoder = Callable[[Any, bytearray], None]
Decoder = Callable[[bytes, int], tuple[Any, int]]


class XdrError(IPCError, ValueError):
    """XDR data could not be decoded: truncated, too long, or a value not allowed here."""


def _padded(length: int) -> int:
    return (length + 3) & ~3


class Type(Generic[T]):
    """An XDR type: encodes Python values of type ``T`` and decodes them back."""

    #: The type as written in the XDR language, for messages.
    name: str = "?"
    #: The fewest bytes an encoded value takes (bounds counts read from the wire).
    min_size: int = 4
    #: A ``struct`` format character when the type is a plain fixed-size number.
    fmt: str | None = None

    _enc: Encoder
    _dec: Decoder

    def encode(self, value: T) -> bytes:
        """The XDR encoding of ``value``.

        Raises:
            TypeError, ValueError: ``value`` does not fit this type (the message
                names the field).
        """
        out = bytearray()
        try:
            self._enc(value, out)
        except RecursionError:
            raise ValueError(f"{self.name}: value nested too deeply to encode") from None
        except (struct.error, TypeError, ValueError, AttributeError, KeyError, OverflowError):
            self._explain(value)
        return bytes(out)

    def decode(self, data: Any) -> T:
        """Decode a whole buffer holding exactly one value of this type.

        Raises:
            XdrError: the data is truncated, too long, or holds a value not allowed.
            TypeError: ``data`` is not a bytes-like object.
        """
        buffer = _as_bytes(data)
        value, end = self.decode_from(buffer, 0)
        if end != len(buffer):
            raise XdrError(f"{self.name}: {len(buffer) - end} bytes left over after the value")
        return value

    def decode_from(self, data: Any, offset: int = 0) -> tuple[T, int]:
        """Decode one value starting at ``offset``; return it and the offset after it.

        Raises:
            XdrError: as :meth:`decode` (trailing bytes are left to the caller).
        """
        buffer = _as_bytes(data)
        try:
            value, end = self._dec(buffer, offset)
        except struct.error:
            raise XdrError(f"{self.name}: the data ends in the middle of a value") from None
        except RecursionError:
            raise XdrError(f"{self.name}: data nested too deeply") from None
        return value, end

    def _explain(self, value: Any) -> None:
        """Raise a TypeError/ValueError naming the part of ``value`` that does not fit."""
        self._check(value, self.name)
        raise ValueError(f"{self.name}: cannot encode {value!r}")  # pragma: no cover

    def _check(self, value: Any, path: str) -> None:
        """Slow validation used only to explain a failed encoding."""
        out = bytearray()
        try:
            self._enc(value, out)
        except (struct.error, OverflowError, ValueError, KeyError) as error:
            raise ValueError(f"{path}: {value!r} is not a valid {self.name} ({error})") from None
        except (TypeError, AttributeError) as error:
            raise TypeError(f"{path}: {value!r} is not a valid {self.name} ({error})") from None

    def _resolve(self) -> None:
        """Finish the type once every class it refers to is defined (idempotent)."""

    def __repr__(self) -> str:
        return f"<XDR {self.name}>"


def _as_bytes(data: Any) -> bytes:
    if type(data) is bytes:
        return data
    try:
        return memoryview(data).tobytes()
    except TypeError:
        raise TypeError(
            f"XDR data must be a bytes-like object, not {type(data).__name__}"
        ) from None


# ---------------------------------------------------------------------------
# Numbers, booleans, void


class _Number(Type[T]):
    def __init__(self, name: str, fmt: str, min_value: float, max_value: float) -> None:
        self.name = name
        self.fmt = fmt
        compiled = struct.Struct(">" + fmt)
        self.min_size = compiled.size
        pack, unpack, size = compiled.pack, compiled.unpack_from, compiled.size
        self._range = (min_value, max_value)

        def _enc(value: Any, out: bytearray) -> None:
            out += pack(value)

        def _dec(buffer: bytes, offset: int) -> tuple[Any, int]:
            return unpack(buffer, offset)[0], offset + size

        self._enc, self._dec = _enc, _dec

    def _check(self, value: Any, path: str) -> None:
        if self.fmt in ("f", "d"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{path}: {self.name} needs a float, not {type(value).__name__}")
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{path}: {self.name} needs an int, not {type(value).__name__}")
            low, high = self._range
            if not low <= value <= high:
                raise ValueError(f"{path}: {value!r} does not fit in {self.name}")
        super()._check(value, path)


class _Bool(Type[bool]):
    name = "bool"

    def __init__(self) -> None:
        words = {False: _FALSE, True: _TRUE}
        unpack = _U32.unpack_from

        def _enc(value: Any, out: bytearray) -> None:
            out += words[value]

        def _dec(buffer: bytes, offset: int) -> tuple[bool, int]:
            word = unpack(buffer, offset)[0]
            if word > 1:
                raise XdrError(f"bool: {word} is neither 0 nor 1")
            return word == 1, offset + 4

        self._enc, self._dec = _enc, _dec

    def _check(self, value: Any, path: str) -> None:
        if value is not True and value is not False and value not in (0, 1):
            raise TypeError(f"{path}: bool needs True or False, not {value!r}")


class _Void(Type[None]):
    name = "void"
    min_size = 0

    def __init__(self) -> None:
        def _enc(value: Any, out: bytearray) -> None:
            if value is not None:
                raise TypeError("void takes None")

        def _dec(buffer: bytes, offset: int) -> tuple[None, int]:
            return None, offset

        self._enc, self._dec = _enc, _dec

    def _check(self, value: Any, path: str) -> None:
        if value is not None:
            raise TypeError(f"{path}: void takes None, not {value!r}")


INT: Type[int] = _Number("int", "i", -(2**31), 2**31 - 1)
UNSIGNED: Type[int] = _Number("unsigned int", "I", 0, 2**32 - 1)
HYPER: Type[int] = _Number("hyper", "q", -(2**63), 2**63 - 1)
UNSIGNED_HYPER: Type[int] = _Number("unsigned hyper", "Q", 0, 2**64 - 1)
FLOAT: Type[float] = _Number("float", "f", float("-inf"), float("inf"))
DOUBLE: Type[float] = _Number("double", "d", float("-inf"), float("inf"))
BOOL: Type[bool] = _Bool()
VOID: Type[None] = _Void()


class Enum(Type[Any]):
    """An XDR enum, as an :class:`enum.IntEnum` class (decoding gives its members)."""

    def __init__(self, cls: type[enum.IntEnum]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, enum.IntEnum)):
            raise TypeError(f"Enum needs an IntEnum subclass, not {cls!r}")
        self.cls = cls
        self.name = f"enum {cls.__name__}"
        self._members = members = {int(member): member for member in cls}
        for value in members:
            if not -(2**31) <= value < 2**31:
                raise ValueError(f"{self.name}: {value} does not fit in 32 bits")
        words = {value: struct.pack(">i", value) for value in members}
        unpack = struct.Struct(">i").unpack_from
        name = self.name

        def _enc(value: Any, out: bytearray) -> None:
            out += words[value]

        def _dec(buffer: bytes, offset: int) -> tuple[Any, int]:
            word = unpack(buffer, offset)[0]
            member = members.get(word)
            if member is None:
                raise XdrError(f"{name}: {word} is not one of its values")
            return member, offset + 4

        self._enc, self._dec = _enc, _dec

    def _check(self, value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{path}: {self.name} needs an int, not {type(value).__name__}")
        if value not in self._members:
            raise ValueError(f"{path}: {value!r} is not a value of {self.name}")


# ---------------------------------------------------------------------------
# Opaque data and strings


def _check_length(value: object, argument: str, *, allow_none: bool = False) -> int:
    if value is None and allow_none:
        return UNLIMITED
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if not 0 <= value <= UNLIMITED:
        raise ValueError(f"{argument} must be between 0 and {UNLIMITED}, got {value}")
    return value


class FixedOpaque(Type[bytes]):
    """``opaque name[n]``: exactly ``n`` bytes."""

    def __init__(self, size: int) -> None:
        size = _check_length(size, "size")
        self.size = size
        self.name = f"opaque[{size}]"
        self.min_size = _padded(size)
        pad = _PAD[size & 3]
        name = self.name

        def _enc(value: Any, out: bytearray) -> None:
            if len(value) != size:
                raise ValueError(f"needs exactly {size} bytes")
            out += value
            out += pad

        def _dec(buffer: bytes, offset: int) -> tuple[bytes, int]:
            end = offset + size
            if end > len(buffer):
                raise XdrError(f"{name}: the data ends {end - len(buffer)} bytes early")
            return buffer[offset:end], offset + _padded(size)

        self._enc, self._dec = _enc, _dec

    def _check(self, value: Any, path: str) -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"{path}: {self.name} needs bytes, not {type(value).__name__}")
        if len(value) != self.size:
            raise ValueError(f"{path}: {self.name} needs {self.size} bytes, got {len(value)}")


def _variable_decoder(name: str, maximum: int) -> Decoder:
    """Decode a length-prefixed byte string: length checked, then the bytes."""
    unpack = _U32.unpack_from

    def _dec(buffer: bytes, offset: int) -> tuple[bytes, int]:
        length = unpack(buffer, offset)[0]
        if length > maximum:
            raise XdrError(f"{name}: length {length} exceeds the maximum of {maximum}")
        start = offset + 4
        end = start + length
        if end > len(buffer):
            raise XdrError(
                f"{name}: length {length} but only {max(0, len(buffer) - start)} bytes follow"
            )
        return buffer[start:end], start + ((length + 3) & ~3)

    return _dec


class Opaque(Type[bytes]):
    """``opaque name<max>``: up to ``maximum`` bytes (``None``: no limit but the data's)."""

    def __init__(self, maximum: int | None = None) -> None:
        maximum = _check_length(maximum, "maximum", allow_none=True)
        self.maximum = maximum
        self.name = "opaque<>" if maximum == UNLIMITED else f"opaque<{maximum}>"
        pack = _U32.pack

        def _enc(value: Any, out: bytearray) -> None:
            length = len(value)
            if length > maximum:
                raise ValueError(f"longer than {maximum} bytes")
            out += pack(length)
            out += value
            out += _PAD[length & 3]

        self._enc, self._dec = _enc, _variable_decoder(self.name, maximum)

    def _check(self, value: Any, path: str) -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"{path}: {self.name} needs bytes, not {type(value).__name__}")
        if isinstance(value, memoryview) and value.itemsize != 1:
            raise TypeError(f"{path}: {self.name} needs a memoryview of bytes")
        if len(value) > self.maximum:
            raise ValueError(f"{path}: {len(value)} bytes is more than {self.name} allows")


class String(Type[str]):
    """``string name<max>``: text of up to ``maximum`` bytes once encoded.

    Decodes to ``str`` (UTF-8; bytes that are not UTF-8 become lone surrogates
    and encode back to the same bytes); encodes ``str`` or ``bytes``.
    """

    def __init__(self, maximum: int | None = None) -> None:
        maximum = _check_length(maximum, "maximum", allow_none=True)
        self.maximum = maximum
        self.name = "string<>" if maximum == UNLIMITED else f"string<{maximum}>"
        pack = _U32.pack
        raw = _variable_decoder(self.name, maximum)

        def _enc(value: Any, out: bytearray) -> None:
            data = value.encode("utf-8", "surrogateescape") if type(value) is str else value
            length = len(data)
            if length > maximum:
                raise ValueError(f"longer than {maximum} bytes")
            out += pack(length)
            out += data
            out += _PAD[length & 3]

        def _dec(buffer: bytes, offset: int) -> tuple[str, int]:
            data, end = raw(buffer, offset)
            return data.decode("utf-8", "surrogateescape"), end

        self._enc, self._dec = _enc, _dec

    def _check(self, value: Any, path: str) -> None:
        if not isinstance(value, (str, bytes, bytearray)):
            raise TypeError(f"{path}: {self.name} needs str or bytes, not {type(value).__name__}")
        if isinstance(value, str):
            try:
                value = value.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError as error:
                raise ValueError(f"{path}: {error}") from None
        if len(value) > self.maximum:
            raise ValueError(f"{path}: {value!r} is longer than {self.name} allows")


# ---------------------------------------------------------------------------
# Arrays and optional data


def as_type(target: Any) -> Type[Any]:
    """The XDR type of ``target``: a :class:`Type`, a :class:`Struct` or :class:`Union`
    subclass (its defined type) or an :class:`enum.IntEnum` class.

    Raises:
        TypeError: ``target`` is none of those, or a class not yet defined.
    """
    if isinstance(target, Type):
        return target
    if isinstance(target, type):
        if issubclass(target, (Struct, Union)):
            xdr_type = target.__dict__.get("xdr_type")
            if xdr_type is None:
                raise TypeError(f"{target.__name__} has no XDR definition yet")
            return xdr_type  # type: ignore[no-any-return]
        if issubclass(target, enum.IntEnum):
            cached = _ENUMS.get(target)
            if cached is None:
                cached = _ENUMS[target] = Enum(target)
            return cached
    raise TypeError(f"not an XDR type: {target!r}")


_ENUMS: dict[type[enum.IntEnum], Enum] = {}


class _Deferred(Type[Any]):
    """A type named by a class that may not be defined yet (recursive structs)."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.name = getattr(target, "__name__", repr(target))
        self.min_size = 4

        def _enc(value: Any, out: bytearray) -> None:
            self._enc = as_type(self.target)._enc
            self._enc(value, out)

        def _dec(buffer: bytes, offset: int) -> tuple[Any, int]:
            self._dec = as_type(self.target)._dec
            return self._dec(buffer, offset)

        self._enc, self._dec = _enc, _dec

    def _check(self, value: Any, path: str) -> None:
        as_type(self.target)._check(value, path)

    def _resolve(self) -> None:
        resolved = as_type(self.target)
        self.min_size = resolved.min_size


def _element(target: Any) -> Type[Any]:
    """An element type: resolved now if possible, else when first used."""
    if isinstance(target, Type):
        return target
    try:
        return as_type(target)
    except TypeError:
        if isinstance(target, type) and issubclass(target, (Struct, Union)):
            return _Deferred(target)
        raise


def _elements_fit(name: str, count: int, element: Type[Any], buffer: bytes, offset: int) -> None:
    # Counted as at least one byte each, so even empty elements cannot make us loop
    # more often than there are bytes.
    if count * max(element.min_size, 1) > len(buffer) - offset:
        raise XdrError(
            f"{name}: {count} elements cannot fit in the {len(buffer) - offset} bytes left"
        )


class _ArrayBase(Type[list[Any]]):
    element: Type[Any]

    def _resolve(self) -> None:
        self.element._resolve()

    def _check_items(self, value: Any, path: str) -> None:
        if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Sequence):
            raise TypeError(f"{path}: {self.name} needs a sequence, not {type(value).__name__}")
        for index, item in enumerate(value):
            self.element._check(item, f"{path}[{index}]")


class FixedArray(_ArrayBase):
    """``type name[n]``: exactly ``n`` elements (a list when decoded)."""

    def __init__(self, element: Any, size: int) -> None:
        self.element = element = _element(element)
        if element.min_size == 0:
            raise ValueError("arrays of void are not allowed")
        self.size = size = _check_length(size, "size")
        self.name = f"{element.name}[{size}]"
        self.min_size = size * element.min_size
        name = self.name
        if element.fmt is not None:
            compiled = struct.Struct(f">{size}{element.fmt}")
            pack, unpack, nbytes = compiled.pack, compiled.unpack_from, compiled.size

            def _enc(value: Any, out: bytearray) -> None:
                if len(value) != size:
                    raise ValueError(f"needs {size} elements")
                out += pack(*value)

            def _dec(buffer: bytes, offset: int) -> tuple[list[Any], int]:
                return list(unpack(buffer, offset)), offset + nbytes

        else:

            def _enc(value: Any, out: bytearray) -> None:
                if len(value) != size:
                    raise ValueError(f"needs {size} elements")
                encode = element._enc
                for item in value:
                    encode(item, out)

            def _dec(buffer: bytes, offset: int) -> tuple[list[Any], int]:
                _elements_fit(name, size, element, buffer, offset)
                decode = element._dec
                items = []
                for _ in range(size):
                    item, offset = decode(buffer, offset)
                    items.append(item)
                return items, offset

        self._enc, self._dec = _enc, _dec

    def _check(self, value: Any, path: str) -> None:
        self._check_items(value, path)
        if len(value) != self.size:
            raise ValueError(f"{path}: {self.name} needs {self.size} elements, got {len(value)}")


class Array(_ArrayBase):
    """``type name<max>``: up to ``maximum`` elements (a list when decoded)."""

    def __init__(self, element: Any, maximum: int | None = None) -> None:
        self.element = element = _element(element)
        if element.min_size == 0 and not isinstance(element, _Deferred):
            raise ValueError("arrays of void are not allowed")
        self.maximum = maximum = _check_length(maximum, "maximum", allow_none=True)
        self.name = f"{element.name}<{'' if maximum == UNLIMITED else maximum}>"
        name = self.name
        pack_count, unpack_count = _U32.pack, _U32.unpack_from

        def check_count(count: int, buffer: bytes, offset: int) -> None:
            if count > maximum:
                raise XdrError(f"{name}: {count} elements exceed the maximum of {maximum}")
            _elements_fit(name, count, element, buffer, offset)

        if element.fmt is not None:
            fmt = element.fmt
            width = struct.calcsize(fmt)

            def _enc(value: Any, out: bytearray) -> None:
                count = len(value)
                if count > maximum:
                    raise ValueError(f"more than {maximum} elements")
                out += pack_count(count)
                out += struct.pack(f">{count}{fmt}", *value)

            def _dec(buffer: bytes, offset: int) -> tuple[list[Any], int]:
                count = unpack_count(buffer, offset)[0]
                offset += 4
                check_count(count, buffer, offset)
                items = list(struct.unpack_from(f">{count}{fmt}", buffer, offset))
                return items, offset + count * width

        else:

            def _enc(value: Any, out: bytearray) -> None:
                count = len(value)
                if count > maximum:
                    raise ValueError(f"more than {maximum} elements")
                out += pack_count(count)
                encode = element._enc
                for item in value:
                    encode(item, out)

            def _dec(buffer: bytes, offset: int) -> tuple[list[Any], int]:
                count = unpack_count(buffer, offset)[0]
                offset += 4
                check_count(count, buffer, offset)
                decode = element._dec
                items = []
                for _ in range(count):
                    item, offset = decode(buffer, offset)
                    items.append(item)
                return items, offset

        self._enc, self._dec = _enc, _dec

    def _check(self, value: Any, path: str) -> None:
        self._check_items(value, path)
        if len(value) > self.maximum:
            raise ValueError(
                f"{path}: {self.name} allows {self.maximum} elements, got {len(value)}"
            )


class Optional(Type[Any]):
    """``type *name``: optional data, ``None`` or a value."""

    def __init__(self, element: Any) -> None:
        self.element = element = _element(element)
        self.name = f"{element.name} *"
        unpack = _U32.unpack_from
        name = self.name

        def _enc(value: Any, out: bytearray) -> None:
            if value is None:
                out += _FALSE
            else:
                out += _TRUE
                element._enc(value, out)

        def _dec(buffer: bytes, offset: int) -> tuple[Any, int]:
            flag = unpack(buffer, offset)[0]
            if flag == 0:
                return None, offset + 4
            if flag != 1:
                raise XdrError(f"{name}: presence flag {flag} is neither 0 nor 1")
            found: tuple[Any, int] = element._dec(buffer, offset + 4)
            return found

        self._enc, self._dec = _enc, _dec

    def _resolve(self) -> None:
        self.element._resolve()

    def _check(self, value: Any, path: str) -> None:
        if value is not None:
            self.element._check(value, path)


# ---------------------------------------------------------------------------
# Structs


def _check_identifier(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{what} must be a Python identifier, not {name!r}")
    return name


class _Composite:
    """What structs and unions share: encoding themselves."""

    __slots__ = ()
    xdr_type: ClassVar[Type[Any]]

    def to_xdr(self) -> bytes:
        """This value's XDR encoding."""
        return type(self).xdr_type.encode(self)

    @classmethod
    def from_xdr(cls: type[_C], data: Any) -> _C:
        """Decode a value of this type from ``data`` (all of it).

        Raises:
            XdrError: the data is not a valid encoding.
        """
        value: _C = cls.xdr_type.decode(data)
        return value


class Struct(_Composite):
    """Base class of XDR structs: a dataclass whose fields are the struct's, in order.

    Define one with ``@dataclasses.dataclass`` and then :func:`define_struct`.
    """

    __slots__ = ()
    #: Set by :func:`define_struct`.
    xdr_type: ClassVar[StructType[Any]]


class StructType(Type[T]):
    """The XDR type of a :class:`Struct` subclass (made by :func:`define_struct`)."""

    def __init__(self, cls: type[T], fields: Sequence[tuple[str, Any]]) -> None:
        self.cls = cls
        self.name = f"struct {cls.__name__}"
        self.fields = [(_check_identifier(n, "field name"), _element(t)) for n, t in fields]
        if not self.fields:
            raise ValueError(f"{self.name} has no fields")
        self.min_size = 4  # refined in _resolve, once the field types are all defined

        def _enc(value: Any, out: bytearray) -> None:
            self._compile()
            self._enc(value, out)

        def _dec(buffer: bytes, offset: int) -> tuple[Any, int]:
            self._compile()
            return self._dec(buffer, offset)

        self._enc, self._dec = _enc, _dec
        self._compiled = False
        self._resolving = False

    def _resolve(self) -> None:
        if self._resolving:
            return
        self._resolving = True
        for _, field_type in self.fields:
            field_type._resolve()
        self.min_size = (
            sum(4 if self._links_to_self(t) else t.min_size for _, t in self.fields) or 4
        )

    def _links_to_self(self, field_type: Type[Any]) -> bool:
        if not isinstance(field_type, Optional):
            return False
        element = field_type.element
        if isinstance(element, _Deferred):
            return element.target is self.cls
        return element is self

    def _compile(self) -> None:
        """Compile an encoder and a decoder for this struct's exact fields."""
        if self._compiled:
            return
        self._compiled = True
        self._resolve()
        fields = self.fields
        linked = self._links_to_self(fields[-1][1])
        body = fields[:-1] if linked else fields
        namespace: dict[str, Any] = {
            "cls": self.cls,
            "XdrError": XdrError,
            "TRUE": _TRUE,
            "FALSE": _FALSE,
            "unpack_flag": _U32.unpack_from,
            "name": self.name,
        }
        encode = ["def _enc(v, out):"]
        encode_item = [
            "    if not isinstance(v, cls):",
            "        raise TypeError(f'needs a {cls.__name__}, not {type(v).__name__}')",
        ]
        decode_item: list[str] = []
        names = []
        run: list[tuple[str, Type[Any]]] = []

        def flush_run() -> None:
            if not run:
                return
            index = len(namespace)
            compiled = struct.Struct(">" + "".join(t.fmt or "" for _, t in run))
            namespace[f"pack{index}"] = compiled.pack
            namespace[f"unpack{index}"] = compiled.unpack_from
            attributes = ", ".join(f"v.{n}" for n, _ in run)
            encode_item.append(f"    out += pack{index}({attributes})")
            locals_ = "".join(f"f_{n}, " for n, _ in run)
            decode_item.append(f"    {locals_}= unpack{index}(buffer, offset)")
            decode_item.append(f"    offset += {compiled.size}")
            run.clear()

        for field_name, field_type in body:
            names.append(field_name)
            if field_type.fmt is not None:
                run.append((field_name, field_type))
                continue
            flush_run()
            index = len(namespace)
            namespace[f"t{index}"] = field_type
            encode_item.append(f"    t{index}._enc(v.{field_name}, out)")
            decode_item.append(f"    f_{field_name}, offset = t{index}._dec(buffer, offset)")
        flush_run()
        arguments = ", ".join(f"f_{n}" for n in names)
        if linked:
            next_name = fields[-1][0]
            encode += [
                "    while True:",
                *("    " + line for line in encode_item),
                f"        v = v.{next_name}",
                "        if v is None:",
                "            out += FALSE",
                "            return",
                "        out += TRUE",
            ]
            decode = [
                "def _dec(buffer, offset):",
                "    first = previous = None",
                "    while True:",
                *("    " + line for line in decode_item),
                f"        item = cls({arguments}{', ' if arguments else ''}None)",
                "        if previous is None:",
                "            first = item",
                "        else:",
                f"            previous.{next_name} = item",
                "        previous = item",
                "        flag = unpack_flag(buffer, offset)[0]",
                "        offset += 4",
                "        if flag == 0:",
                "            return first, offset",
                "        if flag != 1:",
                "            raise XdrError(f'{name}: presence flag {flag} is neither 0 nor 1')",
            ]
        else:
            encode += encode_item
            decode = [
                "def _dec(buffer, offset):",
                *decode_item,
                f"    return cls({arguments}), offset",
            ]
        source = "\n".join(encode + decode) + "\n"
        exec(compile(source, f"<xdr {self.name}>", "exec"), namespace)
        self._enc, self._dec = namespace["_enc"], namespace["_dec"]

    def _check(self, value: Any, path: str) -> None:
        linked = self._links_to_self(self.fields[-1][1])
        body = self.fields[:-1] if linked else self.fields
        base, position = path, 0
        while True:
            if not isinstance(value, self.cls):
                raise TypeError(f"{path}: needs a {self.cls.__name__}, not {type(value).__name__}")
            for field_name, field_type in body:
                if not hasattr(value, field_name):
                    raise TypeError(f"{path}: {self.cls.__name__} has no field {field_name!r}")
                field_type._check(getattr(value, field_name), f"{path}.{field_name}")
            if not linked:
                return
            value = getattr(value, self.fields[-1][0], None)
            if value is None:
                return
            position += 1
            path = f"{base} (list item {position})"


def define_struct(cls: type[_S], fields: Sequence[tuple[str, Any]]) -> StructType[_S]:
    """Make ``cls`` (a :class:`Struct` dataclass) the XDR struct with ``fields``.

    ``fields`` lists ``(name, type)`` in wire order; a type is a :class:`Type`,
    a Struct/Union class (which may be defined later: recursive structs) or an
    IntEnum class. The dataclass's fields must be the same names in the same order.

    Raises:
        TypeError, ValueError: ``cls`` is not such a dataclass, or fields disagree.
    """
    if not (isinstance(cls, type) and issubclass(cls, Struct)):
        raise TypeError(f"define_struct needs a Struct subclass, not {cls!r}")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass")
    declared = [field.name for field in dataclasses.fields(cls)]
    if declared != [name for name, _ in fields]:
        raise ValueError(
            f"{cls.__name__}: dataclass fields {declared} differ from the XDR fields "
            f"{[name for name, _ in fields]}"
        )
    xdr_type: StructType[_S] = StructType(cls, fields)
    cls.xdr_type = xdr_type
    return xdr_type


# ---------------------------------------------------------------------------
# Discriminated unions


class Union(_Composite):
    """Base class of XDR unions: a dataclass of two fields, the discriminant and the arm.

    The first field is named like the union's discriminant declaration, the
    second (``value``) holds the selected arm's value (``None`` for a void arm).
    Define one with ``@dataclasses.dataclass`` and then :func:`define_union`.
    """

    __slots__ = ()
    #: Set by :func:`define_union`.
    xdr_type: ClassVar[UnionType[Any]]

    def _arm(self, name: str) -> Any:
        """The value when the discriminant selects the arm called ``name``."""
        xdr_type = type(self).xdr_type
        discriminant = getattr(self, xdr_type.discriminant_name)
        selected = xdr_type.arm_name(discriminant)
        if selected != name:
            raise AttributeError(
                f"{type(self).__name__}: arm {name!r} is not selected by "
                f"{xdr_type.discriminant_name} = {discriminant!r} (that is {selected!r})"
            )
        return getattr(self, xdr_type.value_name)


_NO_ARM = object()


class UnionType(Type[T]):
    """The XDR type of a :class:`Union` subclass (made by :func:`define_union`)."""

    def __init__(
        self,
        cls: type[T],
        discriminant: tuple[str, Any],
        arms: Mapping[int, tuple[str | None, Any]],
        default: tuple[str | None, Any] | None,
    ) -> None:
        self.cls = cls
        self.name = f"union {cls.__name__}"
        declared = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
        if len(declared) != 2 or declared[0] != discriminant[0]:
            raise ValueError(
                f"{cls.__name__}: the dataclass needs two fields, {discriminant[0]!r} "
                f"and the arm's value, not {declared}"
            )
        self.discriminant_name, self.value_name = declared
        self.discriminant = discriminant_type = as_type(discriminant[1])
        if not (
            discriminant_type.fmt in ("i", "I") or isinstance(discriminant_type, (Enum, _Bool))
        ):
            raise TypeError(f"{self.name}: the discriminant must be int, unsigned, bool or enum")
        self.arms = {value: (n, _element(t)) for value, (n, t) in arms.items()}
        self.default = None if default is None else (default[0], _element(default[1]))
        arm_types = {value: t for value, (_, t) in self.arms.items()}
        default_type = None if self.default is None else self.default[1]
        discriminant_name, value_name, name = self.discriminant_name, self.value_name, self.name
        make: Any = cls
        encode_discriminant, decode_discriminant = discriminant_type._enc, discriminant_type._dec

        def _enc(value: Any, out: bytearray) -> None:
            if not isinstance(value, cls):
                raise TypeError(f"needs a {cls.__name__}, not {type(value).__name__}")
            selector = getattr(value, discriminant_name)
            arm = arm_types.get(selector, default_type)
            if arm is None:
                raise ValueError(f"no arm for {discriminant_name} = {selector!r}")
            encode_discriminant(selector, out)
            arm._enc(getattr(value, value_name), out)

        def _dec(buffer: bytes, offset: int) -> tuple[Any, int]:
            selector, offset = decode_discriminant(buffer, offset)
            arm = arm_types.get(selector, default_type)
            if arm is None:
                raise XdrError(f"{name}: no arm for {discriminant_name} = {selector!r}")
            item, offset = arm._dec(buffer, offset)
            return make(selector, item), offset

        self._enc, self._dec = _enc, _dec
        self._resolving = False

    def arm_name(self, discriminant: Any) -> str | None:
        """The name of the arm ``discriminant`` selects (None: void or no arm)."""
        arm = self.arms.get(discriminant, self.default)
        return None if arm is None else arm[0]

    def _resolve(self) -> None:
        if self._resolving:
            return
        self._resolving = True
        arms = [t for _, t in self.arms.values()]
        for arm in arms:
            arm._resolve()
        if self.default is not None:
            arms.append(self.default[1])
        self.min_size = 4 + min((t.min_size for t in arms), default=0)

    def _check(self, value: Any, path: str) -> None:
        if not isinstance(value, self.cls):
            raise TypeError(f"{path}: needs a {self.cls.__name__}, not {type(value).__name__}")
        selector = getattr(value, self.discriminant_name)
        self.discriminant._check(selector, f"{path}.{self.discriminant_name}")
        arm = self.arms.get(selector, self.default)
        if arm is None:
            raise ValueError(f"{path}: {self.name} has no arm for {selector!r}")
        arm[1]._check(getattr(value, self.value_name), f"{path}.{arm[0] or self.value_name}")


def define_union(
    cls: type[_U],
    discriminant: tuple[str, Any],
    arms: Mapping[int, tuple[str | None, Any]] | Iterable[tuple[int, tuple[str | None, Any]]],
    default: tuple[str | None, Any] | None = None,
) -> UnionType[_U]:
    """Make ``cls`` (a :class:`Union` dataclass) the XDR union described.

    ``discriminant`` is ``(name, type)`` with an int, unsigned, bool or enum type;
    ``arms`` maps each case value to ``(arm name, type)`` (name None and type
    :data:`VOID` for a void arm); ``default`` is the default arm, if any.

    Raises:
        TypeError, ValueError: the description is not a valid union.
    """
    if not (isinstance(cls, type) and issubclass(cls, Union)):
        raise TypeError(f"define_union needs a Union subclass, not {cls!r}")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass")
    xdr_type: UnionType[_U] = UnionType(cls, discriminant, dict(arms), default)
    cls.xdr_type = xdr_type
    return xdr_type
