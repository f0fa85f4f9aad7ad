"""Every blocking call's timeout: infinite and huge values block, wall-clock steps change nothing.

The cases are in ``tests/blocking_calls.py``: every call of the library that
waits and takes a ``timeout``. Two promises are checked on each:

- ``timeout=math.inf`` and huge values (1e12 s) block like ``None`` (no
  OverflowError), and the call finishes when what it waits for comes;
- a timeout is measured on the monotonic clock: a worker process runs each call
  with a short timeout under an LD_PRELOAD shim (compiled here) that moves
  CLOCK_REALTIME, gettimeofday and time by an hour forward just before the call,
  an hour back a third of the way through and forward again at two thirds,
  interrupting the call with a harmless signal after each step (so that a call
  that recomputes a wall-clock deadline after EINTR would do so on the stepped
  clock). A deadline kept on the wall clock would end the wait at once or an
  hour late; every call must give up after its timeout, neither early nor late.
"""

from __future__ import annotations

import json
import math
import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import blocking_calls, conftest
from tests.helpers import CHILD_TIMEOUT, compile_c
from unixipc import _deadline

CASES = sorted(blocking_calls.CASES)
ROOT = Path(__file__).resolve().parent.parent


def _register(scratch: blocking_calls.Scratch) -> None:
    """Let the session's leak check look for what the case made."""
    conftest._posix_names.update(scratch.posix_names)
    conftest._sysv_keys.update(scratch.keys)


class _Running:
    """A call running in its own thread."""

    def __init__(self, blocked: blocking_calls.Blocked, timeout: float | None) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.ident = 0
        self.thread = threading.Thread(target=self._run, args=(blocked, timeout), daemon=True)
        self.thread.start()
        self.started.wait()

    def _run(self, blocked: blocking_calls.Blocked, timeout: float | None) -> None:
        self.ident = threading.get_ident()
        self.started.set()
        try:
            blocked.call(timeout)
        except BaseException as error:
            self.error = error
        self.done.set()


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("timeout", [math.inf, 1e12], ids=["inf", "1e12"])
def test_an_infinite_or_huge_timeout_blocks_until_released(name: str, timeout: float) -> None:
    scratch = blocking_calls.Scratch()
    try:
        blocked = blocking_calls.CASES[name](scratch)
        _register(scratch)
        running = _Running(blocked, timeout)
        assert not running.done.wait(0.1), f"returned at once: {running.error!r}"
        blocked.release(running.ident)
        assert running.done.wait(CHILD_TIMEOUT), "still blocked after being released"
        assert running.error is None
    finally:
        scratch.close()


def test_timeouts_beyond_any_float_or_c_type_are_forever() -> None:
    for timeout in (math.inf, 10**400, 2**70, 1e300):
        deadline = _deadline.Deadline(timeout)
        assert deadline.as_ns() == _deadline.NO_DEADLINE_NS
        assert deadline.poll_ms() <= 2**31 - 1
        assert not deadline.expired()
    with pytest.raises(ValueError, match="timeout"):
        _deadline.check_timeout(-math.inf)


def test_a_timeout_error_reports_the_timeout_as_given() -> None:
    assert str(_deadline.Deadline(1).error("waiting")) == "waiting timed out after 1 s"
    assert "after 0.9999963214 s" in str(_deadline.Deadline(0.9999963214).error("x"))
    # A layer that passes what is left of its deadline keeps the caller's timeout...
    outer = _deadline.Deadline(2.5)
    inner = _deadline.Deadline(outer.remaining())
    assert str(inner.error("receiving")) == "receiving timed out after 2.5 s"
    # ...and running out there is a timeout, not "would block".
    exhausted = _deadline.Deadline(_deadline.Remaining(0.0, 2.5))
    assert type(exhausted.error("x")).__name__ == "TimeoutExpired"
    assert type(_deadline.Deadline(0).error("x")).__name__ == "WouldBlock"


# ---- wall-clock steps ----------------------------------------------------------------

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

/* Added to every reading of the wall clock; set by the test through ctypes. */
static int64_t shift_ns;

void unixipc_test_shift_realtime(long long ns)
{
    __atomic_store_n(&shift_ns, (int64_t)ns, __ATOMIC_SEQ_CST);
}

static int (*real_clock_gettime)(clockid_t, struct timespec *);

int clock_gettime(clockid_t clock, struct timespec *out)
{
    if (real_clock_gettime == NULL) {
        void *found = dlsym(RTLD_NEXT, "clock_gettime");
        real_clock_gettime = (int (*)(clockid_t, struct timespec *))found;
    }
    int rc = real_clock_gettime(clock, out);
    int wall = clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE || clock == CLOCK_TAI;
    if (rc == 0 && wall) {
        int64_t at = (int64_t)out->tv_sec * 1000000000 + out->tv_nsec +
                     __atomic_load_n(&shift_ns, __ATOMIC_SEQ_CST);
        out->tv_sec = (time_t)(at / 1000000000);
        out->tv_nsec = (long)(at % 1000000000);
    }
    return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    (void)tz;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    tv->tv_sec = now.tv_sec;
    tv->tv_usec = now.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (out != NULL) {
        *out = now.tv_sec;
    }
    return now.tv_sec;
}
"""

WORKER = r"""
import contextlib, ctypes, json, signal, sys, threading, time
sys.path.insert(0, sys.argv[1])
from tests import blocking_calls

shift = ctypes.CDLL(None).unixipc_test_shift_realtime
shift.argtypes = [ctypes.c_longlong]
HOUR = 3600 * 10**9
assert abs(time.time() - time.clock_gettime(time.CLOCK_REALTIME)) < 1
shift(HOUR)
assert time.time() - time.monotonic() > 0  # the shim is in place
shift(0)
signal.signal(signal.SIGUSR1, lambda *_: None)  # the nudge: interrupts a wait, which goes on


def nudge(thread):
    with contextlib.suppress(OSError):
        if thread.is_alive():
            signal.pthread_kill(thread.ident, signal.SIGUSR1)


print("ready", flush=True)
for line in sys.stdin:
    name, timeout = line.split()
    timeout = float(timeout)
    scratch = blocking_calls.Scratch()
    result = {"posix": scratch.posix_names, "keys": scratch.keys}
    try:
        blocked = blocking_calls.CASES[name](scratch)

        def run():
            started = time.monotonic()
            try:
                result["outcome"] = f"returned {blocked.call(timeout)!r}"
            except BaseException as error:
                result["outcome"] = type(error).__name__
            result["elapsed"] = time.monotonic() - started

        thread = threading.Thread(target=run, daemon=True)
        shift(HOUR)  # the wall clock jumps an hour forward just before the call
        thread.start()
        time.sleep(timeout / 3)
        shift(-HOUR)  # ...an hour back
        nudge(thread)
        time.sleep(timeout / 3)
        shift(HOUR)  # ...and forward again
        nudge(thread)
        thread.join()  # an hour, if a deadline moved with the clock: the test kills us
        shift(0)
    except BaseException as error:
        result["outcome"] = f"setup failed: {error!r}"
    finally:
        scratch.close()
    print(json.dumps(result), flush=True)
"""

#: The short timeout every call gets under the shim, and how late it may end.
STEPPED_TIMEOUT = 0.3
LATE = 30.0  # a busy 2-core machine; a deadline on the wall clock ends an hour late


class _Worker:
    """The process that runs the cases under the shim; restarted after a hang."""

    def __init__(self, shim: Path, log: Path) -> None:
        self.shim = shim
        self.log = log
        self.process: subprocess.Popen[str] | None = None

    def run(self, name: str) -> dict[str, object]:
        if self.process is None:
            self._start()
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(f"{name} {STEPPED_TIMEOUT}\n")
        self.process.stdin.flush()
        line = self._line(STEPPED_TIMEOUT + CHILD_TIMEOUT)
        if line is None:
            self.stop()
            raise AssertionError(
                f"{name} did not give up within {CHILD_TIMEOUT} s of its {STEPPED_TIMEOUT} s "
                "timeout: its deadline moved with the wall clock"
            )
        result: dict[str, object] = json.loads(line)
        return result

    def _start(self) -> None:
        environment = dict(os.environ, LD_PRELOAD=str(self.shim))
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(ROOT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=environment,
            )
        if self._line(CHILD_TIMEOUT) != "ready":
            self.stop()
            raise AssertionError(f"the shim's worker did not start: {self.log.read_text()}")

    def _line(self, timeout: float) -> str | None:
        assert self.process is not None
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        return self.process.stdout.readline().strip() or None

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.communicate()
            self.process = None


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Worker]:
    directory = tmp_path_factory.mktemp("clock_shim")
    shim = compile_c(SHIM, directory, "clock_shim", "dl", shared=True)
    running = _Worker(shim, directory / "worker.log")
    yield running
    running.stop()


@pytest.mark.parametrize("name", CASES)
def test_a_wall_clock_step_neither_stretches_nor_cuts_a_timeout(worker: _Worker, name: str) -> None:
    result = worker.run(name)
    conftest._posix_names.update(result["posix"])  # type: ignore[arg-type]
    conftest._sysv_keys.update(result["keys"])  # type: ignore[arg-type]
    # A timed-out SharedCondition.wait returns False, as threading's does.
    assert result["outcome"] in ("TimeoutExpired", "returned False"), result
    elapsed = result["elapsed"]
    assert isinstance(elapsed, float)
    assert elapsed >= STEPPED_TIMEOUT - 0.005, f"gave up early: {elapsed:.3f} s"
    assert elapsed <= STEPPED_TIMEOUT + LATE, f"gave up late: {elapsed:.3f} s"
