"""Status objects: counts a unixipc process publishes for ``unixipc ls/top`` (private).

A process that is not an IPC object itself but moves messages between them
(``unixipc bridge``) makes its counts visible here: a small POSIX shared memory
object ``/unixipc-<what>-<pid>-<random>``, mode 0600, that it creates
exclusively, fills and locks before anyone is told of it, rewrites as it works
and removes when it exits. Its owner holds an exclusive ``flock`` on it (the
liveness tokens' owner lock): the kernel releases it when the process dies, so
after a SIGKILL the object is ``stale`` and ``unixipc rm --stale`` removes it.

Layout (little-endian): ``magic "uxstat01"``, the owner's pid (u32), the
lengths of the kind and of the text (u16 each), a CRC-32 of what follows the
header, then counters (u64 each, see :data:`COUNTERS`), the start time (f64,
seconds since the epoch), and the kind and text (UTF-8: the bridge's URLs,
without passwords, separated by a newline). A snapshot is written with one
``pwrite`` and read with one ``pread``; the CRC makes a reader that met a write
half-way read again, so it never shows a torn count.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import struct
import time
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from . import _native
from .errors import from_os_error

KIND = "status object"
MAGIC = b"uxstat01"
PREFIX = "/unixipc-"
#: The counters a status object carries, in order.
COUNTERS = (
    "src_to_dst_messages",
    "src_to_dst_bytes",
    "dst_to_src_messages",
    "dst_to_src_bytes",
    "clients",
    "connections",
)
_HEAD = struct.Struct("<8sIHHI")
_BODY = struct.Struct(f"<{len(COUNTERS)}Qd")
_MAX_TEXT = 4096
_USERINFO = re.compile(r"(://[^:/@]*):[^@/]*@")


def redact(url: str) -> str:
    """``url`` without the password of its user info (nats://u:secret@h -> nats://u:***@h)."""
    return _USERINFO.sub(r"\1:***@", url)


class StatusObject:
    """The status object of this process: create with :meth:`publish`."""

    def __init__(self, name: str, fd: int, kind: str, text: str) -> None:
        """Use :meth:`publish`."""
        self.name = name
        self._fd = fd
        self._tail = kind.encode() + text.encode()[:_MAX_TEXT]
        self._kind_length = len(kind.encode())
        self._started = time.time()

    @classmethod
    def publish(cls, what: str, text: str, counts: Mapping[str, int]) -> StatusObject:
        """Create ``/unixipc-<what>-<pid>-<random>`` with ``counts``, locked, or nothing.

        Raises:
            IPCOSError: it cannot be made (a full /dev/shm, ...); nothing is left.
        """
        name = f"{PREFIX}{what}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            fd = _native.shm_open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            raise from_os_error(error, KIND, name) from None
        try:
            os.fchmod(fd, 0o600)  # shm_open applied the umask; never more than this
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            status = cls(name, fd, what, text)
            status.update(counts)
        except BaseException as error:
            os.close(fd)
            with contextlib.suppress(OSError):
                _native.shm_unlink(name)
            if isinstance(error, OSError):
                raise from_os_error(error, KIND, name) from None
            raise
        return status

    def update(self, counts: Mapping[str, int]) -> None:
        """Write a snapshot of ``counts`` (one pwrite: readers see all of it or retry)."""
        body = _BODY.pack(*(counts.get(key, 0) for key in COUNTERS), self._started) + self._tail
        head = _HEAD.pack(
            MAGIC,
            os.getpid(),
            self._kind_length,
            len(self._tail) - self._kind_length,
            zlib.crc32(body),
        )
        data = head + body
        if os.pwrite(self._fd, data, 0) != len(data):
            raise OSError(errno.ENOSPC, "short write to a status object")

    def close(self) -> None:
        """Remove the object (then let go of its lock)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                _native.shm_unlink(self.name)
            os.close(fd)


def is_status_name(name: str) -> bool:
    return name.startswith(PREFIX) and bool(re.fullmatch(r"/unixipc-[a-z]+-\d+-[0-9a-f]{8}", name))


def _inspect(fd: int) -> dict[str, object] | None:
    """What the status object open on ``fd`` says (read only); None if it is none."""
    for _ in range(100):
        data = os.pread(fd, _HEAD.size + _BODY.size + 64 + _MAX_TEXT, 0)
        if len(data) < _HEAD.size + _BODY.size:
            return None
        magic, pid, kind_length, text_length, crc = _HEAD.unpack_from(data)
        if magic != MAGIC:
            return None
        body = data[_HEAD.size : _HEAD.size + _BODY.size + kind_length + text_length]
        if len(body) == _BODY.size + kind_length + text_length and zlib.crc32(body) == crc:
            break
        time.sleep(0.001)  # met a write half-way: read again
    else:
        return None
    *counters, started = _BODY.unpack_from(body)
    tail = body[_BODY.size :]
    described: dict[str, object] = {
        "what": tail[:kind_length].decode(errors="replace"),
        "pid": pid,
        "started": datetime.fromtimestamp(started, timezone.utc) if started > 0 else None,
        **dict(zip(COUNTERS, counters, strict=True)),
    }
    lines: Sequence[str] = tail[kind_length:].decode(errors="replace").split("\n")
    if len(lines) == 2:
        described["src"], described["dst"] = lines
    return described
