"""Who holds what: the /proc tables the inspector reads (private).

Everything here only reads: descriptors (/proc/PID/fd), mappings
(/proc/PID/maps), file locks (/proc/locks) and UNIX sockets (/proc/net/unix).
A process that exits while we read is simply left out.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

_DELETED = " (deleted)"


@dataclass(frozen=True)
class Holder:
    """A process that holds an object: ``how`` is "open", "mapped" or "attached"."""

    pid: int
    command: str
    how: str


@dataclass(frozen=True)
class FileLockEntry:
    """One line of /proc/locks (waiters left out)."""

    type: str  # "flock", "posix", "ofd" (or "lease", ...)
    mode: str  # "read" or "write"
    pid: int | None  # None for OFD locks, which belong to an open file, not a process
    device: int
    inode: int
    start: int
    end: int | None  # None: to the end of the file


@dataclass(frozen=True)
class UnixSocketEntry:
    """One line of /proc/net/unix that has a filesystem path."""

    inode: int
    path: str
    listening: bool
    connected: bool
    type: str  # "stream", "dgram", "seqpacket"


@dataclass
class Processes:
    """One pass over every process's descriptors and shared mappings."""

    commands: dict[int, str] = field(default_factory=dict)
    by_inode: dict[tuple[int, int], list[Holder]] = field(default_factory=dict)
    by_socket: dict[int, list[Holder]] = field(default_factory=dict)
    by_sysv_shm: dict[int, list[Holder]] = field(default_factory=dict)
    # Names that processes still hold after they were removed: path -> pids.
    deleted: dict[str, set[int]] = field(default_factory=dict)

    def holders(self, device: int, inode: int) -> tuple[Holder, ...]:
        return tuple(self.by_inode.get((device, inode), ()))


def _add(table: dict[object, list[Holder]], key: object, holder: Holder) -> None:
    holders = table.setdefault(key, [])
    if holder not in holders:
        holders.append(holder)


def command_of(pid: int) -> str:
    """A process's command name (/proc/PID/comm), or '?' once it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as file:
            return file.read().strip()
    except OSError:
        return "?"


def _pids() -> list[int]:
    return sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit())


def _ipc_namespace(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/ipc")
    except OSError:
        return None


def scan(paths: Iterable[str] = ()) -> Processes:
    """Every process's holds on shared memory, queues, sockets, FIFOs and ``paths``.

    Descriptors are matched by device and inode (stat of /proc/PID/fd/N), so a
    name reused by another object never counts; System V segments are matched
    by id only in processes of our IPC namespace (ids are per namespace).
    """
    wanted = set(paths)
    found = Processes()
    own_namespace = _ipc_namespace("self")
    for pid in _pids():
        command: str | None = None

        def holder(how: str, pid: int = pid) -> Holder:
            nonlocal command
            if command is None:
                command = command_of(pid)
                found.commands[pid] = command
            return Holder(pid, command, how)

        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            descriptors = []
        for descriptor in descriptors:
            link_path = f"/proc/{pid}/fd/{descriptor}"
            try:
                target = os.readlink(link_path)
            except OSError:
                continue
            if target.startswith("socket:["):
                _add(found.by_socket, int(target[8:-1]), holder("open"))  # type: ignore[arg-type]
                continue
            if not target.startswith("/"):
                continue  # pipes, anonymous inodes
            if target.endswith(_DELETED):
                found.deleted.setdefault(target[: -len(_DELETED)], set()).add(pid)
            elif not (target.startswith("/dev/shm/") or target in wanted or "/" not in target[1:]):
                continue  # an ordinary file (mqueue descriptors read "/name")
            try:
                status = os.stat(link_path)
            except OSError:
                continue
            _add(found.by_inode, (status.st_dev, status.st_ino), holder("open"))  # type: ignore[arg-type]
        try:
            with open(f"/proc/{pid}/maps") as maps:
                mapped = [line for line in maps if "/dev/shm/" in line or "/SYSV" in line]
        except OSError:
            mapped = []
        same_namespace: bool | None = None
        for line in mapped:
            fields = line.split(None, 5)
            if len(fields) < 6 or "s" not in fields[1]:
                continue  # shared mappings only
            major, minor = (int(part, 16) for part in fields[3].split(":"))
            inode = int(fields[4])
            target = fields[5].rstrip("\n")
            if target.startswith("/SYSV"):
                if same_namespace is None:
                    same_namespace = _ipc_namespace(pid) == own_namespace
                if same_namespace:
                    _add(found.by_sysv_shm, inode, holder("attached"))  # type: ignore[arg-type]
                continue
            if target.endswith(_DELETED):
                found.deleted.setdefault(target[: -len(_DELETED)], set()).add(pid)
            key = (os.makedev(major, minor), inode)
            _add(found.by_inode, key, holder("mapped"))  # type: ignore[arg-type]
    return found


def holding(targets: set[str]) -> set[int]:
    """The pids with a descriptor whose link is one of ``targets`` (such as
    "socket:[123]" or a path): a quick pass that reads links only."""
    pids = set()
    for pid in _pids():
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{descriptor}") in targets:
                    pids.add(pid)
                    break
    return pids


def file_locks() -> list[FileLockEntry]:
    """Every file lock held now (/proc/locks; waiting requests are left out)."""
    entries = []
    try:
        with open("/proc/locks") as table:
            rows = table.readlines()
    except OSError:
        return []
    for row in rows:
        fields = row.split()
        if len(fields) < 8 or fields[1] == "->":
            continue
        kind, _advisory, mode, pid_text, where, start, end = fields[1:8]
        try:
            major, minor, inode = where.split(":")
            pid = int(pid_text)
            entries.append(
                FileLockEntry(
                    {"FLOCK": "flock", "POSIX": "posix", "OFDLCK": "ofd"}.get(kind, kind.lower()),
                    mode.lower(),
                    None if pid <= 0 else pid,
                    os.makedev(int(major, 16), int(minor, 16)),
                    int(inode),
                    int(start),
                    None if end == "EOF" else int(end),
                )
            )
        except ValueError:
            continue
    return entries


_SOCKET_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}
_ACCEPTING = 0x10000  # __SO_ACCEPTCON in the Flags column
_CONNECTED = 3  # SS_CONNECTED in the St column


def unix_sockets() -> list[UnixSocketEntry]:
    """UNIX domain sockets bound to a filesystem path (abstract names left out)."""
    entries = []
    try:
        with open("/proc/net/unix") as table:
            next(table)
            rows = table.readlines()
    except (OSError, StopIteration):
        return []
    for row in rows:
        fields = row.split()
        if len(fields) < 8 or not fields[7].startswith("/"):
            continue
        try:
            flags, kind, state, inode = (
                int(fields[3], 16),
                int(fields[4], 16),
                int(fields[5], 16),
                int(fields[6]),
            )
        except ValueError:
            continue
        entries.append(
            UnixSocketEntry(
                inode,
                fields[7],
                bool(flags & _ACCEPTING),
                state == _CONNECTED,
                _SOCKET_TYPES.get(kind, str(kind)),
            )
        )
    return entries


def special_files(
    roots: Iterable[str], *, depth: int = 3, budget: int = 50_000
) -> tuple[list[str], bool]:
    """Socket files and FIFOs under ``roots`` (``depth`` levels down, symlinks not
    followed); True as the second value if the ``budget`` of entries ran out."""
    found: list[str] = []
    seen = 0
    pending = [(root, 0) for root in roots]
    while pending:
        directory, level = pending.pop()
        with contextlib.suppress(OSError), os.scandir(directory) as entries:
            for entry in entries:
                seen += 1
                if seen > budget:
                    return sorted(found), True
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode
                except OSError:
                    continue
                if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
                    found.append(entry.path)
                elif stat.S_ISDIR(mode) and level + 1 < depth:
                    pending.append((entry.path, level + 1))
    return sorted(found), False
