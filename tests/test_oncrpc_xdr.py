"""XDR (RFC 4506): the wire format of every type, and decoding hostile data."""

from __future__ import annotations

import dataclasses
import enum
import math
import struct
import tracemalloc
from typing import Any

import pytest

from unixipc.oncrpc import XdrError, xdr


class Color(enum.IntEnum):
    RED = 0
    GREEN = 1
    NEGATIVE = -2


@dataclasses.dataclass(slots=True)
class Pair(xdr.Struct):
    a: int
    b: int


xdr.define_struct(Pair, [("a", xdr.INT), ("b", xdr.INT)])


@dataclasses.dataclass(slots=True)
class Record(xdr.Struct):
    count: int
    ratio: float
    flag: bool
    hue: Color
    name: str
    tag: bytes
    pairs: list[Pair]
    maybe: Pair | None


xdr.define_struct(
    Record,
    [
        ("count", xdr.UNSIGNED),
        ("ratio", xdr.DOUBLE),
        ("flag", xdr.BOOL),
        ("hue", Color),
        ("name", xdr.String(8)),
        ("tag", xdr.FixedOpaque(3)),
        ("pairs", xdr.Array(Pair, 4)),
        ("maybe", xdr.Optional(Pair)),
    ],
)


@dataclasses.dataclass(slots=True)
class Node(xdr.Struct):
    value: int
    next: Node | None


xdr.define_struct(Node, [("value", xdr.HYPER), ("next", xdr.Optional(Node))])


@dataclasses.dataclass(slots=True)
class Result(xdr.Union):
    status: Color
    value: Any = None


xdr.define_union(Result, ("status", Color), {0: ("count", xdr.INT), 1: (None, xdr.VOID)})


@dataclasses.dataclass(slots=True)
class Loose(xdr.Union):
    kind: int
    value: Any = None


xdr.define_union(Loose, ("kind", xdr.UNSIGNED), {7: ("text", xdr.String())}, ("other", xdr.INT))


def u32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


@pytest.mark.parametrize(
    ("xdr_type", "value", "wire"),
    [
        (xdr.INT, -(2**31), struct.pack(">i", -(2**31))),
        (xdr.INT, 2**31 - 1, struct.pack(">i", 2**31 - 1)),
        (xdr.UNSIGNED, 2**32 - 1, b"\xff" * 4),
        (xdr.HYPER, -(2**63), struct.pack(">q", -(2**63))),
        (xdr.UNSIGNED_HYPER, 2**64 - 1, b"\xff" * 8),
        (xdr.FLOAT, 1.5, struct.pack(">f", 1.5)),
        (xdr.DOUBLE, -0.0, b"\x80" + bytes(7)),
        (xdr.DOUBLE, math.inf, struct.pack(">d", math.inf)),
        (xdr.BOOL, True, u32(1)),
        (xdr.BOOL, False, u32(0)),
        (xdr.VOID, None, b""),
        (xdr.as_type(Color), Color.NEGATIVE, struct.pack(">i", -2)),
        (xdr.FixedOpaque(5), b"abcde", b"abcde\0\0\0"),
        (xdr.FixedOpaque(4), b"abcd", b"abcd"),
        (xdr.Opaque(), b"xy", u32(2) + b"xy\0\0"),
        (xdr.Opaque(3), b"", u32(0)),
        (xdr.String(), "h\u00e9", u32(3) + "h\u00e9".encode() + b"\0"),
        (xdr.String(), "\udcff", u32(1) + b"\xff\0\0\0"),  # not UTF-8: kept exactly
        (xdr.FixedArray(xdr.INT, 2), [1, -1], struct.pack(">ii", 1, -1)),
        (xdr.Array(xdr.UNSIGNED_HYPER), [1, 2], u32(2) + struct.pack(">QQ", 1, 2)),
        (xdr.Array(xdr.String(), 2), ["a", ""], u32(2, 1) + b"a\0\0\0" + u32(0)),
        (xdr.Optional(xdr.INT), None, u32(0)),
        (xdr.Optional(xdr.INT), 5, u32(1, 5)),
        (xdr.as_type(Pair), Pair(1, 2), u32(1, 2)),
        (xdr.as_type(Result), Result(Color.RED, 9), u32(0, 9)),
        (xdr.as_type(Result), Result(Color.GREEN), u32(1)),
        (xdr.as_type(Loose), Loose(7, "ab"), u32(7, 2) + b"ab\0\0"),
        (xdr.as_type(Loose), Loose(3, -1), u32(3) + struct.pack(">i", -1)),
    ],
)
def test_every_type_has_the_rfc_wire_format_and_round_trips(
    xdr_type: xdr.Type[Any], value: Any, wire: bytes
) -> None:
    assert xdr_type.encode(value) == wire
    decoded = xdr_type.decode(wire)
    assert decoded == value
    assert type(decoded) is type(value)
    assert xdr_type.encode(decoded) == wire


def test_a_struct_of_every_kind_round_trips_bit_exactly() -> None:
    record = Record(
        4000000000, -0.0, True, Color.GREEN, "\udcfe\u00e9", b"\0\1\2", [Pair(1, 2)], Pair(3, 4)
    )
    wire = record.to_xdr()
    assert len(wire) % 4 == 0
    back = Record.from_xdr(wire)
    assert back == record
    assert math.copysign(1.0, back.ratio) == -1.0
    assert back.to_xdr() == wire
    nan = struct.unpack(">d", bytes.fromhex("7ff8000000000123"))[0]  # a quiet NaN with a payload
    assert xdr.DOUBLE.encode(xdr.DOUBLE.decode(xdr.DOUBLE.encode(nan))) == bytes.fromhex(
        "7ff8000000000123"
    )


def test_a_long_linked_list_is_not_limited_by_recursion() -> None:
    head = None
    for value in range(200_000):
        head = Node(value, head)
    wire = xdr.Optional(Node).encode(head)
    assert len(wire) == 200_000 * 12 + 4
    back = xdr.Optional(Node).decode(wire)
    count = 0
    while back is not None:
        assert back.value == 199_999 - count
        back, count = back.next, count + 1
    assert count == 200_000


@pytest.mark.parametrize(
    ("xdr_type", "value", "error", "words"),
    [
        (xdr.INT, 2**31, ValueError, "does not fit in int"),
        (xdr.UNSIGNED, -1, ValueError, "does not fit"),
        (xdr.INT, 1.5, TypeError, "needs an int"),
        (xdr.FLOAT, 1e300, ValueError, "float"),
        (xdr.BOOL, 2, TypeError, "True or False"),
        (xdr.as_type(Color), 5, ValueError, "not a value of enum Color"),
        (xdr.FixedOpaque(3), b"ab", ValueError, "needs 3 bytes"),
        (xdr.Opaque(2), b"abc", ValueError, "more than opaque<2> allows"),
        (xdr.String(2), "abc", ValueError, "longer than string<2>"),
        (xdr.String(), 5, TypeError, "needs str or bytes"),
        (xdr.Array(xdr.INT, 1), [1, 2], ValueError, "allows 1 elements"),
        (xdr.FixedArray(xdr.INT, 2), [1], ValueError, "needs 2 elements"),
        (xdr.as_type(Pair), (1, 2), TypeError, "needs a Pair"),
        (xdr.as_type(Pair), Pair(1, "2"), TypeError, "struct Pair.b"),
        (xdr.as_type(Result), Result(Color.NEGATIVE), ValueError, "no arm"),
        (
            xdr.as_type(Record),
            Record(1, 0.0, True, Color.RED, "x", b"abc", [Pair(1, 2**40)], None),
            ValueError,
            r"struct Record.pairs[0].b",
        ),
    ],
)
def test_values_that_do_not_fit_are_refused_naming_the_field(
    xdr_type: xdr.Type[Any], value: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as raised:
        xdr_type.encode(value)
    assert words in str(raised.value)
    assert not isinstance(raised.value, XdrError)


@pytest.mark.parametrize(
    ("xdr_type", "wire", "words"),
    [
        (xdr.INT, b"\0\0\0", "ends in the middle"),
        (xdr.INT, u32(1, 2), "4 bytes left over"),
        (xdr.BOOL, u32(2), "neither 0 nor 1"),
        (xdr.as_type(Color), u32(3), "not one of its values"),
        (xdr.Optional(xdr.INT), u32(2, 0), "presence flag 2"),
        (xdr.Opaque(4), u32(5) + bytes(8), "exceeds the maximum of 4"),
        (xdr.String(), u32(0x7FFFFFFF) + b"abcd", "only 4 bytes follow"),
        (xdr.Array(xdr.INT, 3), u32(4) + bytes(16), "exceed the maximum of 3"),
        (xdr.Array(xdr.INT), u32(0xFFFFFFFF), "cannot fit"),
        (xdr.Array(Pair), u32(3) + bytes(16), "cannot fit"),
        (xdr.FixedOpaque(8), b"abcd", "ends 4 bytes early"),
        (xdr.as_type(Result), u32(7, 0), "not one of its values"),
        (xdr.as_type(Loose), u32(7, 1), "only 0 bytes follow"),
        (xdr.Optional(Node), u32(1, 0, 5, 9), "presence flag 9"),
    ],
)
def test_hostile_data_gives_xdr_error(xdr_type: xdr.Type[Any], wire: bytes, words: str) -> None:
    with pytest.raises(XdrError) as raised:
        xdr_type.decode(wire)
    assert words in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_lengths_from_the_wire_cost_memory_only_when_the_bytes_are_there() -> None:
    lying = u32(0xFFFFFFF0) + bytes(64)  # claims 4 GiB of opaque, 4 G elements
    tracemalloc.start()
    try:
        for xdr_type in (xdr.Opaque(), xdr.String(), xdr.Array(xdr.INT), xdr.Array(Pair)):
            with pytest.raises(XdrError):
                xdr_type.decode(lying)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_decode_takes_any_buffer_and_decode_from_an_offset() -> None:
    wire = u32(9) + xdr.as_type(Pair).encode(Pair(5, 6))
    assert xdr.as_type(Pair).decode(memoryview(wire)[4:]) == Pair(5, 6)
    assert xdr.as_type(Pair).decode_from(bytearray(wire), 4) == (Pair(5, 6), 12)
    with pytest.raises(TypeError, match="bytes-like"):
        xdr.INT.decode("abcd")


def test_definitions_are_checked() -> None:
    @dataclasses.dataclass
    class Wrong(xdr.Struct):
        a: int

    with pytest.raises(ValueError, match="differ"):
        xdr.define_struct(Wrong, [("b", xdr.INT)])
    with pytest.raises(TypeError, match="Struct subclass"):
        xdr.define_struct(dict, [("a", xdr.INT)])  # type: ignore[type-var]
    with pytest.raises(ValueError, match="void"):
        xdr.Array(xdr.VOID)
    with pytest.raises(TypeError, match="not an XDR type"):
        xdr.Array(int)
    with pytest.raises(ValueError, match="maximum"):
        xdr.Opaque(-1)
