"""Anonymous pipes and popen: one-way byte streams between related processes.

Persistence: process. A pipe exists while some process holds one of its ends;
it has no name, so only the creator and its children (fork, or a
``multiprocessing`` child under any start method) can use it.

Portability: POSIX. Ends are non-blocking file descriptors with ``O_CLOEXEC``.
Writes of at most :data:`unixipc.PIPE_BUF` bytes are atomic.
"""

from __future__ import annotations

import os
import subprocess
from typing import Literal, overload

from ._names import check_path
from ._stream import ByteStreamReader, ByteStreamWriter, register_for_multiprocessing
from .errors import from_os_error

__all__ = ("Pipe", "PipeReader", "PipeWriter", "PopenReader", "PopenWriter", "popen")


class PipeReader(ByteStreamReader):
    """The reading end of an anonymous pipe."""

    kind = "pipe"


class PipeWriter(ByteStreamWriter):
    """The writing end of an anonymous pipe."""

    kind = "pipe"


register_for_multiprocessing(PipeReader)
register_for_multiprocessing(PipeWriter)


class Pipe:
    """Anonymous pipes (pipe(2)): use :meth:`Pipe.create`."""

    @staticmethod
    def create() -> tuple[PipeReader, PipeWriter]:
        """Create a pipe and return its ``(reader, writer)`` ends.

        Both ends survive fork and can be passed to a ``multiprocessing`` child
        under fork, spawn and forkserver. Each process closes the ends it holds.

        Raises:
            ResourceLimitError: the process or system is out of file descriptors.
        """
        try:
            read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            raise from_os_error(error, "pipe", "pipe(2)") from None
        name = f"pipe:{read_fd}-{write_fd}"
        return PipeReader(read_fd, name), PipeWriter(write_fd, name)


class _PopenEnd:
    """What both popen ends add: the child process and pclose semantics."""

    _process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        """The shell's process id."""
        return self._process.pid

    def wait(self, *, timeout: float | None = None) -> int:
        """Close this end, wait for the command to finish and return its exit status.

        As pclose(3): the status is the shell's exit code, or ``-N`` if a signal
        N ended it.

        Raises:
            TimeoutExpired: the command did not finish within ``timeout`` seconds.
        """
        from ._deadline import Deadline

        deadline = Deadline(timeout)
        self.close()  # type: ignore[attr-defined]
        try:
            return self._process.wait(deadline.remaining())
        except subprocess.TimeoutExpired:
            raise deadline.error(f"waiting for {self._process.args!r}") from None

    def __exit__(self, *exc_info: object) -> None:
        self.wait()


class PopenReader(_PopenEnd, ByteStreamReader):
    """Reads a shell command's standard output (``popen(command, "r")``)."""

    kind = "popen"


class PopenWriter(_PopenEnd, ByteStreamWriter):
    """Writes a shell command's standard input (``popen(command, "w")``)."""

    kind = "popen"


@overload
def popen(command: str, mode: Literal["r"]) -> PopenReader: ...
@overload
def popen(command: str, mode: Literal["w"]) -> PopenWriter: ...
def popen(command: str, mode: Literal["r", "w"]) -> PopenReader | PopenWriter:
    """Run ``command`` with ``/bin/sh -c`` connected to a pipe, as popen(3).

    With ``mode="r"`` the returned end reads the command's standard output; with
    ``"w"`` it writes the command's standard input. ``wait()`` (or leaving a
    ``with`` block) closes the end and returns the exit status, as pclose(3).

    Raises:
        TypeError, ValueError: bad ``command`` or ``mode``.
        IPCOSError: the shell could not be started.
    """
    if not isinstance(command, str):
        raise TypeError(f"command must be a str, not {type(command).__name__}")
    check_path(command, "command")
    if mode not in ("r", "w"):
        raise ValueError(f"mode must be 'r' or 'w', got {mode!r}")
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    ours, theirs = (read_fd, write_fd) if mode == "r" else (write_fd, read_fd)
    try:
        if mode == "r":
            process = subprocess.Popen(command, shell=True, stdout=theirs)
        else:
            process = subprocess.Popen(command, shell=True, stdin=theirs)
    except OSError as error:
        os.close(ours)
        raise from_os_error(error, "popen command", command) from None
    finally:
        os.close(theirs)  # only the child keeps its end, blocking as stdio expects
    os.set_blocking(ours, False)
    end_type: type[PopenReader] | type[PopenWriter] = PopenReader if mode == "r" else PopenWriter
    end = end_type._from_fd(ours, command)
    end._process = process
    return end
