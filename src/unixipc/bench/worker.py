"""One run in a fresh process: ``python -m unixipc.bench.worker PLAN_JSON``.

This process is the *driver*: it sets the transport up, forks the *peer*, pins
both to their CPUs, runs the measurement loop and prints one JSON object on its
last line of output: the figures, ``{"skipped": reason}`` or ``{"error": text}``.
A monitor thread watches the peer over a control pipe, so a peer that fails or
dies ends the run at once instead of leaving the driver waiting for the time
limit. Whatever happens, the harness kills this process group afterwards and
calls the transport's ``cleanup`` again.
"""

from __future__ import annotations

import json
import mmap
import multiprocessing
import os
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ..errors import UnsupportedFeature
from .measure import Measured, consume, echo, ping, produce
from .transport import Plan, Transport, Unsupported, load_transport

#: How long the driver waits for the peer's final report after its own loop ended.
PEER_REPORT_TIMEOUT = 30.0


def emit(result: dict[str, Any]) -> None:
    """Print the run's result as the last line of standard output."""
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


def describe(error: BaseException) -> str:
    """One line naming the exception and where it was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _peer_main(transport: Transport, plan: Plan, control: Connection, stop: mmap.mmap) -> None:
    try:
        pin(plan.peer_cpu)
        link = transport.serve(plan, lambda address: control.send(("address", address)))
        cpu_start = time.process_time()
        if plan.test == "latency":
            measured = echo(link)
        else:
            measured = produce(link, plan.size, stop, transport.batch)
        # Wait until the driver has everything, then count the CPU time spent until
        # now (threads that were still flushing included) and close.
        control.recv()
        cpu_seconds = time.process_time() - cpu_start
        link.close()
        control.send(("done", measured.messages, cpu_seconds))
    except (Unsupported, UnsupportedFeature) as reason:
        control.send(("skipped", str(reason)))
    except BaseException as error:
        control.send(("error", describe(error)))
    finally:
        control.close()


class PeerMonitor(threading.Thread):
    """Reads the peer's reports; ends this process if the peer fails or dies."""

    def __init__(self, control: Connection, peer: BaseProcess) -> None:
        super().__init__(name="peer-monitor", daemon=True)
        self.control = control
        self.peer = peer
        self.address_ready = threading.Event()
        self.report_ready = threading.Event()
        self.address = ""
        self.peer_messages = 0
        self.peer_cpu_seconds = 0.0

    def run(self) -> None:
        while True:
            try:
                kind, *values = self.control.recv()
            except (EOFError, OSError):
                self.peer.join(5)
                self._end({"error": f"the peer process died (exit code {self.peer.exitcode})"})
                return
            if kind == "address":
                self.address = values[0]
                self.address_ready.set()
            elif kind == "done":
                self.peer_messages, self.peer_cpu_seconds = values
                self.report_ready.set()
                return
            elif kind == "skipped":
                self._end({"skipped": values[0]})
            else:
                self._end({"error": f"peer: {values[0]}"})

    def _end(self, result: dict[str, Any]) -> None:
        # The driver may be blocked inside the transport: leave now; the harness
        # kills what is left of the process group and cleans up.
        emit(result)
        os._exit(0 if "skipped" in result else 1)


def run(plan: Plan) -> dict[str, Any]:
    """Measure one configuration between this process and a forked peer."""
    transport = load_transport(plan.adapter)
    context = multiprocessing.get_context("fork")
    stop = mmap.mmap(-1, mmap.PAGESIZE)  # shared with the forked peer
    ours, theirs = context.Pipe()
    transport.setup(plan)
    try:
        peer = context.Process(
            target=_peer_main, args=(transport, plan, theirs, stop), name="peer", daemon=True
        )
        peer.start()
        theirs.close()
        monitor = PeerMonitor(ours, peer)
        monitor.start()
        pin(plan.driver_cpu)
        monitor.address_ready.wait()
        link = transport.connect(plan, monitor.address)
        measured: Measured
        if plan.test == "latency":
            measured = ping(link, plan.size, plan.seconds)
        else:
            measured = consume(link, plan.size, plan.seconds, stop, transport.batch)
        ours.send(("finished",))
        if not monitor.report_ready.wait(PEER_REPORT_TIMEOUT):
            raise RuntimeError("the peer did not report after the run ended")
        link.close()
        peer.join(PEER_REPORT_TIMEOUT)
    finally:
        transport.cleanup(plan)
    messages = measured.messages if plan.test == "latency" else monitor.peer_messages
    cpu = measured.cpu_seconds + monitor.peer_cpu_seconds
    return {**measured.figures, "messages": messages, "cpu_us_per_message": cpu / messages * 1e6}


def main(argv: list[str] | None = None) -> int:
    """Run the plan given as JSON in ``argv[1]``; print the result; 0 unless it failed."""
    argv = sys.argv if argv is None else argv
    plan = Plan.from_json(json.loads(argv[1]))
    for entry in reversed(plan.python_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    try:
        result = run(plan)
    except (Unsupported, UnsupportedFeature) as reason:
        emit({"skipped": str(reason)})
        return 0
    except BaseException as error:
        emit({"error": describe(error)})
        return 1
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
