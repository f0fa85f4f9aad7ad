"""What every subcommand shares: the one renderer (text or JSON) and the argument parsers.

Subcommands build data (dicts of plain values) and hand it to :func:`emit`,
which prints it as one JSON document with ``--json`` and as text otherwise. The
JSON forms are the same in every command (docs/design.md, "Decisions: the
command line"):

- numbers (sizes, ids, pids, counts) are JSON numbers;
- permissions are a string of four octal digits, "0600";
- System V keys are a string of 0x and eight hex digits, "0x1234abcd";
- times are ISO 8601 strings with their UTC offset, or null for "never";
- message data is a string with an ``encoding`` beside it: "utf-8" when the
  bytes are UTF-8 text (and ``--base64`` was not given), else "base64", so no
  byte is ever lost or replaced.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import enum
import json
import sys
from collections.abc import Mapping
from typing import Any

from .._sysv import format_key


def to_json(value: Any) -> Any:
    """``value`` with times, enums and tuples turned into their JSON forms."""
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, bytes):
        raise TypeError("bytes reach the renderer only through message_fields()")
    return value


def to_text(value: Any) -> str:
    """One value as people read it: local times, 'never' for a missing time."""
    if isinstance(value, datetime.datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(to_text(item) for item in value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def lines(data: Mapping[str, Any]) -> str:
    """``key: value`` lines, the default text form of a record."""
    return "\n".join(f"{key}: {to_text(value)}" for key, value in data.items())


def emit(args: argparse.Namespace, data: Any, text: str | None = None) -> None:
    """Print ``data`` as one JSON document with ``--json``, else ``text`` (if any)."""
    if getattr(args, "json", False):
        print(json.dumps(to_json(data), sort_keys=True))
    elif text is not None:
        print(text)
    sys.stdout.flush()


def created(args: argparse.Namespace, kind: str, name: str, fields: Mapping[str, Any]) -> None:
    """The one line every ``create`` prints: ``created KIND NAME: field value, ...``."""
    details = ", ".join(
        f"{key.replace('_', ' ')} {to_text(value)}"
        for key, value in fields.items()
        if to_text(value) != name  # a System V key is already the name
    )
    emit(
        args,
        {"kind": kind, "name": name, **fields},
        f"created {kind} {name}" + (f": {details}" if details else ""),
    )


# ------------------------------------------------------------------ value forms


def mode_text(permissions: int) -> str:
    """Permission bits in their one JSON and text form: four octal digits."""
    return f"{permissions & 0o7777:04o}"


def key_text(key: int) -> str:
    """A System V key in its one JSON and text form: 0x and eight hex digits."""
    return format_key(key)


def timestamp(seconds: float | int | None) -> datetime.datetime | None:
    """A time from the kernel (seconds since the epoch, 0 = never) as an aware datetime."""
    if not seconds:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def message_fields(data: bytes, *, force_base64: bool = False) -> dict[str, Any]:
    """A message's bytes as JSON fields that lose nothing: data, encoding, bytes."""
    if not force_base64:
        try:
            return {"data": data.decode("utf-8"), "encoding": "utf-8", "bytes": len(data)}
        except UnicodeDecodeError:
            pass
    return {
        "data": base64.b64encode(data).decode("ascii"),
        "encoding": "base64",
        "bytes": len(data),
    }


def write_message(args: argparse.Namespace, data: bytes, fields: Mapping[str, Any]) -> None:
    """A received message: its exact bytes and a newline as text, or a JSON record."""
    if getattr(args, "json", False):
        emit(args, {**fields, **message_fields(data, force_base64=args.base64)})
    else:
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()


def add_base64_option(parser: argparse.ArgumentParser) -> None:
    """``--base64``: message data in JSON always base64, even when it is text."""
    parser.add_argument(
        "--base64",
        action="store_true",
        help="with --json: always give message data base64-encoded (else only non-UTF-8 data)",
    )


def data_argument(text: str) -> bytes:
    """The bytes of a data argument: the text itself, or standard input for ``-``."""
    if text == "-":
        return sys.stdin.buffer.read()
    return text.encode()


# ------------------------------------------------------------------ argument parsers


def permissions(value: str) -> int:
    """Parse permission bits written in octal ("0600", "600" or "0o600")."""
    try:
        bits = int(value.removeprefix("0o"), 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not octal permissions: {value!r}") from None
    if not 0 <= bits <= 0o7777:
        raise argparse.ArgumentTypeError(f"not octal permissions: {value!r}")
    return bits


def seconds(value: str) -> float:
    """Parse a non-negative number of seconds."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"seconds must be >= 0: {value!r}")
    return number


def integer(value: str) -> int:
    """Parse an integer in decimal or 0x hexadecimal (as System V keys are written)."""
    try:
        return int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
}


def parse_size(text: str) -> int:
    """A byte count: 4096, 0x1000, 4K, 4KiB, 1M, 1MiB, 2G (binary units, 1K = 1024).

    Raises:
        ValueError: not such a size.
    """
    cleaned = text.strip().lower().replace(" ", "").replace("_", "")
    if cleaned.startswith("0x"):
        return int(cleaned, 16)
    number = cleaned.rstrip("kmgib")
    unit = cleaned[len(number) :]
    if not number.isdigit() or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 4096, 4K, 1M, 1MiB)")
    return int(number) * _UNITS[unit]


def size(value: str) -> int:
    """argparse type for :func:`parse_size`."""
    try:
        return parse_size(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def sysv_name(key: int) -> str:
    """How a System V object is named in lines for people: its key, or IPC_PRIVATE."""
    return "IPC_PRIVATE" if key == 0 else format_key(key)
