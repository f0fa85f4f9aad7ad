"""Measure unixipc.oncrpc.xdr against xdrlib3 and plain struct (not part of the tests).

    python benchmarks/xdr_bench.py [--repeat 7]

One value, encoded then decoded, per iteration; the figure is the best of
``--repeat`` timings of a loop (microseconds per round trip of the value):

- ``record``: a struct of an int, an unsigned hyper, a double, a bool, a
  string<64> of 11 bytes, an opaque<> of 64 bytes and int[8]; written with
  unixipc's types (a dataclass), by hand with xdrlib3's Packer/Unpacker, and by
  hand with struct (the floor: one precompiled format per fixed part, no checks);
- ``ints``: an int<> array of 1000 numbers, the same three ways.

xdrlib3 (``pip install 'unixipc[bench]'``) is xdrlib, which left the standard
library in Python 3.13.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import struct
import timeit

import xdrlib3

from unixipc.oncrpc import xdr


@dataclasses.dataclass(slots=True)
class Record(xdr.Struct):
    number: int
    ident: int
    weight: float
    flag: bool
    name: str
    blob: bytes
    values: list[int]


xdr.define_struct(
    Record,
    [
        ("number", xdr.INT),
        ("ident", xdr.UNSIGNED_HYPER),
        ("weight", xdr.DOUBLE),
        ("flag", xdr.BOOL),
        ("name", xdr.String(64)),
        ("blob", xdr.Opaque()),
        ("values", xdr.FixedArray(xdr.INT, 8)),
    ],
)
RECORD = Record(-7, 2**63 + 5, 2.5, True, "hello world", bytes(range(64)), list(range(8)))
INTS = list(range(1000))
INT_ARRAY = xdr.Array(xdr.INT)


def unixipc_record() -> None:
    Record.from_xdr(RECORD.to_xdr())


def xdrlib3_record() -> None:
    packer = xdrlib3.Packer()
    packer.pack_int(RECORD.number)
    packer.pack_uhyper(RECORD.ident)
    packer.pack_double(RECORD.weight)
    packer.pack_bool(RECORD.flag)
    packer.pack_string(RECORD.name.encode())
    packer.pack_opaque(RECORD.blob)
    packer.pack_farray(8, RECORD.values, packer.pack_int)
    unpacker = xdrlib3.Unpacker(packer.get_buffer())
    Record(
        unpacker.unpack_int(),
        unpacker.unpack_uhyper(),
        unpacker.unpack_double(),
        unpacker.unpack_bool(),
        unpacker.unpack_string().decode(),
        unpacker.unpack_opaque(),
        unpacker.unpack_farray(8, unpacker.unpack_int),
    )
    unpacker.done()


_HEAD = struct.Struct(">iQdII")  # number ident weight flag name-length
_U32 = struct.Struct(">I")
_EIGHT = struct.Struct(">8i")


def struct_record() -> None:
    name = RECORD.name.encode()
    blob = RECORD.blob
    data = b"".join(
        (
            _HEAD.pack(RECORD.number, RECORD.ident, RECORD.weight, RECORD.flag, len(name)),
            name,
            b"\0" * (-len(name) % 4),
            _U32.pack(len(blob)),
            blob,
            b"\0" * (-len(blob) % 4),
            _EIGHT.pack(*RECORD.values),
        )
    )
    number, ident, weight, flag, length = _HEAD.unpack_from(data, 0)
    offset = _HEAD.size
    name_out = data[offset : offset + length].decode()
    offset += (length + 3) & ~3
    (blob_length,) = _U32.unpack_from(data, offset)
    offset += 4
    blob_out = data[offset : offset + blob_length]
    offset += (blob_length + 3) & ~3
    Record(
        number, ident, weight, flag == 1, name_out, blob_out, list(_EIGHT.unpack_from(data, offset))
    )


def unixipc_ints() -> None:
    INT_ARRAY.decode(INT_ARRAY.encode(INTS))


def xdrlib3_ints() -> None:
    packer = xdrlib3.Packer()
    packer.pack_array(INTS, packer.pack_int)
    unpacker = xdrlib3.Unpacker(packer.get_buffer())
    unpacker.unpack_array(unpacker.unpack_int)
    unpacker.done()


def struct_ints() -> None:
    data = struct.pack(f">I{len(INTS)}i", len(INTS), *INTS)
    (count,) = _U32.unpack_from(data)
    list(struct.unpack_from(f">{count}i", data, 4))


def best_us(function: object, repeat: int) -> float:
    timer = timeit.Timer(function)  # type: ignore[arg-type]
    number, _ = timer.autorange()
    return min(timer.repeat(repeat, number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    assert Record.from_xdr(RECORD.to_xdr()) == RECORD
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'value':8} {'unixipc us':>11} {'xdrlib3 us':>11} {'struct us':>10} {'vs xdrlib3':>11}")
    for label, ours, theirs, floor in (
        ("record", unixipc_record, xdrlib3_record, struct_record),
        ("ints", unixipc_ints, xdrlib3_ints, struct_ints),
    ):
        a, b, c = (best_us(f, args.repeat) for f in (ours, theirs, floor))
        print(f"{label:8} {a:11.2f} {b:11.2f} {c:10.2f} {b / a:10.1f}x")


if __name__ == "__main__":
    main()
