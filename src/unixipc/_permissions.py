"""Exact permissions for the objects the library creates: the one rule (private).

An object is created owner-only (the requested bits masked to 0o700, which the
umask can only reduce further), then given its group, then given exactly the
requested mode, each step through a descriptor of the object itself. So it is
never more open than asked at any instant, whatever the umask; the group set
with ``group=`` never sees the object with the creator's default group first;
and a symlink planted at a path is never followed: a node made at a path is
reached through an ``O_PATH | O_NOFOLLOW`` descriptor, checked to be what was
made, and changed through ``/proc/self/fd``.

Used for POSIX message queues (a descriptor), System V queues (``IPC_SET``),
FIFOs and UNIX socket files (nodes at a path); the channel layer can use
:func:`new_node` for its own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator

from .errors import from_os_error


def creation_mode(permissions: int) -> int:
    """The mode to create with: the owner's part of ``permissions`` only."""
    return permissions & 0o700


def finish(fd: int, permissions: int, group: int | None, *, path_only: bool = False) -> None:
    """Give the object open on ``fd`` its group, then exactly ``permissions``.

    With ``path_only``, ``fd`` is an ``O_PATH`` descriptor (of a FIFO or a socket
    file, which cannot be opened otherwise without side effects), reached through
    its ``/proc/self/fd`` link, which leads to the very inode it was opened on.
    """
    if path_only:
        handle = f"/proc/self/fd/{fd}"
        if group is not None:
            os.chown(handle, -1, group)
        os.chmod(handle, permissions)
    else:
        if group is not None:
            os.fchown(fd, -1, group)
        os.fchmod(fd, permissions)


def identity(info: os.stat_result) -> tuple[int, int]:
    """What tells one file from another: (device, inode)."""
    return info.st_dev, info.st_ino


@contextlib.contextmanager
def new_node(
    path: str,
    make: Callable[[int], None],
    file_type: int,
    permissions: int,
    group: int | None,
    kind: str,
) -> Iterator[int]:
    """Make a node at ``path`` with exact permissions; yield an O_PATH descriptor of it.

    ``make(mode)`` creates the node (mkfifo, bind...) with the mode it is given,
    failing if ``path`` exists (neither mkfifo(3) nor bind(2) follows a symlink
    there). The node is then opened ``O_PATH | O_NOFOLLOW``, checked to be of
    ``file_type`` (``stat.S_IFIFO``, ``stat.S_IFSOCK``), and finished by
    :func:`finish`. If anything fails after the node exists, in these steps or
    in the ``with`` block, including a KeyboardInterrupt, the node is removed (if
    it is still the one made here) before the error propagates. The descriptor
    is closed when the block ends; ``/proc/self/fd/<fd>`` reaches the node
    without following any symlink. OS errors of these steps become the
    library's errors, naming ``kind`` and ``path``.
    """
    try:
        make(creation_mode(permissions))
    except OSError as error:
        raise from_os_error(error, kind, path) from None
    fd = -1
    try:
        try:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            if stat.S_IFMT(os.fstat(fd).st_mode) != file_type:
                os.close(fd)
                fd = -2  # not ours: leave it alone
                raise OSError(errno.EEXIST, "replaced by something else while being created")
            finish(fd, permissions, group, path_only=True)
        except OSError as error:
            raise from_os_error(error, kind, path) from None
        yield fd
    except BaseException:
        _remove_if_ours(path, fd, file_type)
        raise
    finally:
        if fd >= 0:
            os.close(fd)


def _remove_if_ours(path: str, fd: int, file_type: int) -> None:
    """Remove ``path`` if it is the node made here: the one open on ``fd``; or,
    when it was never opened (interrupted just after it was made), a node of the
    type made, owned by us."""
    if fd == -2:
        return
    with contextlib.suppress(OSError):
        found = os.lstat(path)
        if fd >= 0:
            if identity(found) != identity(os.fstat(fd)):
                return
        elif stat.S_IFMT(found.st_mode) != file_type or found.st_uid != os.geteuid():
            return
        os.unlink(path)
