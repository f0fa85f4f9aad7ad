"""Names after a crash (issue 13, item 1): a listener killed with SIGKILL leaves its
names behind; the next ``listen`` takes them over, exactly one of several racing
processes wins, a live listener's name is refused naming its pid, and
``unixipc rm --stale`` running at the same time never removes a live one's.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import unixipc
from tests.channel_support import CONNECT_OPTIONS, WAIT, start_when_ready, url_for
from tests.conftest import Names
from tests.helpers import Child
from unixipc import ResourceExistsError
from unixipc import inspect as ipc_inspect

# Every scheme with a name that outlives its process (and the abstract one, whose
# name the kernel frees: it must simply work too).
NAMED = ["shm", "mq", "sysvmq", "fifo", "unix", "unix-abstract"]
RACERS = 4


def _listen_until_killed(url: str, ready: int) -> None:
    listener = unixipc.listen(url)
    os.write(ready, b"!")
    time.sleep(3 * WAIT)
    listener.close()  # pragma: no cover - killed before


def _start_listener(children: Callable[..., Child], url: str) -> Child:
    return start_when_ready(children, _listen_until_killed, url)


def _kill(child: Child) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.process.join(WAIT)
    assert child.process.exitcode == -signal.SIGKILL


def _echo_once(url: str, options: dict[str, Any]) -> bytes:
    with unixipc.connect(url, timeout=WAIT, **options) as channel:
        channel.send(b"still there?", timeout=WAIT)
        return channel.receive(timeout=WAIT)


def _works(listener: unixipc.Listener, scheme: str, children: Callable[..., Child]) -> None:
    """A client in another process reaches ``listener`` and gets an answer."""
    client = children(_echo_once, listener.url, CONNECT_OPTIONS.get(scheme, {}))
    with listener.accept(timeout=WAIT) as channel:
        channel.send(channel.receive(timeout=WAIT).upper(), timeout=WAIT)
    assert client.result() == b"STILL THERE?"


@pytest.mark.parametrize("scheme", NAMED)
def test_a_killed_listeners_name_is_taken_over(
    scheme: str, names: Names, cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    url = url_for(scheme, names)
    _kill(_start_listener(children, url))
    listener = unixipc.listen(url)
    cleanup(listener.close)
    _works(listener, scheme, children)


@pytest.mark.parametrize("scheme", NAMED)
def test_a_live_listeners_name_is_refused_naming_its_pid(
    scheme: str, names: Names, children: Callable[..., Child]
) -> None:
    url = url_for(scheme, names)
    owner = _start_listener(children, url)
    with pytest.raises(ResourceExistsError, match=rf"live listener \(pid {owner.pid}\)"):
        unixipc.listen(url)
    _kill(owner)
    unixipc.listen(url).close()  # and once it died, the name is ours (and goes)


def _race(url: str, go: int, results: int, release: int, release_write: int) -> str:
    """Wait for the start, try to listen, report, and hold on until released."""
    os.close(release_write)  # inherited: the test's own copy alone decides the release
    os.read(go, 1)
    try:
        listener = unixipc.listen(url)
    except ResourceExistsError as error:
        os.write(results, b"L")
        return str(error)
    os.write(results, b"W")
    os.read(release, 1)  # end of file once the test is done
    listener.close()
    return "won"


@pytest.mark.parametrize("scheme", NAMED)
def test_exactly_one_of_racing_processes_takes_a_dead_listeners_name(
    scheme: str, names: Names, children: Callable[..., Child]
) -> None:
    url = url_for(scheme, names)
    _kill(_start_listener(children, url))
    go_read, go_write = os.pipe()
    results_read, results_write = os.pipe()
    release_read, release_write = os.pipe()
    try:
        racers = [
            children(_race, url, go_read, results_write, release_read, release_write)
            for _ in range(RACERS)
        ]
        os.write(go_write, b"!" * RACERS)
        outcomes = b"".join(os.read(results_read, 1) for _ in range(RACERS))
    finally:
        for fd in (go_read, go_write, results_read, results_write, release_read):
            os.close(fd)
        os.close(release_write)  # the winner closes its listener now
    assert sorted(outcomes) == sorted(b"W" + b"L" * (RACERS - 1)), outcomes
    messages = [racer.result() for racer in racers]
    assert messages.count("won") == 1
    assert all("exists" in text or "in use" in text for text in messages if text != "won")


@pytest.mark.parametrize("scheme", ["mq", "shm", "unix", "fifo"])
def test_rm_stale_at_the_same_time_never_removes_a_live_listeners_names(
    scheme: str, names: Names, children: Callable[..., Child]
) -> None:
    """Listeners die and are replaced while the cleaner runs in a loop: it removes
    only what is stale, and each new listener keeps working."""
    url = url_for(scheme, names)
    prefix = url.partition("://")[2].lstrip("/")
    stop = threading.Event()
    removed: list[ipc_inspect.IPCObject] = []

    def clean() -> None:
        while not stop.is_set():
            removed.extend(ipc_inspect.remove_stale(prefix="/" + prefix))

    cleaner = threading.Thread(target=clean)
    cleaner.start()
    try:
        for _ in range(5):
            _kill(_start_listener(children, url))
            with unixipc.listen(url) as listener:  # taken over, whatever the cleaner does
                _works(listener, scheme, children)
    finally:
        stop.set()
        cleaner.join(WAIT)


# channel_pair: the end a forked child was to use dies with it, on every kind.


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _answer_and_close(channel: unixipc.Channel) -> None:
    channel.send(b"from the child", timeout=WAIT)
    channel.close()


@pytest.mark.parametrize("kind", unixipc.channel.PAIR_KINDS)
def test_a_pair_child_killed_before_it_uses_its_end_is_a_dead_peer(
    kind: str, children: Callable[..., Child]
) -> None:
    ours, theirs = unixipc.channel_pair(kind)  # type: ignore[call-overload]
    with ours:
        child = children(_sleep, 3 * WAIT)  # inherits `theirs`, never touches it
        theirs.close()  # our copy: says nothing
        _kill(child)
        with pytest.raises(unixipc.PeerDied):
            ours.receive(timeout=WAIT)


@pytest.mark.parametrize("kind", unixipc.channel.PAIR_KINDS)
def test_a_pair_child_that_closes_before_we_close_our_copy_ends_cleanly(
    kind: str, children: Callable[..., Child]
) -> None:
    ours, theirs = unixipc.channel_pair(kind)  # type: ignore[call-overload]
    with ours:
        children(_answer_and_close, theirs).result()  # done before we close our copy
        theirs.close()
        assert ours.receive(timeout=WAIT) == b"from the child"
        with pytest.raises(unixipc.EndOfChannel):
            ours.receive(timeout=WAIT)
