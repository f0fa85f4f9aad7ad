"""The exception tree and the single errno mapping."""

from __future__ import annotations

import errno

import pytest

import unixipc
from unixipc import errors

EXPECTED_BASES = {
    "IPCError": (Exception,),
    "ClosedResourceError": (errors.IPCError, ValueError),
    "WouldBlock": (errors.IPCError, BlockingIOError),
    "TimeoutExpired": (errors.IPCError, TimeoutError),
    "MessageTooLarge": (errors.IPCError, ValueError),
    "MessagesMissed": (errors.IPCError,),
    "AuthenticationError": (errors.IPCError,),
    "OwnerDied": (errors.IPCError,),
    "PeerDied": (errors.IPCError, BrokenPipeError),
    "EndOfChannel": (errors.IPCError, EOFError),
    "UnsupportedFeature": (errors.IPCError, NotImplementedError),
    "IPCOSError": (errors.IPCError, OSError),
    "ResourceExistsError": (errors.IPCOSError, FileExistsError),
    "ResourceNotFoundError": (errors.IPCOSError, FileNotFoundError),
    "PermissionDeniedError": (errors.IPCOSError, PermissionError),
    "DeadlockError": (errors.IPCOSError,),
    "ResourceLimitError": (errors.IPCOSError,),
}


@pytest.mark.parametrize(("name", "bases"), EXPECTED_BASES.items())
def test_exact_bases_and_reexport(name: str, bases: tuple[type, ...]) -> None:
    cls = getattr(errors, name)
    assert cls.__bases__ == bases
    assert getattr(unixipc, name) is cls
    assert cls.__doc__


def test_errors_module_exports_exactly_the_tree() -> None:
    assert set(errors.__all__) == set(EXPECTED_BASES)


@pytest.mark.parametrize(
    ("code", "cls", "words"),
    [
        (errno.EEXIST, errors.ResourceExistsError, "already exists"),
        (errno.ENOENT, errors.ResourceNotFoundError, "does not exist"),
        (errno.EIDRM, errors.ResourceNotFoundError, "removed while in use"),
        (errno.EACCES, errors.PermissionDeniedError, ": permission denied"),
        (errno.EPERM, errors.PermissionDeniedError, "not permitted"),
        (errno.EDEADLK, errors.DeadlockError, "deadlock avoided"),
        (errno.EMFILE, errors.ResourceLimitError, "open files"),
        (errno.EIO, errors.IPCOSError, "Input/output"),
    ],
)
def test_os_errors_keep_errno_and_name(code: int, cls: type, words: str) -> None:
    error = errors.from_os_error(OSError(code, "ignored"), "POSIX message queue", "/jobs")
    assert type(error) is cls
    assert isinstance(error, OSError)
    assert error.errno == code
    assert error.filename == "/jobs"
    assert "POSIX message queue '/jobs'" in str(error)
    assert words.lower() in str(error).lower()


def test_limit_names_the_limit() -> None:
    error = errors.from_os_error(
        OSError(errno.EINVAL, "Invalid argument"), "POSIX message queue", "/q", limit="msg_max=10"
    )
    assert isinstance(error, errors.ResourceLimitError)
    assert error.errno == errno.EINVAL
    assert "msg_max=10" in str(error)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (errno.EAGAIN, errors.WouldBlock),
        (errno.ETIMEDOUT, errors.TimeoutExpired),
        (errno.EPIPE, errors.PeerDied),
    ],
)
def test_condition_errnos_map_to_conditions(code: int, cls: type) -> None:
    error = errors.from_os_error(OSError(code, "x"), "FIFO", "/tmp/f")
    assert type(error) is cls
    assert "FIFO '/tmp/f'" in str(error)
