"""The docs run as written: every Python block and shell line of README.md and docs/*.md.

The convention (also in docs/design.md, "Decisions: the command line"):

- Every fenced block marked ``python`` runs as one script (``python -c``); every
  block marked ``sh`` runs as one ``bash -e`` script, so each line must succeed,
  and a line ending in ``&`` runs in the background as in a shell (the block
  then waits for it). Other blocks (``text``, ``c``, unmarked) are not run.
- Each block runs in private IPC, mount and network namespaces with a fresh
  /dev/shm and /tmp (cwd /tmp, loopback up), so examples may use fixed names
  (``/jobs``, ``/tmp/app.sock``, ``0x1234abcd``, ``tcp://127.0.0.1:5000``) and
  never meet another program. Afterwards ``unixipc ls`` in those namespaces must
  show no object left: an example cleans up after itself.
- An HTML comment on the line just before a block's opening fence changes that:
  ``<!-- docs-test: skip REASON -->`` does not run it (the reason is required);
  ``<!-- docs-test: background until PATH -->`` starts it, waits until PATH
  exists (a socket file, say), then runs the next runnable block, after which
  the background one must end by itself with status 0. Keep such exceptions
  few: a second process can usually be a ``fork`` in the example itself.
- Each block (with its background partner) has 60 seconds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import fresh_tmp_commands

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK_TIMEOUT = 60

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(skip|background)\b\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    code: str
    marker: str | None  # "skip" or "background"
    argument: str  # the skip reason, or "until PATH"

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced python and sh blocks of a Markdown file, with their markers."""
    found = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        index += 1
        body = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        language = fence.group(1)
        if language not in ("python", "sh"):
            continue
        marker = _MARKER.match(lines[start - 1]) if start > 0 else None
        found.append(
            Block(
                path,
                start + 1,
                language,
                "\n".join(body) + "\n",
                marker.group(1) if marker else None,
                marker.group(2) if marker else "",
            )
        )
    return found


def cases() -> list[tuple[Block | None, Block]]:
    """(background block or None, block) pairs to run, in document order."""
    pairs: list[tuple[Block | None, Block]] = []
    waiting: Block | None = None
    for path in DOCUMENTS:
        for block in blocks(path):
            if block.marker == "skip":
                assert block.argument, f"{block.where}: docs-test: skip needs a reason"
                continue
            if block.marker == "background":
                assert block.argument.startswith("until "), f"{block.where}: background until PATH"
                waiting = block
                continue
            pairs.append((waiting, block))
            waiting = None
    return pairs


# Runs inside the namespaces: prepare them, run the block(s), then list what is left.
_DRIVER = r"""
import json, os, subprocess, sys, time
spec = json.loads(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/dev/shm"], check=True)
subprocess.run(["sh", "-c", spec["fresh_tmp"]], check=True)
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
os.chdir("/tmp")
env = dict(os.environ, PATH=os.path.dirname(sys.executable) + ":" + os.environ["PATH"])

def command(language, code):
    if language == "python":
        return [sys.executable, "-c", code]
    return ["bash", "-e", "-c", code + "\nwait\n"]

result = {"background": None}
background = None
if spec["background"]:
    language, code, until = spec["background"]
    background = subprocess.Popen(command(language, code), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + spec["timeout"]
    while not os.path.exists(until) and background.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
language, code = spec["block"]
try:
    done = subprocess.run(command(language, code), capture_output=True, text=True, env=env,
                          timeout=spec["timeout"])
    result["status"], result["output"] = done.returncode, done.stdout + done.stderr
except subprocess.TimeoutExpired as error:
    result["status"], result["output"] = "timeout", str(error)
if background is not None:
    try:
        output, _ = background.communicate(timeout=spec["timeout"])
        result["background"] = [background.returncode, output]
    except subprocess.TimeoutExpired:
        background.kill()
        result["background"] = ["timeout", background.communicate()[0]]
from unixipc import inspect
kinds = [kind for kind in inspect.KINDS if kind != "file-lock"]  # /proc/locks is global
result["left"] = [f"{item.kind} {item.name}" for item in inspect.find(kinds, directories=["/tmp"])
                  if item.kind not in ("unix-socket", "fifo") or item.name.startswith("/tmp/")]
print(json.dumps(result))
"""


def _id(case: tuple[Block | None, Block]) -> str:
    return case[1].where


@pytest.mark.parametrize("case", cases(), ids=_id)
def test_example_runs_as_written(case: tuple[Block | None, Block]) -> None:
    background, block = case
    spec = {
        "block": [block.language, block.code],
        "background": None
        if background is None
        else [background.language, background.code, background.argument.removeprefix("until ")],
        "timeout": BLOCK_TIMEOUT,
        "fresh_tmp": fresh_tmp_commands(),
    }
    isolate = ["unshare", "--ipc", "--mount", "--net", "--propagation", "private"]
    finished = subprocess.run(
        [*isolate, sys.executable, "-c", _DRIVER, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=3 * BLOCK_TIMEOUT + 60,
        cwd=ROOT,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    result = json.loads(finished.stdout.splitlines()[-1])
    assert result["status"] == 0, f"{block.where} failed:\n{block.code}\n{result['output']}"
    if background is not None:
        status, output = result["background"]
        assert status == 0, f"{background.where} (background) failed:\n{output}"
    assert result["left"] == [], f"{block.where} left objects behind: {result['left']}"


def test_the_convention_finds_blocks() -> None:
    """The parser sees the README's blocks, and every skip says why."""
    readme = blocks(ROOT / "README.md")
    assert {block.language for block in readme} == {"python", "sh"}
    assert len(readme) >= 10
    for block in readme:
        if block.marker == "skip":
            assert block.argument, block.where
    assert os.path.isfile(ROOT / "docs" / "design.md")
