"""Compiling the C baseline (``baseline.c``, shipped in the package) at run time.

The binary is cached under ``$XDG_CACHE_HOME/unixipc/bench`` (``~/.cache`` by
default), keyed by the source, the compiler and its flags, so it is built once
per machine. ``$CC`` chooses the compiler (default ``cc``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

CFLAGS = ("-O2", "-Wall", "-Wextra", "-std=gnu11")


def source() -> bytes:
    """The C source of the baseline."""
    return resources.files(__package__).joinpath("baseline.c").read_bytes()


def compiler() -> str | None:
    """The C compiler to use, or None if the machine has none."""
    chosen = os.environ.get("CC", "cc")
    return shutil.which(chosen) or shutil.which("gcc")


def compiler_version(cc: str) -> str:
    """The first line of ``cc --version`` (for the report header)."""
    try:
        result = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.splitlines()[0] if result.stdout else "unknown"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "unixipc" / "bench"


@functools.cache
def build() -> Path | str:
    """Compile the baseline once; return the binary, or why there is none."""
    cc = compiler()
    if cc is None:
        return "no C compiler: install cc (gcc or clang) or set CC"
    text = source()
    key = hashlib.sha256(text + compiler_version(cc).encode() + " ".join(CFLAGS).encode())
    directory = cache_dir()
    binary = directory / f"baseline-{key.hexdigest()[:16]}"
    if binary.exists():
        return binary
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            source_path = Path(scratch) / "baseline.c"
            source_path.write_bytes(text)
            output = Path(scratch) / "baseline"
            result = subprocess.run(
                [cc, *CFLAGS, "-o", str(output), str(source_path)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if result.returncode != 0:
                lines = (result.stderr or result.stdout).strip().splitlines()
                return f"the C baseline did not compile with {cc}: {' '.join(lines[:3])}"
            os.replace(output, binary)  # atomic: a concurrent run sees all or nothing
    except (OSError, subprocess.SubprocessError) as error:
        return f"could not build the C baseline: {error}"
    return binary
