"""unixipc: every classic UNIX IPC facility for Python, as real kernel objects.

One shape for every facility: ``X.create(...)``, ``X.open(...)``,
``X.open_or_create(...)``, ``x.unlink()``, ``x.close()``, ``x.info()``; keyword
``timeout`` on every blocking call; one exception tree (:mod:`unixipc.errors`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from . import aio as aio
from . import channel as channel
from . import errors as errors
from . import fifo as fifo
from . import file_lock as file_lock
from . import inspect as inspect
from . import mapped_file as mapped_file
from . import pipe as pipe
from . import posix_mq as posix_mq
from . import posix_sem as posix_sem
from . import posix_shm as posix_shm
from . import ring as ring
from . import rpc as rpc
from . import shared_sync as shared_sync
from . import signals as signals
from . import sockets as sockets
from . import sysv_mq as sysv_mq
from . import sysv_sem as sysv_sem
from . import sysv_shm as sysv_shm
from . import topic as topic
from . import waitset as waitset
from ._stream import PIPE_BUF as PIPE_BUF
from ._sysv import IPC_PRIVATE as IPC_PRIVATE
from ._sysv import ftok as ftok
from .channel import Channel as Channel
from .channel import Listener as Listener
from .channel import channel_pair as channel_pair
from .channel import connect as connect
from .channel import listen as listen
from .errors import AuthenticationError as AuthenticationError
from .errors import ClosedResourceError as ClosedResourceError
from .errors import DeadlockError as DeadlockError
from .errors import EndOfChannel as EndOfChannel
from .errors import IPCError as IPCError
from .errors import IPCOSError as IPCOSError
from .errors import MessagesMissed as MessagesMissed
from .errors import MessageTooLarge as MessageTooLarge
from .errors import OwnerDied as OwnerDied
from .errors import PeerDied as PeerDied
from .errors import PermissionDeniedError as PermissionDeniedError
from .errors import ResourceExistsError as ResourceExistsError
from .errors import ResourceLimitError as ResourceLimitError
from .errors import ResourceNotFoundError as ResourceNotFoundError
from .errors import TimeoutExpired as TimeoutExpired
from .errors import UnsupportedFeature as UnsupportedFeature
from .errors import WouldBlock as WouldBlock
from .fifo import Fifo as Fifo
from .fifo import FifoReader as FifoReader
from .fifo import FifoWriter as FifoWriter
from .file_lock import FileLock as FileLock
from .file_lock import LockHolder as LockHolder
from .file_lock import RecordLock as RecordLock
from .mapped_file import AnonymousSharedMemory as AnonymousSharedMemory
from .mapped_file import MappedFile as MappedFile
from .pipe import Pipe as Pipe
from .pipe import PipeReader as PipeReader
from .pipe import PipeWriter as PipeWriter
from .pipe import PopenReader as PopenReader
from .pipe import PopenWriter as PopenWriter
from .pipe import popen as popen
from .posix_mq import Message as Message
from .posix_mq import PosixMessageQueue as PosixMessageQueue
from .posix_mq import PosixMessageQueueInfo as PosixMessageQueueInfo
from .posix_sem import PosixSemaphore as PosixSemaphore
from .posix_shm import PosixSharedMemory as PosixSharedMemory
from .ring import Ring as Ring
from .ring import RingInfo as RingInfo
from .shared_sync import SharedBarrier as SharedBarrier
from .shared_sync import SharedCondition as SharedCondition
from .shared_sync import SharedMutex as SharedMutex
from .shared_sync import SharedRWLock as SharedRWLock
from .sysv_mq import SysVMessage as SysVMessage
from .sysv_mq import SysVMessageQueue as SysVMessageQueue
from .sysv_mq import SysVMessageQueueInfo as SysVMessageQueueInfo
from .sysv_sem import SysVSemaphoreSet as SysVSemaphoreSet
from .sysv_shm import SysVSharedMemory as SysVSharedMemory
from .topic import Topic as Topic
from .topic import TopicInfo as TopicInfo
from .waitset import WaitSet as WaitSet
from .waitset import wait as wait

try:
    __version__: str = _version("unixipc")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = (
    "IPC_PRIVATE",
    "PIPE_BUF",
    "AnonymousSharedMemory",
    "AuthenticationError",
    "Channel",
    "ClosedResourceError",
    "DeadlockError",
    "EndOfChannel",
    "Fifo",
    "FifoReader",
    "FifoWriter",
    "FileLock",
    "IPCError",
    "IPCOSError",
    "Listener",
    "LockHolder",
    "MappedFile",
    "Message",
    "MessageTooLarge",
    "MessagesMissed",
    "OwnerDied",
    "PeerDied",
    "PermissionDeniedError",
    "Pipe",
    "PipeReader",
    "PipeWriter",
    "PopenReader",
    "PopenWriter",
    "PosixMessageQueue",
    "PosixMessageQueueInfo",
    "PosixSemaphore",
    "PosixSharedMemory",
    "RecordLock",
    "ResourceExistsError",
    "ResourceLimitError",
    "ResourceNotFoundError",
    "Ring",
    "RingInfo",
    "SharedBarrier",
    "SharedCondition",
    "SharedMutex",
    "SharedRWLock",
    "SysVMessage",
    "SysVMessageQueue",
    "SysVMessageQueueInfo",
    "SysVSemaphoreSet",
    "SysVSharedMemory",
    "TimeoutExpired",
    "Topic",
    "TopicInfo",
    "UnsupportedFeature",
    "WaitSet",
    "WouldBlock",
    "__version__",
    "aio",
    "channel",
    "channel_pair",
    "connect",
    "errors",
    "fifo",
    "file_lock",
    "ftok",
    "inspect",
    "listen",
    "mapped_file",
    "pipe",
    "popen",
    "posix_mq",
    "posix_sem",
    "posix_shm",
    "ring",
    "rpc",
    "shared_sync",
    "signals",
    "sockets",
    "sysv_mq",
    "sysv_sem",
    "sysv_shm",
    "topic",
    "wait",
    "waitset",
)
