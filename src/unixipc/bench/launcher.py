"""A fork server for the benchmark's runs: fresh processes without the import cost.

Importing unixipc takes a few hundred milliseconds, more than a quick run
measures. The harness therefore starts this process once; it imports the
worker, then forks one fresh process per run on request, much as
multiprocessing's forkserver does. Each run still gets new processes of its own
(the forked worker and the peer it forks), in a new session and process group,
with its output in files the harness chose.

Protocol, one JSON object per line on standard input and output:

- ``{"op": "run", "plan": {...}, "stdout": PATH, "stderr": PATH}`` ->
  ``{"pid": N}``: the run has started.
- ``{"op": "reap", "pid": N}`` -> ``{"status": S}``: after the run ended (and
  its process group was killed), collect its exit status. Until then the run's
  leader stays a zombie, so its pid and process group id cannot be reused.

Peer libraries (zmq, iceoryx2, ...) are imported only inside the forked runs:
some start threads when imported, which a fork must not copy.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from . import worker


def _start(request: dict[str, Any]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for source, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(source, target)
            os.close(source)
        status = worker.main(["worker", json.dumps(request["plan"])])
    except BaseException as error:  # report, never return into the server loop
        worker.emit({"error": worker.describe(error)})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def serve() -> None:
    """Answer requests until standard input ends."""
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "run":
            reply: dict[str, Any] = {"pid": _start(request)}
        else:
            _, status = os.waitpid(request["pid"], 0)
            reply = {"status": os.waitstatus_to_exitcode(status)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
