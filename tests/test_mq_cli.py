"""``unixipc mq`` and ``unixipc sysv-mq``, run as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Names
from unixipc import PosixMessageQueue, SysVMessageQueue, ftok, posix_mq, sysv_mq

COMMAND = [sys.executable, "-m", "unixipc.cli.main"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def ok(*args: str) -> str:
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_mq_create_send_receive_info_unlink(names: Names, cleanup: Callable[..., None]) -> None:
    name = names.posix("cli")
    cleanup(posix_mq.unlink, name)
    created = json.loads(
        ok(
            "--json",
            "mq",
            "create",
            name,
            "--max-messages",
            "4",
            "--max-message-size",
            "64",
            "--permissions",
            "0640",
        )
    )
    assert created == {
        "kind": "posix-mq",
        "name": name,
        "max_messages": 4,
        "max_message_size": 64,
        "permissions": "0640",
    }
    ok("mq", "send", name, "low")
    assert json.loads(ok("--json", "mq", "send", name, "high", "--priority", "5")) == {
        "name": name,
        "bytes": 4,
        "priority": 5,
    }
    info = json.loads(ok("--json", "mq", "info", name))
    assert (info["current_messages"], info["max_messages"], info["permissions"]) == (2, 4, "0640")
    assert "current_messages: 2" in ok("mq", "info", name)
    assert json.loads(ok("--json", "mq", "receive", name)) == {
        "name": name,
        "bytes": 4,
        "data": "high",
        "encoding": "utf-8",
        "priority": 5,
    }
    assert ok("mq", "receive", name, "--timeout", "5") == "low\n"
    ok("mq", "unlink", name)
    assert not posix_mq.exists(name)


def test_mq_errors_are_one_line_with_status_1(names: Names, cleanup: Callable[..., None]) -> None:
    name = names.posix("cli")
    with PosixMessageQueue.create(name, max_messages=1, max_message_size=8) as queue:
        cleanup(posix_mq.unlink, name)
        for args, message in [
            (("mq", "receive", name, "--timeout", "0.2"), "timed out after 0.2 s"),
            (("mq", "send", name, "x" * 9), "exceeds its max_message_size of 8"),
            (("mq", "send", name, "x", "--priority", "-1"), "priority must be >= 0"),
            (("mq", "info", "no-slash"), "must start with '/'"),
            (("mq", "unlink", name + "_missing"), "does not exist"),
        ]:
            result = cli(*args)
            assert result.returncode == 1, args
            assert result.stderr.startswith("unixipc mq: error:")
            assert result.stderr.count("\n") == 1
            assert message in result.stderr
        queue.send(b"full")
        result = cli("mq", "send", name, "more", "--timeout", "0")
        assert (result.returncode, "would block" in result.stderr) == (1, True)
        posix_mq.unlink(name)


def test_sysv_mq_by_key_in_decimal_and_hex(names: Names, cleanup: Callable[..., None]) -> None:
    key = names.key()
    cleanup(sysv_mq.unlink, key)
    created = json.loads(ok("--json", "sysv-mq", "create", "--key", hex(key)))
    assert created["key"] == f"0x{key:08x}"
    with SysVMessageQueue.open(key) as queue:
        assert queue.id == created["id"]
    ok("sysv-mq", "send", str(key), "three", "--type", "3")
    ok("sysv-mq", "send", hex(key), "one")
    assert json.loads(ok("--json", "sysv-mq", "receive", hex(key), "--type", "1", "--except")) == {
        "key": f"0x{key:08x}",
        "id": created["id"],
        "bytes": 5,
        "data": "three",
        "encoding": "utf-8",
        "type": 3,
    }
    ok("sysv-mq", "send", hex(key), "a longer message", "--type", "2")
    info = json.loads(ok("--json", "sysv-mq", "info", hex(key)))
    assert (info["current_messages"], info["permissions"], info["key"]) == (
        2,
        "0600",
        f"0x{key:08x}",
    )
    assert ok("sysv-mq", "receive", hex(key), "--type", "-1") == "one\n"
    with SysVMessageQueue.open(key) as queue:
        queue.set_max_bytes(16)  # the CLI receives with msgmax room: truncation shows via Python
    assert ok("sysv-mq", "receive", hex(key), "--truncate") == "a longer message\n"
    result = cli("sysv-mq", "receive", hex(key), "--timeout", "0")
    assert result.returncode == 1
    assert result.stderr.startswith("unixipc sysv-mq: error:")
    assert "would block" in result.stderr
    ok("sysv-mq", "unlink", hex(key))
    assert not sysv_mq.exists(key)
    result = cli("sysv-mq", "info", hex(key))
    assert result.returncode == 1
    assert f"'0x{key:08x}' does not exist" in result.stderr


def test_sysv_mq_private_and_ftok(tmp_path: Path, cleanup: Callable[..., None]) -> None:
    created = json.loads(ok("--json", "sysv-mq", "create", "--private"))

    def remove_private() -> None:
        with SysVMessageQueue.open_id(created["id"]) as queue:
            queue.unlink()

    cleanup(remove_private)
    assert created["key"] == "0x00000000"
    ok("sysv-mq", "send", str(created["id"]), "private", "--id")
    assert ok("sysv-mq", "receive", str(created["id"]), "--id") == "private\n"
    ok("sysv-mq", "unlink", str(created["id"]), "--id")
    path = tmp_path / "key-file"
    path.write_text("")
    key = ftok(path, ord("Q"))
    cleanup(sysv_mq.unlink, key)
    output = ok("sysv-mq", "create", "--ftok", f"{path}:Q")
    with SysVMessageQueue.open(key) as queue:
        expected = f"created sysv-mq 0x{key & 0xFFFFFFFF:08x}: id {queue.id}, permissions 0600\n"
        assert output == expected
    ok("sysv-mq", "unlink", str(key))
    for bad in (["--ftok", "no-colon"], ["--key", "zz"], []):
        assert cli("sysv-mq", "create", *bad).returncode == 2
