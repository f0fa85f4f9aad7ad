"""The public surface: exactly the intended names, each documented."""

from __future__ import annotations

import inspect

import unixipc

PUBLIC = {
    # errors
    "IPCError",
    "ClosedResourceError",
    "WouldBlock",
    "TimeoutExpired",
    "MessageTooLarge",
    "MessagesMissed",
    "AuthenticationError",
    "OwnerDied",
    "PeerDied",
    "EndOfChannel",
    "UnsupportedFeature",
    "IPCOSError",
    "ResourceExistsError",
    "ResourceNotFoundError",
    "PermissionDeniedError",
    "DeadlockError",
    "ResourceLimitError",
    # pipes and FIFOs
    "PIPE_BUF",
    "Pipe",
    "PipeReader",
    "PipeWriter",
    "PopenReader",
    "PopenWriter",
    "popen",
    "Fifo",
    "FifoReader",
    "FifoWriter",
    # memory
    "PosixSharedMemory",
    "posix_shm",
    "AnonymousSharedMemory",
    "MappedFile",
    "SysVSharedMemory",
    "mapped_file",
    "sysv_shm",
    "PosixSemaphore",
    "SysVSemaphoreSet",
    "posix_sem",
    "sysv_sem",
    # channels
    "aio",
    "Channel",
    "Listener",
    "channel",
    "channel_pair",
    "connect",
    "listen",
    # message queues
    "IPC_PRIVATE",
    "ftok",
    "Message",
    "PosixMessageQueue",
    "PosixMessageQueueInfo",
    "posix_mq",
    "SysVMessage",
    "SysVMessageQueue",
    "SysVMessageQueueInfo",
    "sysv_mq",
    # process-shared locks and file locks
    "SharedMutex",
    "SharedCondition",
    "SharedRWLock",
    "SharedBarrier",
    "FileLock",
    "RecordLock",
    "LockHolder",
    "shared_sync",
    "file_lock",
    # the shared-memory ring
    "Ring",
    "RingInfo",
    "ring",
    # remote procedure calls
    "rpc",
    # topics and waiting on many objects
    "Topic",
    "TopicInfo",
    "topic",
    "WaitSet",
    "wait",
    "waitset",
    # the inspector
    "inspect",
    # sockets and signals
    "sockets",
    "signals",
    # modules and metadata
    "errors",
    "fifo",
    "pipe",
    "__version__",
}


def test_exports_are_exactly_the_intended_names() -> None:
    assert set(unixipc.__all__) == PUBLIC
    assert len(unixipc.__all__) == len(set(unixipc.__all__))
    for name in unixipc.__all__:
        assert hasattr(unixipc, name), name


def test_every_public_name_is_documented() -> None:
    for name in unixipc.__all__:
        obj = getattr(unixipc, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"
        if inspect.isclass(obj):
            for attribute, member in vars(obj).items():
                if not attribute.startswith("_") and callable(member):
                    assert inspect.getdoc(member), f"{name}.{attribute} has no docstring"
