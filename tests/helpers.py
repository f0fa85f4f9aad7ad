"""Helpers for tests that cross real process boundaries and talk to C peers."""

from __future__ import annotations

import multiprocessing
import os
import selectors
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

START_METHODS = ("fork", "spawn", "forkserver")

# Generous: the suite must pass on a busy 2-core machine.
CHILD_TIMEOUT = 60.0


def _child_main(conn: Any, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result = function(*args)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    else:
        conn.send(("ok", result))
    finally:
        conn.close()


class Child:
    """A function running in a child process (fork, spawn or forkserver).

    The function must be defined at module level so that spawn can import it;
    its return value comes back through ``result()``.
    """

    def __init__(self, function: Callable[..., Any], *args: Any, method: str = "fork") -> None:
        context = multiprocessing.get_context(method)
        self._results, sender = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_child_main, args=(sender, function, args), daemon=True
        )
        self.process.start()
        sender.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def result(self, timeout: float = CHILD_TIMEOUT) -> Any:
        """Wait for the function's return value; its exception fails the test."""
        try:
            if not self._results.poll(timeout):
                self.kill()
                raise AssertionError(f"child {self.pid} did not finish within {timeout} s")
            status, value = self._results.recv()
        except EOFError:
            self.process.join(timeout)
            raise AssertionError(
                f"child {self.pid} died without a result (exit code {self.process.exitcode})"
            ) from None
        finally:
            self._results.close()
        self.process.join(timeout)
        if status == "error":
            raise AssertionError(f"child {self.pid} failed:\n{value}")
        return value

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(CHILD_TIMEOUT)
        if not self._results.closed:
            self._results.close()


def run_in_child(function: Callable[..., Any], *args: Any, method: str = "fork") -> Any:
    """Run ``function(*args)`` in a child process and return its result."""
    return Child(function, *args, method=method).result()


def run_python(
    code: str, *args: str, timeout: float = CHILD_TIMEOUT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run Python code in a fresh interpreter (a real, unrelated process)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def compile_c(
    source: str, directory: Path, name: str, *libraries: str, shared: bool = False
) -> Path:
    """Compile a small C peer (or, ``shared``, a library for LD_PRELOAD) with the
    machine's gcc, warnings as errors."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("these interop tests need gcc (or cc) on PATH")
    source_path = directory / f"{name}.c"
    source_path.write_text(source)
    output = directory / (f"{name}.so" if shared else name)
    subprocess.run(
        [gcc, "-Wall", "-Wextra", "-Werror", "-O2", "-o", str(output), str(source_path)]
        + (["-shared", "-fPIC"] if shared else [])
        + [f"-l{library}" for library in libraries],
        check=True,
        capture_output=True,
        text=True,
    )
    return output


def wait_until(predicate: Callable[[], bool], timeout: float = CHILD_TIMEOUT) -> None:
    """Poll ``predicate`` until it is true; fail the test if it never becomes true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


def drain_selected(
    selector: selectors.BaseSelector, receivers: Sequence[Any], count: int
) -> dict[int, bytes]:
    """Receive until ``count`` messages came from ``receivers`` (each registered in
    ``selector`` with its index as data): every object reported ready is drained
    with ``receive(timeout=0)`` until WouldBlock, which re-arms its doorbell."""
    from unixipc import WouldBlock

    received: dict[int, bytes] = {}
    deadline = time.monotonic() + CHILD_TIMEOUT
    while len(received) < count and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=5):
            while True:
                try:
                    received[key.data] = receivers[key.data].receive(timeout=0)
                except WouldBlock:
                    break
    return received


def assert_elapsed(started: float, timeout: float, *, slack: float = 1.0) -> None:
    """A timeout fired not early, and not more than ``slack`` seconds late."""
    elapsed = time.monotonic() - started
    assert elapsed >= timeout - 0.005, f"gave up early: {elapsed:.3f} s < {timeout} s"
    assert elapsed <= timeout + slack, f"gave up late: {elapsed:.3f} s > {timeout} + {slack} s"


def fd_count() -> int:
    """Open descriptors of this process (to prove nothing leaks)."""
    return len(os.listdir("/proc/self/fd"))


def fresh_tmp_commands() -> str:
    """Shell commands that mount an empty tmpfs on /tmp (in a private mount namespace).

    When this checkout or the interpreter lives under /tmp (a CI clone often does),
    its top directory there is bound back from the old /tmp, reached through a
    descriptor opened before the mount, so that the tests' Python still runs.
    """
    kept = sorted(
        {
            Path(path).resolve().relative_to("/tmp").parts[0]
            for path in (Path(__file__).parent, sys.prefix, sys.base_prefix)
            if Path(path).resolve().is_relative_to("/tmp") and Path(path).resolve() != Path("/tmp")
        }
    )
    commands = ["exec 9</tmp", "mount -t tmpfs -o mode=1777 tmpfs /tmp"]
    for top in kept:
        old, new = shlex.quote(f"/proc/self/fd/9/{top}"), shlex.quote(f"/tmp/{top}")
        commands.append(f"mkdir {new}")
        # --no-canonicalize: mount must not resolve the path to "/tmp/top", the new one.
        commands.append(f"mount --no-canonicalize --bind {old} {new}")
    commands.append("exec 9<&-")
    return " && ".join(commands)
