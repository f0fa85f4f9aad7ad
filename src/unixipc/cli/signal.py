"""``unixipc signal send|wait``: signals and real-time signals with values from the shell."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

from .. import signals
from .._deadline import Deadline
from ..errors import ResourceNotFoundError, TimeoutExpired, WouldBlock
from ._common import emit, integer, seconds

_CODES = {0: "SI_USER", -1: "SI_QUEUE", -6: "SI_TKILL", 128: "SI_KERNEL"}


def signal_spec(value: str) -> int:
    """Parse USR1, SIGUSR1, RTMIN+2, SIGRTMAX-1 or a number."""
    try:
        return signals.number(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(commands: Any) -> None:
    parser = commands.add_parser("signal", help="send and wait for signals (with values)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    send = verbs.add_parser("send", help="send SIGNAL to PID: kill(2), or sigqueue(3) with --value")
    send.add_argument("pid", type=integer)
    send.add_argument("signal", type=signal_spec, metavar="SIGNAL")
    send.add_argument("--value", type=integer, default=None, metavar="N", help="a C int")
    send.add_argument(
        "--wait-blocked",
        type=seconds,
        default=None,
        metavar="S",
        help="first wait up to S seconds until PID blocks SIGNAL (as `unixipc signal wait` "
        "does), so that the signal queues instead of killing it",
    )
    send.set_defaults(func=_send)

    wait = verbs.add_parser(
        "wait",
        help="block SIGNALs, wait for one and print its siginfo (sender, value); "
        "stderr first says 'pid N waiting for ...'",
    )
    wait.add_argument("signals", type=signal_spec, nargs="+", metavar="SIGNAL")
    wait.add_argument("--timeout", type=seconds, default=None, metavar="S")
    wait.add_argument(
        "--count", type=integer, default=1, metavar="N", help="wait for N signals (default 1)"
    )
    wait.set_defaults(func=_wait)


def _blocks(pid: int, signo: int) -> bool:
    """Whether some thread of ``pid`` blocks ``signo`` (SigBlk in /proc/PID/task/*/status)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        raise ResourceNotFoundError(3, f"no process {pid}", str(pid)) from None
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/status") as status:
                for line in status:
                    if line.startswith("SigBlk:") and int(line.split()[1], 16) >> (signo - 1) & 1:
                        return True
        except OSError:
            continue
    return False


def _send(args: argparse.Namespace) -> int:
    if args.wait_blocked is not None:
        deadline = Deadline(args.wait_blocked)
        while not _blocks(args.pid, args.signal):
            if deadline.expired():
                raise deadline.error(
                    f"waiting for pid {args.pid} to block {signals.name(args.signal)}"
                )
            time.sleep(0.01)
    signals.send(args.pid, args.signal, value=args.value)
    emit(
        args,
        {
            "pid": args.pid,
            "signal": args.signal,
            "name": signals.name(args.signal),
            "value": args.value,
        },
    )
    return 0


def _wait(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ValueError(f"--count must be at least 1, got {args.count}")
    deadline = Deadline(args.timeout)
    # Block for the whole command, so that signals arriving between two waits queue;
    # a signalfd keeps them blocked while it waits (sigtimedwait would unblock them
    # for the wait), so `signal send --wait-blocked` sees them blocked throughout.
    names = ", ".join(signals.name(signo) for signo in args.signals)
    with signals.SignalReceiver(args.signals) as receiver:
        # Tell whoever will send (a person, or a script reading stderr) our pid
        # and that from now on the signals queue instead of killing us.
        print(f"unixipc signal: pid {os.getpid()} waiting for {names}", file=sys.stderr)
        sys.stderr.flush()
        for _ in range(args.count):
            try:
                info = receiver.receive(timeout=deadline.remaining())
            except (TimeoutExpired, WouldBlock):
                raise deadline.error(f"waiting for {names}") from None
            data = dataclasses.asdict(info) | {"name": info.name}
            code = _CODES.get(info.code, str(info.code))
            value = "" if info.value is None else f" value={info.value}"
            emit(args, data, f"{info.name} code={code} pid={info.pid} uid={info.uid}{value}")
    return 0
