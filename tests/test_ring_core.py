"""The ring's plain C core, driven by a C harness without Python (tests/ring_core_harness.c).

The harness is compiled with AddressSanitizer and UndefinedBehaviorSanitizer
(any report aborts it), so these tests also prove the core free of memory
errors on the paths they take, damaged rings included.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc is not None, "the C harness needs gcc (or cc) on PATH"
    binary = tmp_path_factory.mktemp("harness") / "ring_core_harness"
    command = [
        gcc,
        "-std=gnu11",
        "-O1",
        "-g",
        "-Wall",
        "-Wextra",
        "-Werror",
        f"-I{ROOT / 'src' / 'native'}",
        "-o",
        str(binary),
        str(ROOT / "tests" / "ring_core_harness.c"),
        str(ROOT / "src" / "native" / "ring_core.c"),
    ]
    built = subprocess.run(command[:1] + SANITIZE + command[1:], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return binary


def _run(harness: Path, *args: str) -> str:
    done = subprocess.run([str(harness), *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"status {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_messages_of_every_size_cross_processes_once_in_order(harness: Path) -> None:
    # send, send_many, receive, receive_many and views, wrapping the 4 KiB ring
    # thousands of times with padding at the end of laps.
    out = _run(harness, "traffic", "20000")
    assert out == "traffic: 20000 of 20000 messages, producer status 0, 0 bytes left\n"


def test_each_damage_is_reported_as_corruption(harness: Path) -> None:
    lines = _run(harness, "damage").splitlines()
    assert len(lines) == 8 * 6
    receiving = [line for line in lines if " receive" in line or " view " in line]
    assert len(receiving) == 8 * 3
    assert all("CORRUPT: " in line for line in receiving), receiving


@pytest.mark.parametrize("seed", [1, 2])
def test_random_damage_between_calls_never_crashes_or_hangs(harness: Path, seed: int) -> None:
    out = _run(harness, "fuzz", "1500", str(seed))
    assert out.startswith("fuzz: OK=")
    assert out.endswith("; afterwards OK OK 5\n")
