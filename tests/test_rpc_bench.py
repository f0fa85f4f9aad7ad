"""The benchmark's RPC rows: they run, clean up, and compare with RPC peers only.

Speed is never asserted here: only that every row is measured and complete.
"""

from __future__ import annotations

import glob

from tests.conftest import PREFIX
from unixipc.bench import Options, run
from unixipc.bench.runner import Row, add_ratios


def _row(transport: str, family: str, workload: str, rtt: float) -> Row:
    return Row(
        transport, family, "", "latency", 64, "cross-core", workload=workload, rtt_median_us=rtt
    )


def test_rpc_rows_are_compared_with_rpc_peers_and_the_c_limit() -> None:
    rows = [
        _row("rpc-shm", "unixipc", "calls", 4.0),
        _row("rpc-slow-peer", "peer", "calls", 400.0),
        _row("rpc-fast-peer", "peer", "calls", 80.0),
        _row("message-peer", "peer", "messages", 2.0),
        _row("ring", "unixipc", "messages", 1.0),
        _row("c-spin", "C", "messages", 0.5),
    ]
    add_ratios(rows)
    rpc_row, ring = rows[0], rows[4]
    assert (rpc_row.best_peer, rpc_row.ratio_to_best_peer) == ("rpc-fast-peer", 20.0)
    assert (rpc_row.c_limit, rpc_row.ratio_to_c) == ("c-spin", 0.125)
    assert (ring.best_peer, ring.ratio_to_best_peer) == ("message-peer", 2.0)


PEERS = ("rpc-mp-manager", "rpc-xmlrpc", "rpc-pyro5", "rpc-rpyc", "rpc-grpc")


def test_rpc_rows_and_peers_run_and_leave_nothing_behind() -> None:
    prefix = f"{PREFIX}_rpcbench"
    report = run(
        Options(
            transports=["rpc-shm", "rpc-unix", "rpc-shm-4x16", *PEERS],
            sizes=[64],
            placements=["unpinned"],
            repeats=1,
            seconds=0.05,
            name_prefix=prefix,
        )
    )
    rows = {row.transport: row for row in report.rows}
    assert set(rows) == {"rpc-shm", "rpc-unix", "rpc-shm-4x16", *PEERS}
    for row in rows.values():
        assert row.workload == "calls"
        if row.transport not in ("rpc-mp-manager", "rpc-xmlrpc") and row.status == "skipped":
            assert "not importable" in (row.skipped_reason or "")  # no bench extra here
            continue
        assert row.status == "ok", (row.transport, row.error)
        assert row.cpu_us_per_message is not None
        assert row.cpu_us_per_message > 0
    for name in ("rpc-shm", "rpc-unix"):
        latency = rows[name]
        assert latency.test == "latency"
        assert latency.rtt_median_us is not None
        assert latency.rtt_p99_us is not None
        assert 0 < latency.rtt_median_us <= latency.rtt_p99_us
        assert latency.best_peer in PEERS
    throughput = rows["rpc-shm-4x16"]
    assert throughput.test == "throughput"
    assert throughput.messages_per_s is not None
    assert throughput.messages_per_s > 0
    assert glob.glob(f"/dev/shm/{prefix}*") == []
