"""The ring's own benchmark (benchmarks/ring_bench.py) and the C limit it uses.

Nothing here asserts a speed: only that the harnesses move, count and report
what they say they do.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import PREFIX
from unixipc.bench.cbuild import build
from unixipc.bench.runner import Row, _aggregate

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "ring_bench.py"


@pytest.fixture(scope="module")
def ring_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ring_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # for its dataclasses
    spec.loader.exec_module(module)
    module.NAME_PREFIX = f"{PREFIX}_ringbench"  # the session's leak check covers its rings
    return module


@pytest.mark.parametrize(("producers", "consumers"), [(1, 1), (3, 2), (2, 5)])
def test_scaling_run_counts_every_message_once(
    ring_bench: ModuleType, producers: int, consumers: int
) -> None:
    messages = 3001  # not a multiple of the producers: the last ones send one less
    run = ring_bench.scaling_run(producers, consumers, messages, time_limit=100, verify=True)
    assert not run.timed_out
    assert (run.producers, run.consumers) == (producers, consumers)
    assert run.sent == run.received == messages
    assert run.id_sum == messages * (messages - 1) // 2  # each id 0..messages-1 once
    assert run.seconds > 0
    assert run.cpu_seconds > 0


def test_scaling_run_past_its_time_limit_is_killed_and_says_so(ring_bench: ModuleType) -> None:
    # A limit already past at the parent's first look: with 1 ms, 50,000 messages once
    # finished (in 3 ms) before the parent looked again (every 2 ms), and were not killed.
    run = ring_bench.scaling_run(1, 1, 50_000, time_limit=0)
    assert run.timed_out
    assert run.received < run.sent


def test_ring_bench_sections_run_and_report(ring_bench: ModuleType) -> None:
    figures = ring_bench.overhead_section(scale=100)
    assert all(value > 0 for value in figures.values()), figures
    rate = ring_bench.ring_stream(1000, 3000, 1)  # padding at the ends of laps
    assert rate > 0
    affinity = os.sched_getaffinity(0)
    latency = ring_bench.ring_pingpong(300, warm_up=100)
    assert os.sched_getaffinity(0) == affinity  # pinned for the measurement only
    assert latency.samples == 300
    assert latency.p999 is None  # too few samples to mean anything
    assert 0 < latency.median <= latency.p99


def _baseline(*args: str) -> dict[str, float]:
    binary = build()
    assert not isinstance(binary, str), binary
    result = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=60, check=True
    )
    figures: dict[str, float] = json.loads(result.stdout)
    return figures


def _two_cpus() -> tuple[str, str]:
    """Two CPUs to pin a spinning pair to (pinned together, each would wait a tick)."""
    cpus = sorted(os.sched_getaffinity(0))
    return (str(cpus[0]), str(cpus[-1]))


@pytest.mark.parametrize("size", [1000, 300_000])
def test_the_c_spsc_ring_moves_every_size(size: int) -> None:
    # Neither record size divides the ring of 2 MiB: laps end in padding. The
    # consumer exits with an error on any record of the wrong length.
    figures = _baseline("spsc", str(size), "0.02", *_two_cpus())
    assert figures["messages"] > 0
    mb_per_s = figures["messages_per_s"] * size / 1e6
    assert figures["mb_per_s"] == pytest.approx(mb_per_s, rel=1e-3, abs=1e-3)
    assert figures["cpu_us_per_message"] > 0


def test_the_c_spin_reports_p999_with_enough_samples_only() -> None:
    figures = _baseline("spin", "64", "0.05", *_two_cpus())
    assert 0 < figures["rtt_median_us"] <= figures["rtt_p99_us"]
    if figures["round_trips"] >= 10_000:
        assert figures["rtt_p999_us"] >= figures["rtt_p99_us"]
    else:
        assert figures["rtt_p999_us"] is None
    # A 2 ms run of the slower futex round trip: far fewer samples than p99.9 needs.
    figures = _baseline("futex", "64", "0.002", "0", "0")
    assert figures["round_trips"] < 10_000
    assert figures["rtt_p999_us"] is None


def test_p999_is_the_median_of_the_runs_only_when_every_run_has_one() -> None:
    def latency_row(*p999: float | None) -> Row:
        row = Row("x", "unixipc", "", "latency", 64, "cross-core")
        runs = [
            {"rtt_median_us": 1.0, "rtt_p99_us": 2.0, "rtt_p999_us": value, "round_trips": 10}
            for value in p999
        ]
        _aggregate(row, runs)
        return row

    row = latency_row(3.0, 5.0, 4.0)
    assert (row.rtt_p999_us, row.round_trips) == (4.0, 30)
    assert latency_row(3.0, None, 4.0).rtt_p999_us is None


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
