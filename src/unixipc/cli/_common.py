"""What every subcommand shares: output in text or JSON, and argument parsers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def emit(args: argparse.Namespace, data: dict[str, Any], text: str | None = None) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text`` (if any)."""
    if args.json:
        print(json.dumps(data, sort_keys=True))
    elif text is not None:
        print(text)
    sys.stdout.flush()


def permissions(value: str) -> int:
    """Parse permission bits written in octal ("0600", "600" or "0o600")."""
    try:
        return int(value.removeprefix("0o"), 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not octal permissions: {value!r}") from None


def seconds(value: str) -> float:
    """Parse a non-negative number of seconds."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"seconds must be >= 0: {value!r}")
    return number


def integer(value: str) -> int:
    """Parse an integer in decimal or 0x hexadecimal (as System V keys are written)."""
    try:
        return int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
