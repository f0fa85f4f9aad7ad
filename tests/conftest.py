"""Fixtures shared by every test: unique names, guaranteed cleanup, leak checks.

Every kernel object a test creates carries the session prefix in its name (or,
for System V, a key recorded here), is removed by the ``cleanup`` fixture even
when the test fails, and the session ends by checking that nothing with the
prefix survives.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Child

# The channel tests' fixtures (endpoint, url_endpoint) live beside their helpers.
pytest_plugins = ("tests.channel_support",)

#: Unique per test session, inherited by child processes.
PREFIX = os.environ.setdefault("UNIXIPC_TEST_PREFIX", f"uxt{os.getpid()}")

_counter = itertools.count()
_sysv_keys: set[int] = set()

#: Functions returning descriptions of leftover objects; facilities add theirs.
LEAK_CHECKS: list[Callable[[], list[str]]] = []


def _leftover_dev_shm() -> list[str]:
    with contextlib.suppress(FileNotFoundError):
        return [f"/dev/shm/{n}" for n in os.listdir("/dev/shm") if PREFIX in n]
    return []


def _leftover_sysv() -> list[str]:
    found = []
    for table in ("msg", "sem", "shm"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/sysvipc/{table}") as lines:
            next(lines)
            for line in lines:
                key = int(line.split()[0])
                if key in _sysv_keys:
                    found.append(f"System V {table} key {key:#x}")
    return found


def _open_unix_sockets() -> list[str]:
    """UNIX sockets still open somewhere whose path or abstract name has the prefix."""
    with contextlib.suppress(FileNotFoundError), open("/proc/net/unix") as lines:
        next(lines)
        return [
            f"UNIX socket {fields[7]}"
            for fields in (line.split() for line in lines)
            if len(fields) > 7 and PREFIX in fields[7]
        ]
    return []


LEAK_CHECKS.extend([_leftover_dev_shm, _leftover_sysv, _open_unix_sockets])

#: Every name handed out by names.posix(): POSIX message queues cannot be listed
#: here (/dev/mqueue is not mounted), so the leak check tries to open each one.
_posix_names: set[str] = set()


def _leftover_posix_mq() -> list[str]:
    from unixipc import _native

    found = []
    for name in sorted(_posix_names):
        try:
            _native.mq_close(_native.mq_open(name, os.O_RDONLY, 0, -1, -1))
        except OSError:
            continue
        found.append(f"POSIX message queue {name}")
        with contextlib.suppress(OSError):  # give the shared per-user quota back
            _native.mq_unlink(name)
    return found


LEAK_CHECKS.append(_leftover_posix_mq)


class Names:
    """Unique names for one test's objects."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def posix(self, stem: str = "obj") -> str:
        """A POSIX IPC name such as '/uxt123_mq_7'."""
        name = f"/{PREFIX}_{stem}_{next(_counter)}"
        _posix_names.add(name)
        return name

    def path(self, stem: str = "obj") -> str:
        """A path in this test's temporary directory."""
        return str(self.directory / f"{PREFIX}_{stem}_{next(_counter)}")

    def key(self) -> int:
        """A System V key that no object uses now, recorded for the leak check."""
        while True:
            key = random.randint(0x10000000, 0x7FFFFFFF)
            if key not in _sysv_keys and not _key_in_use(key):
                _sysv_keys.add(key)
                return key


def _key_in_use(key: int) -> bool:
    for table in ("msg", "sem", "shm"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/sysvipc/{table}") as lines:
            next(lines)
            if any(int(line.split()[0]) == key for line in lines):
                return True
    return False


#: Set by tools/sanitize.py (the sanitizer run of `make test`): where every process
#: writes its AddressSanitizer and UndefinedBehaviorSanitizer reports.
SANITIZER_REPORTS = os.environ.get("UNIXIPC_SANITIZER_REPORTS")


@pytest.fixture(autouse=True)
def _no_sanitizer_report() -> Iterator[None]:
    """In the sanitizer run, a test during which any process wrote a report fails with it."""
    if not SANITIZER_REPORTS:
        yield
        return
    before = set(os.listdir(SANITIZER_REPORTS))
    yield
    new = sorted(set(os.listdir(SANITIZER_REPORTS)) - before)
    if new:
        text = "\n".join(
            f"==== {entry}\n{Path(SANITIZER_REPORTS, entry).read_text(errors='replace')[:4000]}"
            for entry in new
        )
        pytest.fail(f"sanitizer reports during this test:\n{text}", pytrace=False)


@pytest.fixture
def names(tmp_path: Path) -> Names:
    return Names(tmp_path)


@pytest.fixture
def cleanup() -> Iterator[Callable[..., None]]:
    """Register ``cleanup(function, *args)``: run at teardown, newest first, even on failure.

    Errors from already-removed objects are ignored: the point is that nothing survives.
    """
    actions: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def register(function: Callable[..., Any], *args: Any) -> None:
        actions.append((function, args))

    yield register
    for function, args in reversed(actions):
        with contextlib.suppress(Exception):
            function(*args)


@pytest.fixture
def children() -> Iterator[Callable[..., Child]]:
    """Start ``children(function, *args, method=...)``; any still running at teardown is killed."""
    started: list[Child] = []

    def start(function: Callable[..., Any], *args: Any, method: str = "fork") -> Child:
        child = Child(function, *args, method=method)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any object with this session's prefix survived (then remove it)."""
    if os.environ.get("UNIXIPC_TEST_PREFIX") != PREFIX or os.getpid() != int(PREFIX[3:]):
        return  # a child process, not the session
    leftovers = [item for check in LEAK_CHECKS for item in check()]
    if not leftovers:
        return
    for item in leftovers:
        if item.startswith("/dev/shm/"):
            with contextlib.suppress(OSError):
                os.unlink(item)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"LEAKED IPC OBJECTS ({len(leftovers)}): {leftovers}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
