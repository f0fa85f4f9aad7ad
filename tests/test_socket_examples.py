"""The three classic socket server designs run, answer every honest client, and survive bad ones."""

from __future__ import annotations

import re

import pytest

from tests.test_examples import run_example

CLIENTS, REQUESTS = 4, 20
EXPECTED = sum(n * n for n in range(CLIENTS * REQUESTS))


@pytest.mark.parametrize(
    ("example", "headline"),
    [
        ("socket_server_fork.py", r"fork server: 7 connections, each in its own process"),
        ("socket_server_polling.py", r"polling server: \d+ passes over the sockets"),
        ("socket_server_selectors.py", r"selectors server \(EpollSelector\): \d+ wake-ups"),
    ],
)
def test_a_server_design_serves_everyone_and_rejects_the_bad_clients(
    example: str, headline: str
) -> None:
    output = run_example(example, str(CLIENTS), str(REQUESTS))
    assert re.search(headline, output), output
    rejected = sorted(re.findall(r"rejected a client: (\w+)", output))
    # garbage, a frame cut short, a frame announcing 4 GB: each a clear error
    assert rejected == ["EndOfChannel", "FramingError", "MessageTooLarge"], output
    assert "3 bad clients rejected (hung up on, hung up on, hung up on)" in output
    assert f"sum of squares: clients {EXPECTED}, expected {EXPECTED}" in output
    if example != "socket_server_fork.py":
        assert f"{CLIENTS * REQUESTS} requests answered" in output
    else:
        assert f"{CLIENTS} clients served" in output
