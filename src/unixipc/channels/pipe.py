"""``channel_pair("pipe")``: two anonymous pipes, one per direction (driver).

Frames as in :mod:`.frames`. Where the kernel honours ``RWF_NOWAIT`` on pipes
(Linux 5.x and later), the read ends stay blocking: the reads that must not wait
say ``RWF_NOWAIT``, and a receive with ``timeout=None`` sleeps in read(2) (one
system call; close() wakes it by writing a byte into our own pipe through a second
write end, ``/proc/self/fd/N``). Write ends are non-blocking, and so are both ends
elsewhere and for FIFOs (which refuse the flag): waits go through ``poll``.

Writing with no reader left raises :class:`PeerDied`, never SIGPIPE, even when a
program restored SIGPIPE's default action.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Sequence
from multiprocessing import reduction
from typing import TYPE_CHECKING, Any

from .._stream import call_without_sigpipe
from ..errors import from_os_error
from .core import LinkBase, Option, WaitSpec, max_size_option
from .frames import MAX_FRAME, FramedChannel

if TYPE_CHECKING:
    from typing_extensions import Buffer


def _pipes_take_rwf_nowait() -> bool:
    """Whether this kernel honours RWF_NOWAIT on pipes (Linux 5.x and later)."""
    flag = getattr(os, "RWF_NOWAIT", None)
    if flag is None:
        return False
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        os.preadv(read_fd, (bytearray(1),), -1, flag)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(read_fd)
        os.close(write_fd)
    return False  # pragma: no cover - a read of an empty pipe cannot succeed


_PIPE_NOWAIT = _pipes_take_rwf_nowait()


class PipeLink(LinkBase):
    """Two one-way descriptors in non-blocking mode: FIFOs, or pipes without RWF_NOWAIT."""

    can_block = False

    def __init__(self, read_fd: int, write_fd: int) -> None:
        super().__init__()
        self.read_fd = read_fd
        self.write_fd = write_fd

    def read(self, view: memoryview) -> int:
        return os.readv(self.read_fd, (view,))

    def read_wait(self, view: memoryview) -> int:
        raise NotImplementedError  # pragma: no cover - only with can_block

    def write(self, data: Buffer) -> int:
        return call_without_sigpipe(os.write, self.write_fd, data)

    def writev(self, buffers: Sequence[Buffer]) -> int:
        return call_without_sigpipe(os.writev, self.write_fd, buffers)

    def wake_reader(self) -> None:
        pass  # a reader waits in poll, which the waker ends

    def grow_write_buffer(self) -> bool:
        try:
            size = fcntl.fcntl(self.write_fd, fcntl.F_GETPIPE_SZ)
            fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, size * 2)
        except OSError:
            return False
        return True

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self.read_fd, self.write_fd)

    def passable(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _rebuild, (type(self), reduction.DupFd(self.read_fd), reduction.DupFd(self.write_fd))

    def close(self, announce: bool) -> None:
        try:
            os.close(self.write_fd)
        finally:
            os.close(self.read_fd)
            self.waker.close()


def _rebuild(cls: type[PipeLink], read_dup: Any, write_dup: Any) -> PipeLink:
    return cls(read_dup.detach(), write_dup.detach())


class NowaitPipeLink(PipeLink):
    """Two anonymous pipes whose read end stays blocking: a read with no deadline
    sleeps in the kernel, and the reads that must not wait say RWF_NOWAIT. The
    write end is non-blocking (its own open file description): writes never sleep."""

    can_block = True

    def __init__(self, read_fd: int, write_fd: int) -> None:
        os.set_blocking(read_fd, True)
        os.set_blocking(write_fd, False)
        super().__init__(read_fd, write_fd)

    def read(self, view: memoryview) -> int:
        return os.preadv(self.read_fd, (view,), -1, os.RWF_NOWAIT)

    def read_wait(self, view: memoryview) -> int:
        return os.readv(self.read_fd, (view,))

    def wake_reader(self) -> None:
        # A reader asleep in read(2): give it a byte through a write end of our
        # own (it sees the channel closed and ignores the byte).
        with contextlib.suppress(OSError):
            fd = os.open(f"/proc/self/fd/{self.read_fd}", os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, b"\0")
            finally:
                os.close(fd)


_PIPE_FLAGS = os.O_CLOEXEC if _PIPE_NOWAIT else os.O_NONBLOCK | os.O_CLOEXEC


def pair(options: dict[str, Any]) -> tuple[FramedChannel, FramedChannel]:
    """Two channel ends over two pipes (one per direction)."""
    fds: list[int] = []
    try:
        for _ in range(2):
            fds += os.pipe2(_PIPE_FLAGS)
    except OSError as error:
        for fd in fds:
            os.close(fd)
        raise from_os_error(error, "pipe", "pipe(2)") from None
    a_read, b_write, b_read, a_write = fds  # pipe 1 carries b -> a, pipe 2 a -> b
    cls = NowaitPipeLink if _PIPE_NOWAIT else PipeLink
    size = options["max_message_size"]
    return (
        FramedChannel(
            "pipe:", cls(a_read, a_write), max_message_size=size, expect_hello=False, in_use=False
        ),
        FramedChannel(
            "pipe:", cls(b_read, b_write), max_message_size=size, expect_hello=False, in_use=False
        ),
    )


PAIR_OPTIONS: dict[str, Option] = {"max_message_size": max_size_option(MAX_FRAME)}
