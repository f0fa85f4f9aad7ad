"""`unixipc channel listen|send`, run as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.channel_support import url_for
from tests.conftest import Names

COMMAND = [sys.executable, "-m", "unixipc.cli.main"]


@pytest.mark.parametrize(
    ("scheme", "options"),
    [("unix", []), ("tcp", []), ("mq", ["-o", "queue_length=4", "-o", "queue_message_size=128"])],
)
def test_listen_prints_what_send_sends(scheme: str, options: list[str], names: Names) -> None:
    url = url_for(scheme, names)
    listener = subprocess.Popen(
        [*COMMAND, "--json", "channel", "listen", url, "--clients", "2", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout is not None
        announced = json.loads(listener.stdout.readline())
        assert announced["listening"] is True
        for texts in (["hello", "world"], ["again"]):
            sent = subprocess.run(
                [
                    *COMMAND,
                    "channel",
                    "send",
                    announced["url"],
                    *texts,
                    "--timeout",
                    "30",
                    *options,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert sent.returncode == 0, sent.stderr
        output, errors = listener.communicate(timeout=60)
    finally:
        listener.kill()
        listener.wait()
    assert listener.returncode == 0, errors
    received = [json.loads(line) for line in output.splitlines()]
    assert [(line["client"], line["data"]) for line in received] == [
        (0, "hello"),
        (0, "world"),
        (1, "again"),
    ]


def test_errors_are_one_line_and_status_1(names: Names) -> None:
    result = subprocess.run(
        [*COMMAND, "channel", "send", url_for("unix", names), "x", "--timeout", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("unixipc channel: error:")
    assert "does not exist" in result.stderr
    bad = subprocess.run(
        [*COMMAND, "channel", "send", "carrier-pigeon://x", "y"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert "scheme" in bad.stderr
