# Stub for the C extension unixipc._native, checked by mypy.stubtest.
# Each facility's C file adds its functions here, in its own section.

from os import PathLike
from typing import Any, TypeVar

from typing_extensions import Buffer

_Pair = TypeVar("_Pair", bound=tuple[Any, ...])  # a NamedTuple class of two fields

# common.c
NO_DEADLINE: int
ABI_VERSION: int

ALARM_SIGNAL: int

def monotonic_to_clock(deadline_ns: int, clock_id: int, /) -> int: ...
def blocking_read(fd: int, size: int, deadline_ns: int, /) -> bytes: ...

# posix_shm.c
def shm_open(name: str, flags: int, mode: int, /) -> int: ...
def shm_unlink(name: str, /) -> None: ...

# posix_mq.c
MQ_PRIO_MAX: int

def mq_open(
    name: str, flags: int, mode: int, max_messages: int, max_message_size: int, /
) -> int: ...
def mq_close(mqd: int, /) -> None: ...
def mq_unlink(name: str, /) -> None: ...
def mq_getattr(mqd: int, /) -> tuple[int, int, int, int]: ...
def mq_send(
    mqd: int, message: object, priority: int, deadline_ns: int, name: str, max_size: int, /
) -> int | None: ...
def mq_receive(
    mqd: int, size: int, deadline_ns: int, name: str, result_type: type[_Pair], /
) -> _Pair: ...
def mq_receive_into(
    mqd: int, buffer: Buffer, deadline_ns: int, name: str, /
) -> tuple[int, int]: ...
def mq_notify_pipe(mqd: int, pipe_fd: int, token: int, name: str | None = None, /) -> None: ...
def mq_notify_signal(mqd: int, signo: int, name: str | None = None, /) -> None: ...

# sysv_msg.c
IPC_PRIVATE: int
IPC_CREAT: int
IPC_EXCL: int
IPC_NOWAIT: int
MSG_NOERROR: int
MSG_EXCEPT: int

def ftok(path: str | bytes | PathLike[str] | PathLike[bytes], proj_id: int, /) -> int: ...
def msgget(key: int, flags: int, name: str | None = None, /) -> int: ...
def msgsnd(
    msqid: int,
    message: object,
    mtype: int,
    flags: int,
    deadline_ns: int,
    name: str,
    max_size: int,
    /,
) -> int | None: ...
def msgrcv(
    msqid: int,
    size: int,
    mtype: int,
    flags: int,
    deadline_ns: int,
    name: str,
    result_type: type[_Pair],
    /,
) -> _Pair: ...
def msgrcv_into(
    msqid: int, buffer: Buffer, mtype: int, flags: int, deadline_ns: int, name: str, /
) -> tuple[int, int]: ...
def msgctl_stat(msqid: int, name: str | None = None, /) -> dict[str, int]: ...
def msgctl_set(
    msqid: int, uid: int, gid: int, mode: int, max_bytes: int, name: str | None = None, /
) -> None: ...
def msgctl_rmid(msqid: int, name: str | None = None, /) -> None: ...
