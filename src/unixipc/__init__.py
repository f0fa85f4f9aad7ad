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
from . import pipe as pipe
from . import posix_mq as posix_mq
from . import posix_shm as posix_shm
from . import ring as ring
from . import sysv_mq as sysv_mq
from ._stream import PIPE_BUF as PIPE_BUF
from ._sysv import IPC_PRIVATE as IPC_PRIVATE
from ._sysv import ftok as ftok
from .channel import Channel as Channel
from .channel import Listener as Listener
from .channel import channel_pair as channel_pair
from .channel import connect as connect
from .channel import listen as listen
from .errors import ClosedResourceError as ClosedResourceError
from .errors import DeadlockError as DeadlockError
from .errors import EndOfChannel as EndOfChannel
from .errors import IPCError as IPCError
from .errors import IPCOSError as IPCOSError
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
from .pipe import Pipe as Pipe
from .pipe import PipeReader as PipeReader
from .pipe import PipeWriter as PipeWriter
from .pipe import PopenReader as PopenReader
from .pipe import PopenWriter as PopenWriter
from .pipe import popen as popen
from .posix_mq import Message as Message
from .posix_mq import PosixMessageQueue as PosixMessageQueue
from .posix_mq import PosixMessageQueueInfo as PosixMessageQueueInfo
from .posix_shm import PosixSharedMemory as PosixSharedMemory
from .ring import Ring as Ring
from .ring import RingInfo as RingInfo
from .sysv_mq import SysVMessage as SysVMessage
from .sysv_mq import SysVMessageQueue as SysVMessageQueue
from .sysv_mq import SysVMessageQueueInfo as SysVMessageQueueInfo

try:
    __version__: str = _version("unixipc")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = (
    "IPC_PRIVATE",
    "PIPE_BUF",
    "Channel",
    "ClosedResourceError",
    "DeadlockError",
    "EndOfChannel",
    "Fifo",
    "FifoReader",
    "FifoWriter",
    "IPCError",
    "IPCOSError",
    "Listener",
    "Message",
    "MessageTooLarge",
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
    "PosixSharedMemory",
    "ResourceExistsError",
    "ResourceLimitError",
    "ResourceNotFoundError",
    "Ring",
    "RingInfo",
    "SysVMessage",
    "SysVMessageQueue",
    "SysVMessageQueueInfo",
    "TimeoutExpired",
    "UnsupportedFeature",
    "WouldBlock",
    "__version__",
    "aio",
    "channel",
    "channel_pair",
    "connect",
    "errors",
    "fifo",
    "ftok",
    "listen",
    "pipe",
    "popen",
    "posix_mq",
    "posix_shm",
    "ring",
    "sysv_mq",
)
