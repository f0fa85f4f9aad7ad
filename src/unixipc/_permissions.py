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
import functools
import os
import stat
from collections.abc import Callable, Iterator

from ._resource import on_failure
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
    it is still the one made here) before the error propagates; inside an
    :func:`~unixipc._resource.all_or_nothing` creation, also if that fails later. The descriptor
    is closed when the block ends; ``/proc/self/fd/<fd>`` reaches the node
    without following any symlink. OS errors of these steps become the
    library's errors, naming ``kind`` and ``path``.
    """
    free = not os.path.lexists(path)  # else make() fails, and nothing here is ours
    try:
        make(creation_mode(permissions))
    except OSError as error:
        raise from_os_error(error, kind, path) from None
    except BaseException:  # interrupted (a signal handler raised): made or not
        if free:
            _remove_if_ours(path, None, file_type)
        raise
    fd = -1
    made: tuple[int, int] | None = None  # the node's identity, once checked
    try:
        try:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            status = os.fstat(fd)
            if stat.S_IFMT(status.st_mode) != file_type:
                free = False  # not ours: leave it alone
                raise OSError(errno.EEXIST, "replaced by something else while being created")
            made = identity(status)
            # If the creation this is part of fails later (after this block too,
            # a signal handler raising included), the node goes.
            on_failure(functools.partial(_remove_if_ours, path, made, file_type))
            finish(fd, permissions, group, path_only=True)
        except OSError as error:
            raise from_os_error(error, kind, path) from None
        yield fd
        fd, done = -1, fd
        os.close(done)
    except BaseException:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        if free:
            _remove_if_ours(path, made, file_type)
        raise


def _remove_if_ours(path: str, made: tuple[int, int] | None, file_type: int) -> None:
    """Remove ``path`` if it is the node made here: the one whose identity is
    ``made``; or, when it was not seen yet (interrupted just after it was made),
    a node of the type made, owned by us, where nothing was before."""
    with contextlib.suppress(OSError):
        found = os.lstat(path)
        if made is not None:
            if identity(found) != made:
                return
        elif stat.S_IFMT(found.st_mode) != file_type or found.st_uid != os.geteuid():
            return
        os.unlink(path)
