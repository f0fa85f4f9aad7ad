"""Channel URLs: the split into scheme and address, and the address checks drivers share (private).

Each driver parses its own address (``parse`` in its registry entry); this
module holds the parts several of them use.
"""

from __future__ import annotations

from .._names import check_path

#: The longest POSIX name a queue or ring URL may carry, in bytes.
_POSIX_NAME_MAX = 200


def split_url(url: object) -> tuple[str, str]:
    """``"scheme://rest"`` -> ``("scheme", "rest")``; the scheme is not checked here."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str such as 'unix:///tmp/s', not {type(url).__name__}")
    scheme, separator, rest = url.partition("://")
    if scheme in ("pipe:", "socketpair:") or url in ("pipe:", "socketpair:"):
        raise ValueError(f"{url!r} has no address: use channel_pair({url.rstrip(':')!r})")
    if not separator:
        scheme = ""
    return scheme, rest


def check_path_address(url: str, rest: str) -> str:
    """A filesystem path (unix://, fifo://)."""
    return check_path(rest, "url path")


def posix_name_address(url: str, rest: str) -> str:
    """``mq:///name`` and ``shm://name`` -> the POSIX name ``"/name"``."""
    name = "/" + rest.lstrip("/")
    if len(name) < 2 or "/" in name[1:] or "\0" in name or len(name.encode()) > _POSIX_NAME_MAX:
        scheme = url.partition("://")[0]
        raise ValueError(
            f"{scheme}:// takes one name of 1 to {_POSIX_NAME_MAX - 1} bytes, no '/': {url!r}"
        )
    return name
