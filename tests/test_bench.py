"""The benchmark harness (`unixipc bench`): its output, its time limit, its options.

Nothing here asserts a speed: only that the harness measures, reports and
cleans up as documented.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import multiprocessing
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.bench_adapters import FailingPeerTransport, HangTransport, UnsupportedTransport
from tests.conftest import PREFIX, Names
from tests.helpers import assert_elapsed, wait_until
from unixipc import ResourceNotFoundError, SysVMessageQueue, inspect, posix_mq
from unixipc.bench import Options, run
from unixipc.bench.registry import TRANSPORTS
from unixipc.bench.report import format_report, report_to_json, size_label
from unixipc.bench.runner import Row, add_ratios, execute
from unixipc.bench.transport import Plan, Transport
from unixipc.cli.bench import DOC_BEGIN, DOC_END, message_size, options_from, update_doc
from unixipc.cli.main import build_parser

COMMAND = [sys.executable, "-m", "unixipc.cli.main"]

#: The fields the JSON records are documented to have.
DOCUMENTED_FIELDS = {
    "transport",
    "family",
    "test",
    "size",
    "placement",
    "status",
    "rtt_median_us",
    "rtt_p99_us",
    "rtt_p999_us",
    "round_trips",
    "messages_per_s",
    "mb_per_s",
    "cpu_us_per_message",
    "spread_pct",
    "ratio_to_best_peer",
    "ratio_to_c",
    "runs",
    "skipped_reason",
    "error",
}


def _leftovers(prefix: str) -> list[str]:
    return glob.glob(f"/dev/shm/{prefix}*")


def test_tiny_run_writes_documented_json_and_a_png(tmp_path: Path) -> None:
    json_path, png_path = tmp_path / "bench.json", tmp_path / "bench.png"
    process = subprocess.Popen(
        [
            *COMMAND,
            "bench",
            "--transports",
            "pipe,py-shm-spin",
            "--sizes",
            "64,4K",
            "--placements",
            "unpinned",
            "--repeats",
            "2",
            "--seconds",
            "0.05",
            "--json-file",
            str(json_path),
            "--plot",
            str(png_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    assert not _leftovers(f"uxb{process.pid}"), "the benchmark leaked shared memory"

    document = json.loads(json_path.read_text())
    assert document["format"] == "unixipc-bench/1"
    assert {"machine", "kernel", "python", "packages", "cpu_model"} <= set(document["environment"])
    results = document["results"]
    assert {(r["transport"], r["test"], r["size"]) for r in results} == {
        ("pipe", "latency", 64),
        ("pipe", "throughput", 64),
        ("pipe", "throughput", 4096),
        ("py-shm-spin", "latency", 64),
        ("py-shm-spin", "throughput", 64),
        ("py-shm-spin", "throughput", 4096),
    }
    for record in results:
        assert set(record) >= DOCUMENTED_FIELDS, record
        assert record["status"] == "ok", record
        assert record["placement"] == "unpinned"
        assert record["skipped_reason"] is None
        assert len(record["runs"]) == 2
        if record["test"] == "latency":
            assert 0 < record["rtt_median_us"] <= record["rtt_p99_us"]
            p999 = record["rtt_p999_us"]  # only with enough samples in every run
            assert p999 is None or p999 >= record["rtt_p99_us"]
            assert record["round_trips"] == sum(run["round_trips"] for run in record["runs"])
            assert record["messages_per_s"] is None
        else:
            assert record["messages_per_s"] > 0
            assert record["mb_per_s"] == pytest.approx(
                record["messages_per_s"] * record["size"] / 1e6
            )
            assert record["rtt_median_us"] is None
        assert record["cpu_us_per_message"] > 0
    # pipe is unixipc, py-shm-spin the only peer: every unixipc row has a ratio to it.
    for record in results:
        assert record["best_peer"] == "py-shm-spin"
        assert record["ratio_to_best_peer"] > 0
        assert record["ratio_to_c"] is None  # --transports left the C baseline out

    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_path.stat().st_size > 10_000
    assert "Round-trip latency, 64 B messages, unpinned" in stdout
    assert "One-way throughput, 4 KiB messages, unpinned" in stdout
    assert "x peer" in stdout
    assert f"wrote {json_path}, {png_path}" in stdout


def _plan(tmp_path: Path, transport: str, adapter: str, stem: str) -> Plan:
    return Plan(
        transport=transport,
        adapter=adapter,
        test="latency",
        size=64,
        placement="unpinned",
        seconds=0.05,
        driver_cpu=None,
        peer_cpu=None,
        prefix=f"{PREFIX}_{stem}",
        workdir=str(tmp_path),
        sysv_key=0x1234,
        python_path=[entry for entry in sys.path if entry],
    )


def test_a_hung_transport_is_killed_at_its_time_limit_and_cleaned_up(tmp_path: Path) -> None:
    transport = HangTransport()
    plan = _plan(tmp_path, transport.name, transport.spec(), "hang")
    started = time.monotonic()
    outcome = execute(transport, plan, time_limit=2.0)
    assert_elapsed(started, 2.0)
    assert "hung: killed after the time limit of 2 s" in outcome["error"]
    # Both processes of the run (driver and peer) are gone, and so is its object.
    pids = [int(line) for line in Path(plan.path("pids")).read_text().split()]
    assert len(set(pids)) == 2
    for pid in set(pids):
        wait_until(lambda pid=pid: not _alive(pid))
    assert not _leftovers(plan.prefix)


def _serve_and_wait(transport: Transport, plan: Plan, ready: Any) -> None:
    transport.serve(plan, lambda address: ready.set())  # blocks in accept until killed


@pytest.mark.parametrize("name", ["ch-sysvmq", "ch-mq"])
def test_a_queue_channel_listener_killed_at_the_limit_leaves_nothing_after_cleanup(
    name: str, tmp_path: Path, names: Names
) -> None:
    # A listener killed at the time limit cannot remove its queue nor its liveness
    # token (a POSIX shared memory object): the transport's cleanup must.
    transport = {t.name: t for t in TRANSPORTS}[name]
    plan = dataclasses.replace(
        _plan(tmp_path, name, transport.spec(), "killed"), sysv_key=names.key()
    )
    transport.setup(plan)
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    server = context.Process(target=_serve_and_wait, args=(transport, plan, ready))
    server.start()
    try:
        assert ready.wait(30)
        tokens = [item.name for item in inspect.find(["posix-shm"]) if "listener" in item.name]
        assert any(plan.prefix in token or f"{plan.sysv_key:08x}" in token for token in tokens)
    finally:
        server.kill()
        server.join(30)
        transport.cleanup(plan)
    left = [item.name for item in inspect.find(["posix-shm"])]
    assert not [token for token in left if plan.prefix in token]
    assert not [token for token in left if f"{plan.sysv_key:08x}" in token]
    if name == "ch-sysvmq":
        with pytest.raises(ResourceNotFoundError):
            SysVMessageQueue.open(plan.sysv_key)
    else:
        assert not posix_mq.exists(plan.posix_name("chmq"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_run_reports_hung_failed_and_skipped_transports_and_goes_on(tmp_path: Path) -> None:
    options = Options(
        transports=["test-hang", "test-failing-peer", "test-unsupported", "pipe"],
        tests=["latency"],
        placements=["unpinned"],
        repeats=2,
        seconds=0.05,
        time_limit=2.0,
        name_prefix=PREFIX,
        extra_transports=(HangTransport(), FailingPeerTransport(), UnsupportedTransport()),
    )
    progress: list[tuple[int, int, str]] = []
    report = run(options, progress=lambda *update: progress.append(update))
    rows = {row.transport: row for row in report.rows}
    hang = rows["test-hang"]
    assert hang.status == "failed"
    assert "hung" in (hang.error or "")
    assert hang.runs[1]["error"].startswith("not run: it hung earlier")
    failing = rows["test-failing-peer"]
    assert failing.status == "failed"
    assert "peer: RuntimeError: the peer broke on purpose" in (failing.error or "")
    assert failing.runs[0]["elapsed_s"] < 2.0  # reported at once, not at the time limit
    unsupported = rows["test-unsupported"]
    assert unsupported.status == "skipped"
    assert unsupported.skipped_reason == "not on a Tuesday"
    assert rows["pipe"].status == "ok"
    assert progress[0] == (0, 8, "test-hang latency 64 B unpinned")
    assert progress[-1] == (8, 8, "done")
    text = format_report(report)
    assert "test-hang: hung: killed after the time limit of 2 s" in text
    assert "test-unsupported (all): not on a Tuesday" in text
    assert not _leftovers(PREFIX)


def test_transports_missing_here_are_listed_as_skipped_with_the_reason() -> None:
    # In a subprocess: checking availability imports every peer library.
    result = subprocess.run(
        [*COMMAND, "--json", "bench", "--list"], capture_output=True, text=True, check=True
    )
    listing = {item["transport"]: item for item in json.loads(result.stdout)}
    assert set(listing) == {transport.name for transport in TRANSPORTS}
    assert listing["pipe"]["skipped_reason"] is None
    assert listing["c-spin"]["family"] == "C"
    for item in listing.values():
        reason = item["skipped_reason"]
        assert reason is None or len(reason) > 10, item


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


def test_options_parse_into_a_run_description() -> None:
    args = _parse(
        "--transports",
        "pipe,zmq-ipc",
        "--sizes",
        "64,4K,1MiB",
        "--tests",
        "throughput",
        "--placements",
        "same-core,cross-core",
        "--repeats",
        "5",
        "--no-peers",
        "--no-c",
        "--json-file",
        "out.json",
        "--plot",
        "out.png",
    )
    options = options_from(args)
    assert options.transports == ["pipe", "zmq-ipc"]
    assert options.resolved_sizes() == (64, 4096, 1 << 20)
    assert list(options.tests) == ["throughput"]
    assert options.placements_for("throughput") == ("cross-core", "same-core")
    assert options.resolved_repeats() == 5
    assert not options.peers
    assert not options.c_baseline
    assert args.json_path == "out.json"
    assert args.plot == "out.png"


def test_defaults_and_quick_defaults() -> None:
    full = options_from(_parse())
    assert full.resolved_repeats() == 3
    assert full.resolved_sizes() == (64, 4096, 65536, 1 << 20)
    assert full.placements_for("latency") == ("cross-core", "same-core", "unpinned")
    assert full.placements_for("throughput") == ("cross-core",)
    quick = options_from(_parse("--quick"))
    assert quick.quick
    assert quick.resolved_repeats() == 1
    assert quick.resolved_seconds() < full.resolved_seconds()
    assert quick.placements_for("latency") == ("cross-core",)
    assert options_from(_parse("--quick", "--repeats", "2")).resolved_repeats() == 2


@pytest.mark.parametrize(
    "argv",
    [
        ("--tests", "speed"),
        ("--placements", "moon"),
        ("--sizes", "12X"),
        ("--sizes", "0"),
        ("--repeats", "0"),
        ("--seconds", "-1"),
    ],
)
def test_bad_options_are_refused(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(*argv)
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_unknown_transport_is_a_one_line_error() -> None:
    result = subprocess.run(
        [*COMMAND, "bench", "--transports", "pipe,carrier-pigeon"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("unixipc bench: error: unknown transport(s) carrier-pigeon")
    assert result.stderr.count("\n") == 1


def test_message_sizes_and_labels() -> None:
    assert [message_size(text) for text in ("64", "4K", "4kib", "64KiB", "1M", "2MiB")] == [
        64,
        4096,
        4096,
        65536,
        1 << 20,
        2 << 20,
    ]
    assert [size_label(size) for size in (64, 4096, 65536, 1 << 20, 1000)] == [
        "64 B",
        "4 KiB",
        "64 KiB",
        "1 MiB",
        "1000 B",
    ]


def _row(transport: str, family: str, **figures: float) -> Row:
    test = "latency" if "rtt_median_us" in figures else "throughput"
    return Row(transport, family, "", test, 64, "cross-core", **figures)  # type: ignore[arg-type]


def test_ratios_are_relative_speed_to_the_best_peer_and_the_c_limit() -> None:
    rows = [
        _row("ours", "unixipc", rtt_median_us=2.0),
        _row("slow-peer", "peer", rtt_median_us=40.0),
        _row("fast-peer", "peer", rtt_median_us=8.0),
        _row("c-spin", "C", rtt_median_us=1.0),
        _row("c-pipe", "C", rtt_median_us=5.0),
        _row("ours", "unixipc", messages_per_s=3e6),
        _row("peer", "peer", messages_per_s=1e6),
        _row("c-memcpy", "C", messages_per_s=1e9),
        _row("c-ring", "C", messages_per_s=6e6),
    ]
    rows[7].reference_only = True
    add_ratios(rows)
    ours = rows[0]
    assert (ours.best_peer, ours.ratio_to_best_peer) == ("fast-peer", 4.0)
    assert (ours.c_limit, ours.ratio_to_c) == ("c-spin", 0.5)
    assert rows[1].ratio_to_best_peer == pytest.approx(0.2)
    stream = rows[5]
    assert (stream.best_peer, stream.ratio_to_best_peer) == ("peer", 3.0)
    assert (stream.c_limit, stream.ratio_to_c) == ("c-ring", 0.5)  # memcpy is only a reference


def test_the_c_baseline_compiles_without_warnings(tmp_path: Path) -> None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc is not None, "the C baseline test needs gcc (or cc)"
    source = tmp_path / "baseline.c"
    source.write_bytes(resources.files("unixipc.bench").joinpath("baseline.c").read_bytes())
    binary = tmp_path / "baseline"
    subprocess.run(
        [gcc, "-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-o", binary, source],
        check=True,
        capture_output=True,
    )
    for mode in ("spin", "futex", "hybrid", "pipe", "ring", "spsc", "memcpy"):
        result = subprocess.run(
            [binary, mode, "64", "0.02", "-1", "-1"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        figures = json.loads(result.stdout)
        assert figures["cpu_us_per_message"] > 0
        expected = "rtt_median_us" if mode in ("spin", "futex", "hybrid", "pipe") else "mb_per_s"
        assert figures[expected] > 0, (mode, figures)


def test_a_configuration_the_adapter_refuses_is_skipped_everywhere() -> None:
    options = Options(
        transports=["test-unsupported"],
        tests=["latency"],
        repeats=1,
        seconds=0.05,
        extra_transports=(UnsupportedTransport(),),
    )
    document = json.loads(json.dumps(report_to_json(run(options))))
    assert [record["placement"] for record in document["results"]] == [
        "cross-core",
        "same-core",
        "unpinned",
    ]
    assert {record["status"] for record in document["results"]} == {"skipped"}
    assert document["environment"]["python"].split()[0] in ("CPython", "PyPy")


def test_doc_option_replaces_only_the_marked_block(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Title\n\n{DOC_BEGIN}\nold figures\n{DOC_END}\n\nInterpretation.\n")
    update_doc(str(doc), "new figures")
    assert doc.read_text() == (
        f"# Title\n\n{DOC_BEGIN}\n```text\nnew figures\n```\n{DOC_END}\n\nInterpretation.\n"
    )
    unmarked = tmp_path / "other.md"
    unmarked.write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- unixipc bench: begin -->"):
        update_doc(str(unmarked), "figures")
