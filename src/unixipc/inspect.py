"""Find, describe and remove IPC objects on this machine (the engine of ``unixipc ls/rm/top``).

What it sees: POSIX shared memory and named semaphores (/dev/shm; a semaphore's
value and waiters read from its file, never sem_open'ed); POSIX message queues
(from the mqueue filesystem, mounted for the occasion in a private mount
namespace of a child process when it is not mounted here); System
V queues, segments and semaphore sets (/proc/sysvipc, semctl GETALL for the
values); UNIX socket files, bound (/proc/net/unix) or left behind, and FIFOs
(found under a few directories, see :data:`DEFAULT_DIRECTORIES`, and wherever a
process holds one open); file locks (/proc/locks). For each object: who holds
it (pids and commands, from /proc/PID/fd and /proc/PID/maps) and a state:

- ``live``: someone holds it (a descriptor, a mapping, an attachment, a bound
  socket), or, for unixipc's own objects, their owner's lock is held;
- ``idle``: nobody holds it (System V queues and semaphore sets are never held:
  any process may use them by id at any time);
- ``stale``: its unixipc owner died. Decided only by a lock the kernel released
  when the owner's process died (a ring handle's lock byte, a liveness token's
  flock), never by a process id; a socket file nothing is bound to is stale too.

unixipc's own objects are recognised by their header (rings, shared mutexes and
the like, liveness tokens) and by the names channels give them; ``unixipc``
tells what each is, with ring depth and live producers/consumers, a channel
listener's URL and connections. The format of each object is read by a private
``_inspect`` function of the module that defines it (ring.py, shared_sync.py,
channels/liveness.py); the channels' naming rules are gathered in ``_channel_role`` here.

Reading never changes anything: no attaching (segments are read from
/proc/sysvipc), no opening for writing, no lock taken (lock state comes from
/proc/locks and F_OFD_GETLK, which only asks). The machine is shared:
:func:`find` reports everything, :func:`remove` removes exactly the object it
is given and refuses a live one unless forced, and :func:`remove_stale`
removes only unixipc's stale objects of the caller's uid that nobody holds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from . import _native, _status, posix_mq, posix_sem, posix_shm, ring, shared_sync, sysv_mq, topic
from ._proc import (
    FileLockEntry,
    Holder,
    Processes,
    command_of,
    file_locks,
    scan,
    special_files,
    unix_sockets,
)
from ._sysv import format_key, read_table
from .channels import fifo as _fifo_channel
from .channels import liveness as _liveness
from .channels import socket as _socket_channel
from .errors import (
    IPCError,
    ResourceNotFoundError,
    UnsupportedFeature,
    from_os_error,
)

__all__ = (
    "DEFAULT_DIRECTORIES",
    "KINDS",
    "STATES",
    "Holder",
    "IPCObject",
    "Survey",
    "UnsupportedFeature",
    "find",
    "remove",
    "remove_stale",
    "stale_removable",
    "survey",
)

#: The kinds of object :func:`find` knows, in display order.
KINDS: tuple[str, ...] = (
    "posix-shm",
    "posix-sem",
    "posix-mq",
    "sysv-shm",
    "sysv-sem",
    "sysv-mq",
    "unix-socket",
    "fifo",
    "file-lock",
)

#: An object's state: someone holds it / nobody does / its unixipc owner died.
STATES: tuple[str, ...] = ("live", "idle", "stale")

#: Where socket files and FIFOs that no process holds are looked for (3 levels down).
DEFAULT_DIRECTORIES: tuple[str, ...] = ("/tmp", "/var/tmp", "/run", "/dev/shm")

_DEV_SHM = "/dev/shm"
_SHM_DEST = 0o1000  # SHM_DEST in the perms column of /proc/sysvipc/shm
_SHM_LOCKED = 0o2000
_HEAD_BYTES = 64


@dataclass(frozen=True)
class IPCObject:
    """One IPC object as the kernel shows it.

    ``name`` identifies it to people and to :func:`remove`: the POSIX name
    ('/jobs'), the System V key in hex ('0x1234abcd'; 'IPC_PRIVATE' for a
    private object, the plain '0x00000000' for one marked for removal), or the
    path of a socket file, FIFO or locked file. ``unixipc`` says what unixipc
    made of it ("ring", "channel listener", "liveness token", "shared mutex",
    ...), or None. ``details`` holds the kind's own fields (numbers as numbers,
    times as aware datetimes or None): see docs/design.md, "Decisions: the
    inspector".
    """

    kind: str
    name: str
    uid: int
    permissions: int
    size: int | None = None
    id: int | None = None
    key: int | None = None
    state: str = "idle"
    holders: tuple[Holder, ...] = ()
    unixipc: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    #: (device, inode) of the object's file, so that removal can check it is the same one.
    inode: tuple[int, int] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Survey:
    """What :func:`survey` found, and notes on what it could not see."""

    objects: list[IPCObject]
    notes: list[str]


def find(
    kinds: Iterable[str] | None = None,
    *,
    prefix: str | None = None,
    directories: Iterable[str] | None = None,
) -> list[IPCObject]:
    """Every IPC object of the given ``kinds`` (default: all), optionally only
    those whose name starts with ``prefix`` (POSIX names and paths; System V
    objects have no name and are left out when a prefix is given).

    ``directories`` are searched (3 levels down) for socket files and FIFOs
    that no process holds (default :data:`DEFAULT_DIRECTORIES`).

    Raises:
        ValueError: an unknown kind.
        UnsupportedFeature: only when ``kinds`` names "posix-mq" alone and the
            queues cannot be listed (see :func:`survey`'s notes).
    """
    found = survey(kinds, prefix=prefix, directories=directories)
    if _check_kinds(kinds) == ("posix-mq",) and found.notes:
        raise UnsupportedFeature(found.notes[0])
    return found.objects


def survey(
    kinds: Iterable[str] | None = None,
    *,
    prefix: str | None = None,
    directories: Iterable[str] | None = None,
) -> Survey:
    """As :func:`find`, with notes on what could not be seen (and why)."""
    wanted = _check_kinds(kinds)
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
    roots = DEFAULT_DIRECTORIES if directories is None else tuple(directories)
    notes: list[str] = []
    context = _Context.gather(wanted, roots, notes)
    found: list[IPCObject] = []
    # Listeners' objects are told by their tokens (in /dev/shm): looked at even
    # when POSIX shared memory itself is not asked for, then left out.
    looked_at = wanted
    if "posix-shm" not in wanted and {"posix-mq", "sysv-mq", "unix-socket", "fifo"} & set(wanted):
        looked_at = ("posix-shm", *wanted)
    for kind in looked_at:
        found.extend(_FINDERS[kind](context))
    _apply_channel_roles(found, context)
    found = [item for item in found if item.kind in wanted]
    if prefix is not None:
        found = [item for item in found if item.key is None and item.name.startswith(prefix)]
    order = {kind: index for index, kind in enumerate(KINDS)}
    found.sort(key=lambda item: (order[item.kind], item.name, item.id or 0))
    return Survey(found, notes)


def stale_removable(item: IPCObject) -> bool:
    """Whether ``remove_stale`` takes it: unixipc's, ours, owner dead, nobody holding it."""
    return (
        item.unixipc is not None
        and item.state == "stale"
        and item.uid == os.geteuid()
        and not item.holders
    )


def remove_stale(
    kinds: Iterable[str] | None = None, *, prefix: str | None = None, dry_run: bool = False
) -> list[IPCObject]:
    """Remove unixipc's objects of this uid whose owner died and that nobody holds.

    Each is checked again just before it goes, under the lock that tells its
    owner's liveness (so a process reviving it meanwhile keeps it), and one
    that someone else removed meanwhile is skipped. Returns those removed (or,
    with ``dry_run``, those that would be).
    """
    candidates = [item for item in find(kinds, prefix=prefix) if stale_removable(item)]
    # Objects guarded by a token first, then the tokens themselves.
    candidates.sort(key=lambda item: item.unixipc == "liveness token")
    if dry_run:
        return candidates
    removed = []
    went_with_their_queue = set()
    for item in candidates:
        if item.name in went_with_their_queue:
            removed.append(item)
            continue
        with contextlib.suppress(ResourceNotFoundError):
            if _remove_checked(item):
                removed.append(item)
                token = item.details.get("token")
                if isinstance(token, str):
                    went_with_their_queue.add(token)
    return removed


def remove(item: IPCObject, *, force: bool = False) -> None:
    """Remove exactly this object (unlink its name, or IPC_RMID by its id).

    A live object (held by a process, a bound socket, a listener whose owner
    lives) is refused unless ``force``; the error names who holds it. Removing
    a ``sysvmq://`` listener's queue also removes its liveness token. A System V
    segment is removed without attaching to it.

    Raises:
        IPCError: it is live and ``force`` is false.
        ResourceNotFoundError: it is already gone.
        PermissionDeniedError: not yours to remove.
        ValueError: a path that is no longer a socket file or FIFO (left alone).
    """
    if item.kind == "file-lock":
        raise ValueError("a file lock goes when its holder releases it or exits; nothing to remove")
    if not force and (item.state == "live" or item.holders):
        raise IPCError(f"{_describe(item)} is in use ({held_by(item)}); use --force to remove it")
    if item.kind == "posix-shm":
        posix_shm.unlink(item.name)
    elif item.kind == "posix-sem":
        posix_sem.unlink(item.name)
    elif item.kind == "posix-mq":
        posix_mq.unlink(item.name)
    elif item.kind in ("sysv-shm", "sysv-sem", "sysv-mq"):
        if item.id is None:
            raise ValueError(f"{item.kind} {item.name} has no id")
        _rmid(item.kind, item.id, item.name)
    elif item.kind in ("unix-socket", "fifo"):
        _remove_special_file(item)
    else:
        raise ValueError(f"unknown kind {item.kind!r}; expected one of {', '.join(KINDS)}")
    token = item.details.get("token")
    if isinstance(token, str):
        with contextlib.suppress(OSError):
            _native.shm_unlink(token)


def held_by(item: IPCObject) -> str:
    """Who holds ``item``, for messages: "pid 12 (python3), pid 40 (sleep)"."""
    pids = {holder.pid: holder.command for holder in item.holders}
    for key in ("owner_pids", "handle_pids"):
        for pid in item.details.get(key) or ():
            pids.setdefault(pid, command_of(pid))
    if not pids:
        return "its owner's lock is held" if item.state == "live" else "nobody"
    return ", ".join(f"pid {pid} ({command})" for pid, command in sorted(pids.items()))


# ------------------------------------------------------------------ gathering


@dataclass
class _Context:
    """What every finder shares: one pass over /proc, the locks, the sockets."""

    processes: Processes
    locks: dict[tuple[int, int], list[FileLockEntry]]
    sockets: list[Any]
    special: list[str]
    notes: list[str]
    mqueue_entries: list[dict[str, Any]] | None

    @classmethod
    def gather(cls, kinds: tuple[str, ...], roots: tuple[str, ...], notes: list[str]) -> _Context:
        queues = _mqueue_entries(notes) if "posix-mq" in kinds else None
        special: list[str] = []
        if "unix-socket" in kinds or "fifo" in kinds:
            special, truncated = special_files(roots)
            if truncated:
                notes.append(f"stopped looking for socket files and FIFOs early in {roots}")
            # A path listener's token says where its file is, wherever that is.
            special += sorted(set(_path_listener_files()) - set(special))
        processes = scan(special)
        locks: dict[tuple[int, int], list[FileLockEntry]] = {}
        for entry in file_locks():
            locks.setdefault((entry.device, entry.inode), []).append(entry)
        return cls(processes, locks, unix_sockets(), special, notes, queues)

    def owner_holds(self, inode: tuple[int, int] | None) -> bool:
        """Whether a liveness token's owner holds its lock now."""
        return inode is not None and any(
            (lock.type, lock.mode) == _liveness.OWNER_LOCK for lock in self.locks.get(inode, ())
        )


def _path_listener_files() -> Iterator[str]:
    """The paths that unix:// and fifo:// listeners' tokens name (read-only)."""
    for name in posix_shm.list_names():
        if not (name.startswith(_liveness.PATH_TOKEN_PREFIX) and name.endswith(".listener")):
            continue
        fd = _open_read_only(_DEV_SHM + name)
        if fd is None:
            continue
        try:
            described = _liveness._inspect(fd)
        except OSError:
            continue
        finally:
            os.close(fd)
        found = None if described is None else _liveness.address_of(name, described)
        if found is not None:
            yield found[1]


def _check_kinds(kinds: Iterable[str] | None) -> tuple[str, ...]:
    if kinds is None:
        return KINDS
    if isinstance(kinds, str):
        raise TypeError("kinds must be an iterable of kind names, not a str")
    wanted = tuple(kinds)
    for kind in wanted:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return wanted


def _describe(item: IPCObject) -> str:
    what = f" ({item.unixipc})" if item.unixipc else ""
    return f"{item.kind} {item.name}{what}"


def _open_read_only(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None


def _state(holders: tuple[Holder, ...]) -> str:
    return "live" if holders else "idle"


# ------------------------------------------------------------------ POSIX objects


def _find_posix_shm(context: _Context) -> list[IPCObject]:
    found = []
    for name in posix_shm.list_names():
        fd = _open_read_only(_DEV_SHM + name)
        if fd is None:
            continue  # removed while we looked
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                continue
            inode = (status.st_dev, status.st_ino)
            holders = context.processes.holders(*inode)
            item = IPCObject(
                "posix-shm",
                name,
                status.st_uid,
                stat.S_IMODE(status.st_mode),
                status.st_size,
                state=_state(holders),
                holders=holders,
                inode=inode,
            )
            found.append(_recognise(item, fd, context))
        except OSError:
            continue
        finally:
            os.close(fd)
    return found


def _recognise(item: IPCObject, fd: int, context: _Context) -> IPCObject:
    """What unixipc made of a POSIX shared memory object, from its header."""
    described = ring._inspect(fd)
    if described is not None:
        if described.get("layout") == "unknown":
            return replace(item, unixipc="ring (unknown layout)", details=described)
        if described["handles"]:
            state = "live"
        elif described["dead_handles"]:
            state = "stale"
        else:
            state = item.state
        return replace(item, unixipc="ring", state=state, details=described)
    if _status.is_status_name(item.name):
        published = _status._inspect(fd)
        if published is not None:
            owner = context.owner_holds(item.inode)
            state = "live" if owner or item.holders else "stale"
            what = str(published.pop("what"))
            return replace(item, unixipc=what, state=state, details=published)
    token = _liveness._inspect(fd) if _is_token_name(item.name) else None
    if token is not None:
        owner = context.owner_holds(item.inode)
        owners = sorted(
            lock.pid
            for lock in context.locks.get(item.inode or (0, 0), ())
            if lock.pid is not None and (lock.type, lock.mode) == _liveness.OWNER_LOCK
        )
        details = {**token, "owner_alive": owner, "owner_pids": owners}
        return replace(
            item, unixipc="liveness token", state="live" if owner else "stale", details=details
        )
    published = topic._inspect(fd)
    if published is not None:
        state = "live" if published.get("publishers") or published.get("subscribers") else "idle"
        return replace(item, unixipc="topic", state=state, details=published)
    synced = shared_sync._inspect(os.pread(fd, _HEAD_BYTES, 0))
    if synced is not None:
        return replace(item, unixipc=str(synced["object"]), details=synced)
    return item


_GLIBC_SEM_BYTES = 32  # sizeof(sem_t) with glibc on 64-bit targets


def _find_posix_sem(context: _Context) -> list[IPCObject]:
    found = []
    for name in posix_sem.list_names():
        try:
            status = os.stat(f"{_DEV_SHM}/sem.{name[1:]}", follow_symlinks=False)
        except OSError:
            continue
        inode = (status.st_dev, status.st_ino)
        holders = context.processes.holders(*inode)
        found.append(
            IPCObject(
                "posix-sem",
                name,
                status.st_uid,
                stat.S_IMODE(status.st_mode),
                status.st_size,
                state=_state(holders),
                holders=holders,
                inode=inode,
                details=_posix_sem_count(f"{_DEV_SHM}/sem.{name[1:]}"),
            )
        )
    return found


def _posix_sem_count(path: str) -> dict[str, Any]:
    """The value and waiter count of a named semaphore, read without sem_open.

    glibc's sem_t on 64-bit targets (32 bytes) begins with one 64-bit word: the
    value in its low 32 bits, the number of waiters in the high ones. The file is
    opened read-only and never mapped, so reading changes nothing; on another
    layout the counts are left out rather than guessed.
    """
    if sys.maxsize <= 2**32:
        return {}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}  # not ours to read, or removed meanwhile
    try:
        if os.fstat(fd).st_size != _GLIBC_SEM_BYTES:
            return {}
        word = int.from_bytes(os.pread(fd, 8, 0), sys.byteorder)
    finally:
        os.close(fd)
    return {"value": word & 0xFFFF_FFFF, "waiters": word >> 32}


_MQUEUE_LISTER = r"""
import json, os, subprocess, sys
target = next(path for path in sys.argv[1:] if os.path.isdir(path))
subprocess.run(["mount", "-t", "mqueue", "none", target], check=True, capture_output=True)
entries = []
for name in os.listdir(target):
    path = os.path.join(target, name)
    try:
        status = os.stat(path)
        with open(path) as file:
            text = file.read()
    except OSError:
        continue
    fields = dict(part.split(":", 1) for part in text.split())
    entries.append({"name": "/" + name, "uid": status.st_uid, "mode": status.st_mode,
                    "device": status.st_dev, "inode": status.st_ino,
                    "bytes": int(fields.get("QSIZE", 0)),
                    "notify_pid": int(fields.get("NOTIFY_PID", 0))})
print(json.dumps(entries))
"""


def _mqueue_entries(notes: list[str]) -> list[dict[str, Any]] | None:
    """Every POSIX queue: from the mqueue filesystem where it is mounted, else from
    one mounted for a moment in a child's private mount namespace (needs
    CAP_SYS_ADMIN and unshare(1)); None, with a note saying why, when neither works."""
    mount_point = posix_mq.mqueue_mount_point()
    if mount_point is not None:
        entries = []
        for name in posix_mq.list_names():
            with contextlib.suppress(OSError):
                status = os.stat(f"{mount_point}{name}")
                with open(f"{mount_point}{name}") as file:
                    fields = dict(part.split(":", 1) for part in file.read().split())
                entries.append(
                    {
                        "name": name,
                        "uid": status.st_uid,
                        "mode": status.st_mode,
                        "device": status.st_dev,
                        "inode": status.st_ino,
                        "bytes": int(fields.get("QSIZE", 0)),
                        "notify_pid": int(fields.get("NOTIFY_PID", 0)),
                    }
                )
        return entries
    unshare = shutil.which("unshare")
    why = (
        "POSIX message queues not listed: the mqueue filesystem is not mounted here "
        "(as root: mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue)"
    )
    if unshare is None:
        notes.append(f"{why}, and unshare(1) is missing to mount it privately")
        return None
    command = [unshare, "--mount", "--propagation", "private", sys.executable, "-I", "-S", "-c"]
    targets = ["/dev/mqueue", "/mnt", "/media", "/srv", "/tmp", "/"]
    try:
        result = subprocess.run(
            [*command, _MQUEUE_LISTER, *targets], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        notes.append(f"{why}; mounting it in a private mount namespace failed: {error}")
        return None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        if "Operation not permitted" in result.stderr or "permission denied" in reason.lower():
            reason = "that needs CAP_SYS_ADMIN (root)"
        notes.append(f"{why}; mounting it in a private mount namespace failed: {reason}")
        return None
    listed: list[dict[str, Any]] = json.loads(result.stdout)
    return listed


def _find_posix_mq(context: _Context) -> list[IPCObject]:
    found = []
    for entry in context.mqueue_entries or ():
        name = entry["name"]
        details: dict[str, Any] = {
            "bytes": entry["bytes"],
            "notify_pid": entry["notify_pid"] or None,
        }
        details.update(_queue_attributes(name))
        inode = (entry["device"], entry["inode"])
        holders = context.processes.holders(*inode)
        found.append(
            IPCObject(
                "posix-mq",
                name,
                entry["uid"],
                stat.S_IMODE(entry["mode"]),
                entry["bytes"],
                state=_state(holders),
                holders=holders,
                details=details,
                inode=inode,
            )
        )
    return found


def _queue_attributes(name: str) -> dict[str, int | None]:
    """Depth and limits of a POSIX queue, through a read-only descriptor (mq_getattr)."""
    try:
        mqd = _native.mq_open(name, os.O_RDONLY | os.O_NONBLOCK, 0, -1, -1)
    except OSError:
        return {"messages": None, "max_messages": None, "max_message_size": None}
    try:
        _flags, max_messages, max_message_size, current = _native.mq_getattr(mqd)
    finally:
        _native.mq_close(mqd)
    return {
        "messages": current,
        "max_messages": max_messages,
        "max_message_size": max_message_size,
    }


# ------------------------------------------------------------------ System V objects


def _time(seconds: int) -> datetime | None:
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds else None


def _owners(row: Mapping[str, int]) -> dict[str, Any]:
    """The owner and creator fields every /proc/sysvipc table has."""
    return {
        "gid": row["gid"],
        "creator_uid": row["cuid"],
        "creator_gid": row["cgid"],
        "change_time": _time(row["ctime"]),
    }


def _sysv_name(key: int, marked_for_removal: bool) -> str:
    if key == 0 and not marked_for_removal:
        return "IPC_PRIVATE"
    return format_key(key)


def _find_sysv_shm(context: _Context) -> list[IPCObject]:
    found = []
    for row in read_table("shm"):
        mode = row["perms"]
        status = [
            word for bit, word in ((_SHM_DEST, "dest"), (_SHM_LOCKED, "locked")) if mode & bit
        ]
        holders = tuple(context.processes.by_sysv_shm.get(row["shmid"], ()))
        details = {
            "status": status,
            "attached": row["nattch"],
            "creator_pid": row["cpid"],
            "last_pid": row["lpid"],
            "attach_time": _time(row["atime"]),
            "detach_time": _time(row["dtime"]),
            **_owners(row),
        }
        found.append(
            IPCObject(
                "sysv-shm",
                _sysv_name(row["key"], bool(mode & _SHM_DEST)),
                row["uid"],
                mode & 0o777,
                row["size"],
                row["shmid"],
                row["key"],
                "live" if row["nattch"] or holders else "idle",
                holders,
                details=details,
            )
        )
    return found


def _find_sysv_sem(context: _Context) -> list[IPCObject]:
    found = []
    for row in read_table("sem"):
        try:
            values: list[int] | None = list(_native.sysv_sem_getall(row["semid"]))
        except OSError:
            values = None  # not ours to read, or removed meanwhile
        details = {
            "count": row["nsems"],
            "values": values,
            "last_op_time": _time(row["otime"]),
            **_owners(row),
        }
        found.append(
            IPCObject(
                "sysv-sem",
                _sysv_name(row["key"], False),
                row["uid"],
                row["perms"] & 0o777,
                None,
                row["semid"],
                row["key"],
                details=details,
            )
        )
    return found


def _find_sysv_mq(context: _Context) -> list[IPCObject]:
    found = []
    for row in read_table("msg"):
        details = {
            "messages": row["qnum"],
            "bytes": row["cbytes"],
            "last_send_pid": row["lspid"] or None,
            "last_receive_pid": row["lrpid"] or None,
            "last_send_time": _time(row["stime"]),
            "last_receive_time": _time(row["rtime"]),
            **_owners(row),
        }
        found.append(
            IPCObject(
                "sysv-mq",
                _sysv_name(row["key"], False),
                row["uid"],
                row["perms"] & 0o777,
                row["cbytes"],
                row["msqid"],
                row["key"],
                details=details,
            )
        )
    return found


# ------------------------------------------------------------------ files


def _find_unix_sockets(context: _Context) -> list[IPCObject]:
    """Socket files: bound ones from /proc/net/unix, stale ones found under the directories."""
    by_path: dict[str, list[Any]] = {}
    for entry in context.sockets:
        by_path.setdefault(entry.path, []).append(entry)
    paths = set(by_path) | set(context.special)
    found = []
    for path in sorted(paths):
        try:
            status = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISSOCK(status.st_mode):
            continue
        entries = by_path.get(path, [])
        holders: list[Holder] = []
        for entry in entries:
            for holder in context.processes.by_socket.get(entry.inode, ()):
                if holder not in holders:
                    holders.append(holder)
        bound = bool(entries)
        details = {
            "bound": bound,
            "listening": any(entry.listening for entry in entries),
            "connections": sum(entry.connected for entry in entries),
            "type": entries[0].type if entries else None,
        }
        found.append(
            IPCObject(
                "unix-socket",
                path,
                status.st_uid,
                stat.S_IMODE(status.st_mode),
                None,
                state="live" if bound else "stale",
                holders=tuple(holders),
                details=details,
                inode=(status.st_dev, status.st_ino),
            )
        )
    return found


def _find_fifos(context: _Context) -> list[IPCObject]:
    found = []
    for path in context.special:
        try:
            status = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISFIFO(status.st_mode):
            continue
        inode = (status.st_dev, status.st_ino)
        holders = context.processes.holders(*inode)
        found.append(
            IPCObject(
                "fifo",
                path,
                status.st_uid,
                stat.S_IMODE(status.st_mode),
                None,
                state=_state(holders),
                holders=holders,
                inode=inode,
            )
        )
    return found


def _find_file_locks(context: _Context) -> list[IPCObject]:
    found = []
    for inode, entries in context.locks.items():
        path, uid, mode = _path_of(inode, entries, context)
        for entry in entries:
            holders: tuple[Holder, ...] = ()
            if entry.pid is not None:
                holders = (Holder(entry.pid, command_of(entry.pid), "lock"),)
            else:
                holders = tuple(
                    holder for holder in context.processes.holders(*inode) if holder.how == "open"
                )
            found.append(
                IPCObject(
                    "file-lock",
                    path,
                    uid,
                    mode,
                    None,
                    state="live",
                    holders=holders,
                    details={
                        "type": entry.type,
                        "mode": entry.mode,
                        "start": entry.start,
                        "end": entry.end,
                        "pid": entry.pid,
                        "inode": inode[1],
                    },
                    inode=inode,
                )
            )
    return found


def _path_of(
    inode: tuple[int, int], entries: list[FileLockEntry], context: _Context
) -> tuple[str, int, int]:
    """The path of a locked file, from a descriptor of a process that holds it."""
    pids = [entry.pid for entry in entries if entry.pid is not None]
    pids += [holder.pid for holder in context.processes.holders(*inode)]
    for pid in pids:
        with contextlib.suppress(OSError):
            for descriptor in os.listdir(f"/proc/{pid}/fd"):
                link = f"/proc/{pid}/fd/{descriptor}"
                with contextlib.suppress(OSError):
                    status = os.stat(link)
                    if (status.st_dev, status.st_ino) == inode:
                        return os.readlink(link), status.st_uid, stat.S_IMODE(status.st_mode)
    return f"inode {inode[1]} on device {os.major(inode[0])}:{os.minor(inode[0])}", -1, 0


_FINDERS = {
    "posix-shm": _find_posix_shm,
    "posix-sem": _find_posix_sem,
    "posix-mq": _find_posix_mq,
    "sysv-shm": _find_sysv_shm,
    "sysv-sem": _find_sysv_sem,
    "sysv-mq": _find_sysv_mq,
    "unix-socket": _find_unix_sockets,
    "fifo": _find_fifos,
    "file-lock": _find_file_locks,
}


# ------------------------------------------------------------------ channels
# The one place that knows how channels name their objects (see the drivers in
# unixipc/channels/): a listener of mq:///Q holds the token Q.listener; one of
# sysvmq://KEY holds /unixipc-sysvmq-<8 hex digits>.listener; a connection
# being made is NAME.<token>.up/.down (queues, rings, FIFOs) with the tokens
# NAME.<token>.c (the client's) and .s (the server's); shm://R listens on the
# ring R (4 KiB, one handle that both produces and consumes). Established
# connections have removed their names: they are counted from the removed
# names that processes still hold.

_CONNECTION = re.compile(r"^(.+)\.([0-9a-f]+)\.(up|down|c|s)$")
_LISTENER_SUFFIX = ".listener"
_SYSVMQ_TOKENS = "/unixipc-sysvmq-"
_SHM_LISTENER_CAPACITY = 4096


def _is_token_name(name: str) -> bool:
    """Whether channels would name a liveness token so."""
    match = _CONNECTION.match(name)
    return name.endswith(_LISTENER_SUFFIX) or (match is not None and match.group(3) in ("c", "s"))


def _sysvmq_token_base(key: int) -> str:
    return f"{_SYSVMQ_TOKENS}{key & 0xFFFFFFFF:08x}"


def _connections(base: str, deleted: Mapping[str, set[int]]) -> int:
    """How many connections of the listener ``base`` are open (by their removed names)."""
    tokens = set()
    for path in deleted:
        match = _CONNECTION.match(path)
        if match and match.group(1) == base:
            tokens.add(match.group(2))
    return len(tokens)


def _apply_channel_roles(found: list[IPCObject], context: _Context) -> None:
    tokens = {item.name: item for item in found if item.unixipc == "liveness token"}
    deleted = context.processes.deleted
    for index, item in enumerate(found):
        role = _channel_role(item, tokens, deleted)
        if role is not None:
            found[index] = role


def _pair_state(base: str, tokens: Mapping[str, IPCObject]) -> str | None:
    """A connection's state from its two tokens: live while either owner lives."""
    pair = [tokens.get(f"{base}.{end}") for end in ("c", "s")]
    present = [token for token in pair if token is not None]
    if not present:
        return None
    return "live" if any(token.state == "live" for token in present) else "stale"


def _channel_role(
    item: IPCObject, tokens: Mapping[str, IPCObject], deleted: Mapping[str, set[int]]
) -> IPCObject | None:
    """``item`` seen as a channel's object (listener, connection, token), or None."""
    match = _CONNECTION.match(item.name)
    if item.kind == "posix-mq":
        token = tokens.get(item.name + _LISTENER_SUFFIX)
        if token is not None:
            connections = _connections(item.name, deleted)
            return _listener(item, token, f"mq://{item.name}", connections)
        if match and match.group(3) in ("up", "down"):
            state = _pair_state(f"{match.group(1)}.{match.group(2)}", tokens)
            if state is not None:
                return replace(item, unixipc="channel connection", state=state)
    elif item.kind == "sysv-mq" and item.key:
        base = _sysvmq_token_base(item.key)
        token = tokens.get(base + _LISTENER_SUFFIX)
        if token is not None:
            connections = _connections(_DEV_SHM + base, deleted)
            return _listener(item, token, f"sysvmq://{format_key(item.key)}", connections)
    elif item.unixipc == "ring":
        if match and match.group(3) in ("up", "down"):
            return replace(item, unixipc="channel connection (ring)")
        producers = set(item.details.get("producer_pids") or ())
        consumers = set(item.details.get("consumer_pids") or ())
        both = bool(producers & consumers) or len(item.details.get("dead_roles") or ()) == 2
        connections = _connections(_DEV_SHM + item.name, deleted)
        if connections or (item.details.get("capacity") == _SHM_LISTENER_CAPACITY and both):
            details = {**item.details, "url": f"shm://{item.name[1:]}", "connections": connections}
            return replace(item, unixipc="channel listener (ring)", details=details)
    elif item.unixipc == "liveness token" and match and match.group(3) in ("c", "s"):
        state = _pair_state(f"{match.group(1)}.{match.group(2)}", tokens)
        if state is not None and state != item.state:
            return replace(item, state=state)
    elif item.kind in ("unix-socket", "fifo"):
        return _path_listener(item, tokens, deleted)
    return None


def _path_listener(
    item: IPCObject, tokens: Mapping[str, IPCObject], deleted: Mapping[str, set[int]]
) -> IPCObject | None:
    """A socket file or FIFO seen as a unix:// or fifo:// listener's: its token
    (named after its path) says so, and whether the listener lives."""
    scheme = "unix" if item.kind == "unix-socket" else "fifo"
    url = f"{scheme}://{item.name}"
    if scheme == "unix":
        connections = item.details.get("connections", 0)
    else:
        connections = _connections(item.name, deleted)
    token = None
    if any(name.startswith(_liveness.PATH_TOKEN_PREFIX + scheme) for name in tokens):
        token = tokens.get(_liveness.path_token_name(scheme, item.name))
    if token is not None and token.details.get("address") == os.path.realpath(item.name):
        listener = _listener(item, token, url, connections)
        if token.state != "live" and item.state == "live":
            listener = replace(listener, state="live")  # someone else's, in use
        return listener
    if scheme == "unix" and item.details.get("listening"):
        return replace(item, details={**item.details, "url": url})
    if scheme == "fifo" and connections:  # a listener of an older unixipc, with clients
        details = {**item.details, "url": url, "connections": connections}
        return replace(item, unixipc="channel listener (fifo)", details=details)
    return None


def _listener(item: IPCObject, token: IPCObject, url: str, connections: int) -> IPCObject:
    """A queue a listener owns: its state is its token's (the listener's lock)."""
    details = {
        **item.details,
        "url": url,
        "token": token.name,
        "connections": connections,
        "owner_pids": token.details.get("owner_pids", []),
    }
    return replace(item, unixipc="channel listener", state=token.state, details=details)


# ------------------------------------------------------------------ removal


def _rmid(kind: str, object_id: int, name: str) -> None:
    """IPC_RMID by id, without attaching (a segment) or opening anything."""
    what = f"{name} (id {object_id})"
    try:
        if kind == "sysv-shm":
            _native.sysv_shm_remove(object_id)
        elif kind == "sysv-sem":
            _native.sysv_sem_remove(object_id)
        else:
            _native.msgctl_rmid(object_id, what)
    except OSError as error:
        if error.errno in (errno.EINVAL, errno.EIDRM):
            error = OSError(errno.ENOENT, error.strerror)
        raise from_os_error(error, _KIND_NAMES[kind], what) from None


_PATH_LEFTOVERS = {
    "unix-socket": _socket_channel.remove_leftover,
    "fifo": _fifo_channel.remove_leftover,
}

_KIND_NAMES = {
    "sysv-shm": "System V shared memory",
    "sysv-sem": "System V semaphore set",
    "sysv-mq": sysv_mq.KIND,
}


def _remove_special_file(item: IPCObject) -> None:
    check = stat.S_ISSOCK if item.kind == "unix-socket" else stat.S_ISFIFO
    what = "socket file" if item.kind == "unix-socket" else "FIFO"
    try:
        status = os.lstat(item.name)
        if not check(status.st_mode):
            raise ValueError(f"{item.name!r} is not a {what} any more; refusing to remove it")
        os.unlink(item.name)
    except FileNotFoundError:
        raise ResourceNotFoundError(2, f"{what} {item.name!r} does not exist", item.name) from None


def _remove_checked(item: IPCObject) -> bool:
    """Remove a stale object if it is still stale, deciding under its owner's lock."""
    if item.unixipc == "liveness token" or _status.is_status_name(item.name):
        with _liveness.owner_gone(item.name) as token:
            if token == "free":
                _native.shm_unlink(item.name)
            return token == "free"
    token_name = item.details.get("token")
    if isinstance(token_name, str):  # a listener's queue, socket file or FIFO
        with _liveness.owner_gone(token_name) as token:
            if token != "free":
                return False
            if item.kind in _PATH_LEFTOVERS:  # by the rule listen() replaces it by
                if item.inode is None or not _PATH_LEFTOVERS[item.kind](item.name, item.inode):
                    return False
                _native.shm_unlink(token_name)
            else:
                remove(item, force=True)
            return True
    match = _CONNECTION.match(item.name)
    if item.kind == "posix-mq" and match:  # a connection's queue, guarded by two tokens
        base = f"{match.group(1)}.{match.group(2)}"
        with (
            _liveness.owner_gone(base + ".c") as client,
            _liveness.owner_gone(base + ".s") as server,
        ):
            if "held" in (client, server):
                return False
            posix_mq.unlink(item.name)
            return True
    if item.kind == "posix-shm" and item.details.get("dead_handles"):  # a ring
        try:
            fd = os.open(_DEV_SHM + item.name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            status = os.fstat(fd)
            if (status.st_dev, status.st_ino) != item.inode or not ring._lock_abandoned(fd):
                return False
            posix_shm.unlink(item.name)
            return True
        finally:
            os.close(fd)
    return False
