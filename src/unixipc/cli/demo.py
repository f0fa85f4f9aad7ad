"""``unixipc demo``: the tour of every facility, one line each."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..demo import STEPS, step_runner
from ._common import emit


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo", help="exercise every facility between real processes, one line each"
    )
    parser.add_argument(
        "--only", metavar="FACILITY", action="append", help="run only these facilities"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    known = [facility for facility, _ in STEPS]
    unknown = [name for name in args.only or () if name not in known]
    if unknown:
        raise ValueError(
            f"unknown facility {', '.join(unknown)} for --only; choose from {', '.join(known)}"
        )
    failures = 0
    results = []
    for facility, module in STEPS:
        if args.only and facility not in args.only:
            continue
        try:
            line = step_runner(facility, module)()
        except Exception as error:  # report and go on: one broken facility must not hide the rest
            failures += 1
            results.append({"facility": facility, "error": str(error)})
            if not args.json:
                print(f"{facility:<10} FAILED: {error}")
            continue
        results.append(dataclasses.asdict(line))
        if not args.json:
            print(line, flush=True)
    if args.json:
        emit(args, results)
    return 1 if failures else 0
