"""Anonymous pipes and popen, between real processes."""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

import unixipc
from tests.helpers import START_METHODS, Child, assert_elapsed, fd_count, run_python
from unixipc import (
    PIPE_BUF,
    ClosedResourceError,
    EndOfChannel,
    PeerDied,
    Pipe,
    PipeReader,
    PipeWriter,
    TimeoutExpired,
    WouldBlock,
    popen,
)


@pytest.fixture
def pipe() -> Iterator[tuple[PipeReader, PipeWriter]]:
    reader, writer = Pipe.create()
    yield reader, writer
    reader.close()
    writer.close()


def _echo_upper(reader: PipeReader, writer: PipeWriter, *unused: PipeReader | PipeWriter) -> int:
    """Child: read until EOF, answer with the upper-cased bytes.

    The ends it does not use are closed first, else (under fork) its own copy
    of the writing end would keep the stream from ever ending.
    """
    for end in unused:
        end.close()
    received = 0
    while chunk := reader.receive_some(timeout=30):
        writer.send_all(chunk.upper(), timeout=30)
        received += len(chunk)
    reader.close()
    writer.close()
    return received


@pytest.mark.parametrize("method", START_METHODS)
def test_data_crosses_to_a_child_under_every_start_method(method: str) -> None:
    to_child_r, to_child_w = Pipe.create()
    to_parent_r, to_parent_w = Pipe.create()
    child = Child(_echo_upper, to_child_r, to_parent_w, to_child_w, to_parent_r, method=method)
    to_child_r.close()
    to_parent_w.close()
    message = b"hello across processes " * 1000
    to_child_w.send_all(message, timeout=30)
    to_child_w.close()
    assert to_parent_r.receive_exactly(len(message), timeout=30) == message.upper()
    assert to_parent_r.receive_some(timeout=30) == b""  # the child closed: end of stream
    to_parent_r.close()
    assert child.result() == len(message)


def test_usable_across_a_plain_fork(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, writer = pipe
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            reader.close()
            writer.send_all(b"from the forked child")
            writer.close()
        except BaseException:
            code = 1
        os._exit(code)
    writer.close()
    assert reader.receive_exactly(21, timeout=30) == b"from the forked child"
    assert reader.receive_some(timeout=30) == b""
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_end_of_stream(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, writer = pipe
    writer.send_all(b"abc")
    writer.close()
    assert reader.receive_some() == b"abc"
    assert reader.receive_some() == b""
    with pytest.raises(EndOfChannel, match="ended after 0 of 4 bytes"):
        reader.receive_exactly(4)


def test_receive_exactly_reports_the_partial_data(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, writer = pipe
    writer.send_all(b"ab")
    writer.close()
    with pytest.raises(EndOfChannel) as caught:
        reader.receive_exactly(4)
    assert caught.value.partial == b"ab"  # type: ignore[attr-defined]


def test_timed_out_receive_exactly_loses_nothing(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, writer = pipe
    writer.send_all(b"abc")
    with pytest.raises(TimeoutExpired):
        reader.receive_exactly(6, timeout=0.05)
    writer.send_all(b"def")
    assert reader.receive_exactly(6, timeout=5) == b"abcdef"


def test_receive_into_fills_a_buffer(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, writer = pipe
    writer.send_all(bytearray(b"0123456789"))
    buffer = bytearray(4)
    assert reader.receive_into(buffer) == 4
    assert buffer == b"0123"
    with pytest.raises(TypeError, match="writable"):
        reader.receive_into(b"read-only")


def test_writing_without_a_reader_raises_peer_died(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, writer = pipe
    reader.close()
    with pytest.raises(PeerDied, match="no reader"):
        writer.send_all(b"x")
    assert isinstance(PeerDied(), BrokenPipeError)


def test_peer_died_even_when_sigpipe_is_at_its_default() -> None:
    """A program that restored SIGPIPE's default action is still not killed."""
    code = """
import signal, unixipc
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
reader, writer = unixipc.Pipe.create()
reader.close()
try:
    writer.send_all(b"x")
except unixipc.PeerDied:
    print("PeerDied")
writer.close()
print("alive", signal.SIGPIPE in signal.sigpending())
"""
    result = run_python(code)
    assert result.stdout.split() == ["PeerDied", "alive", "False"]


def _write_records(writer: PipeWriter, tag: int, count: int, size: int) -> int:
    for _ in range(count):
        writer.send_all(bytes([tag]) * size, timeout=60)
    writer.close()
    return count


def test_writes_up_to_pipe_buf_are_atomic_with_8_writers() -> None:
    reader, writer = Pipe.create()
    writers, records = 8, 200
    children = [
        Child(_write_records, writer, tag, records, PIPE_BUF, method="fork")
        for tag in range(1, writers + 1)
    ]
    writer.close()
    counts = dict.fromkeys(range(1, writers + 1), 0)
    try:
        for _ in range(writers * records):
            record = reader.receive_exactly(PIPE_BUF, timeout=60)
            tag = record[0]
            assert record == bytes([tag]) * PIPE_BUF, "two writers' data interleaved"
            counts[tag] += 1
        assert reader.receive_some(timeout=60) == b""  # every writer closed: nothing extra
    finally:
        reader.close()
    assert counts == dict.fromkeys(range(1, writers + 1), records)
    assert [child.result() for child in children] == [records] * writers


def test_receive_timeouts(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, _ = pipe
    with pytest.raises(WouldBlock):
        reader.receive_some(timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        reader.receive_some(timeout=0.3)
    assert_elapsed(started, 0.3)
    assert isinstance(TimeoutExpired(), TimeoutError)


def _send_later(writer: PipeWriter, delay: float, data: bytes) -> None:
    time.sleep(delay)
    writer.send_all(data)
    writer.close()


def test_blocking_receive_waits_for_a_late_writer(
    pipe: tuple[PipeReader, PipeWriter], children: Callable[..., Child]
) -> None:
    reader, writer = pipe
    child = children(_send_later, writer, 0.3, b"late")
    writer.close()
    started = time.monotonic()
    assert reader.receive_some(timeout=None) == b"late"
    assert time.monotonic() - started >= 0.25
    child.result()


def test_send_timeouts_on_a_full_pipe(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, writer = pipe
    big = b"x" * (4 << 20)  # far more than a pipe holds
    with pytest.raises(WouldBlock) as would_block:
        writer.send_all(big, timeout=0)
    filled = would_block.value.bytes_sent
    assert 0 < filled < len(big)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired) as timed_out:
        writer.send_all(b"y" * PIPE_BUF, timeout=0.3)
    assert_elapsed(started, 0.3)
    assert timed_out.value.bytes_sent == 0  # atomic size: all or nothing
    drained = 0
    while drained < filled:
        drained += len(reader.receive_some(1 << 20, timeout=5))
    assert drained == filled


class _Interrupted(Exception):
    pass


def test_signal_handler_runs_and_the_read_continues(
    pipe: tuple[PipeReader, PipeWriter], children: Callable[..., Child]
) -> None:
    reader, writer = pipe
    calls = []
    previous = signal.signal(signal.SIGALRM, lambda *_: calls.append(time.monotonic()))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        child = children(_send_later, writer, 0.5, b"after the signal")
        writer.close()
        assert reader.receive_some(timeout=10) == b"after the signal"
        assert len(calls) == 1  # the handler ran during the blocked read
        child.result()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_ctrl_c_interrupts_a_blocked_read(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, _ = pipe
    signal.setitimer(signal.ITIMER_REAL, 0.2)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            reader.receive_some(timeout=None)
        assert time.monotonic() - started < 10
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not reader.closed


def test_closed_ends(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, writer = pipe
    reader.close()
    reader.close()  # idempotent
    assert reader.closed
    with pytest.raises(ClosedResourceError, match="is closed"):
        reader.receive_some()
    with pytest.raises(ValueError, match="is closed"):
        reader.fileno()
    writer.close()
    with pytest.raises(ClosedResourceError):
        writer.send_all(b"x")


def _drop_an_unclosed_reader() -> None:
    reader, writer = Pipe.create()
    writer.close()
    del reader
    gc.collect()


def test_an_unclosed_end_warns_and_releases_its_descriptor() -> None:
    gc.collect()  # earlier tests' garbage must not close its descriptors in our window
    before = fd_count()
    with pytest.warns(ResourceWarning, match="unclosed pipe"):
        _drop_an_unclosed_reader()
    assert fd_count() == before


def test_bad_arguments_fail_before_any_system_call(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, writer = pipe
    reader.close()
    writer.close()
    # Closed ends would raise ClosedResourceError on use: argument errors come first.
    with pytest.raises(TypeError, match="max_bytes"):
        reader.receive_some("10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bytes"):
        reader.receive_some(0)
    with pytest.raises(TypeError, match="timeout"):
        reader.receive_some(timeout="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        reader.receive_exactly(1, timeout=-1)
    with pytest.raises(TypeError, match="bytes-like"):
        writer.send_all("text")
    with pytest.raises(TypeError, match="bytes-like"):
        writer.send_all(12)


def _receive_from_queue(queue: object) -> bytes:
    reader = queue.get(timeout=30)  # type: ignore[attr-defined]
    with reader:
        return bytes(reader.receive_exactly(5, timeout=30))


def test_an_end_travels_through_a_multiprocessing_queue() -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    reader, writer = Pipe.create()
    child = Child(_receive_from_queue, queue, method="spawn")
    queue.put(reader)
    writer.send_all(b"hello")
    assert child.result() == b"hello"
    queue.close()
    queue.join_thread()
    reader.close()
    writer.close()


def test_plain_pickle_refuses_an_end(pipe: tuple[PipeReader, PipeWriter]) -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(pipe[0])
    with pytest.raises(TypeError, match="multiprocessing"):
        pickle.dumps(pipe[1])


def test_pipe_buf_is_the_kernels_atomic_write_size() -> None:
    read_fd, write_fd = os.pipe()
    try:
        assert os.fpathconf(read_fd, "PC_PIPE_BUF") == unixipc.PIPE_BUF >= 512
    finally:
        os.close(read_fd)
        os.close(write_fd)


# --- popen -------------------------------------------------------------------


def test_popen_reads_a_commands_output() -> None:
    with popen("echo hello; echo world >&2", "r") as command:
        output = command.receive_exactly(6, timeout=30)
        assert command.receive_some(timeout=30) == b""
        assert command.wait(timeout=30) == 0
    assert output == b"hello\n"


def test_popen_writes_a_commands_input(tmp_path: object) -> None:
    target = os.path.join(str(tmp_path), "out")
    command = popen(f"tr a-z A-Z > {target}", "w")
    command.send_all(b"shout\n", timeout=30)
    assert command.wait(timeout=30) == 0
    assert command.closed
    with open(target, "rb") as file:
        assert file.read() == b"SHOUT\n"


def test_popen_exit_status_and_signals() -> None:
    with popen("exit 3", "r") as command:
        assert command.receive_some(timeout=30) == b""
        assert command.wait(timeout=30) == 3
    with popen("kill -9 $$", "r") as command:
        assert command.wait(timeout=30) == -9


def test_popen_wait_timeout() -> None:
    command = popen("sleep 5", "r")
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        command.wait(timeout=0.2)
    assert_elapsed(started, 0.2)
    os.kill(command.pid, signal.SIGKILL)
    assert command.wait(timeout=30) == -9


def test_popen_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode"):
        popen("true", "rw")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="command"):
        popen(["true"], "r")  # type: ignore[call-overload]
