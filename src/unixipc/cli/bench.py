"""``unixipc bench``: which IPC should I use here, and how fast is it on this machine?"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

from ..bench import Options, run
from ..bench.registry import TRANSPORTS
from ..bench.report import ProgressBar, format_report, report_to_json, size_label, write_json
from ..bench.transport import PLACEMENTS, TESTS
from ..errors import UnsupportedFeature
from ._common import emit, parse_size

_T = TypeVar("_T", bound=str)


def message_size(text: str) -> int:
    """Parse 64, 4K, 4KiB, 1M or 1MiB (binary units)."""
    try:
        size = parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a message size: {text!r} (e.g. 64, 4K, 1MiB)"
        ) from None
    if not 1 <= size <= 64 << 20:
        raise argparse.ArgumentTypeError(f"message size must be 1 B to 64 MiB: {text!r}")
    return size


def sizes(text: str) -> list[int]:
    return [message_size(part) for part in text.split(",") if part.strip()]


def _choices(allowed: Sequence[_T], what: str) -> Any:
    def parse(text: str) -> list[_T]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        wrong = [part for part in chosen if part not in allowed]
        if wrong or not chosen:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(wrong) or repr(text)}; choose from {', '.join(allowed)}"
            )
        return [part for part in allowed if part in chosen]

    return parse


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"seconds must be > 0: {text!r}")
    return value


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "bench",
        help="compare every IPC facility and its alternatives, with a C baseline",
        description="Measure round-trip latency and one-way throughput of every unixipc "
        "facility, the libraries users pick instead, and a C program as the physical limit.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one short run per configuration (about a minute)"
    )
    parser.add_argument(
        "--transports", type=names, metavar="A,B", help="only these transports (see --list)"
    )
    parser.add_argument(
        "--sizes", type=sizes, metavar="N,N", help="throughput message sizes (default 64,4K,64K,1M)"
    )
    parser.add_argument(
        "--tests", type=_choices(TESTS, "test"), metavar="T,T", help="latency, throughput"
    )
    parser.add_argument(
        "--placements",
        type=_choices(PLACEMENTS, "placement"),
        metavar="P,P",
        help="cross-core, same-core, unpinned (default: all three for latency, "
        "cross-core for throughput; --quick: cross-core)",
    )
    parser.add_argument(
        "--repeats", type=positive_int, metavar="N", help="runs per configuration (default 3)"
    )
    parser.add_argument(
        "--seconds",
        type=positive_seconds,
        metavar="S",
        help="measured time per run (default 0.5, --quick 0.1)",
    )
    parser.add_argument(
        "--time-limit",
        type=positive_seconds,
        metavar="S",
        help="kill a run after this long and report it failed (default 15 + 3 x seconds)",
    )
    parser.add_argument("--no-peers", action="store_true", help="leave out the other libraries")
    parser.add_argument("--no-c", action="store_true", help="leave out the C baseline")
    parser.add_argument(
        "--json-file", dest="json_path", metavar="PATH", help="write every run as JSON to PATH"
    )
    parser.add_argument("--plot", metavar="PATH.png", help="draw latency and throughput (PNG)")
    parser.add_argument(
        "--doc",
        metavar="PATH.md",
        help=f"put the report between the {DOC_BEGIN} and {DOC_END} lines of a Markdown file",
    )
    parser.add_argument("--list", action="store_true", help="list the transports and exit")
    parser.add_argument(
        "--fanout",
        action="store_true",
        help="only the topic fan-out section: 1 publisher -> 4 subscriber processes, "
        "1 MiB loans, peers, idle CPU (see unixipc.bench.fanout)",
    )
    parser.set_defaults(func=run_command)


DOC_BEGIN = "<!-- unixipc bench: begin -->"
DOC_END = "<!-- unixipc bench: end -->"


def update_doc(path: str, report_text: str) -> None:
    """Replace what lies between the DOC_BEGIN and DOC_END lines of ``path``.

    Raises:
        ValueError: the file lacks the two marker lines.
    """
    with open(path) as file:
        text = file.read()
    begin, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if begin < 0 or end < begin:
        raise ValueError(f"{path} has no {DOC_BEGIN} ... {DOC_END} lines to fill")
    block = f"{DOC_BEGIN}\n```text\n{report_text}\n```\n"
    with open(path, "w") as file:
        file.write(text[:begin] + block + text[end:])


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        transports=args.transports,
        tests=args.tests or TESTS,
        sizes=args.sizes,
        placements=args.placements,
        repeats=args.repeats,
        seconds=args.seconds,
        time_limit=args.time_limit,
        peers=not args.no_peers,
        c_baseline=not args.no_c,
        quick=args.quick,
    )


def _list(args: argparse.Namespace) -> int:
    listing: list[dict[str, Any]] = []
    for transport in TRANSPORTS:
        missing = transport.unavailable()
        listing.append(
            {
                "transport": transport.name,
                "family": transport.family,
                "tests": list(transport.tests),
                "summary": transport.summary,
                "skipped_reason": missing,
            }
        )
    if args.json:
        emit(args, listing)
        return 0
    width = max(len(item["transport"]) for item in listing)
    for item in listing:
        note = f"  [skipped: {item['skipped_reason']}]" if item["skipped_reason"] else ""
        print(f"{item['transport']:<{width}}  {item['family']:<7}  {item['summary']}{note}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args)
    if args.fanout:
        from ..bench.fanout import format_fanout, run_fanout

        seconds = args.seconds or (0.3 if args.quick else 1.0)
        print(format_fanout(*run_fanout(seconds=seconds, peers=not args.no_peers)))
        return 0
    options = options_from(args)
    if args.plot:
        try:  # fail before measuring, not after
            import matplotlib  # noqa: F401
        except ImportError:
            raise UnsupportedFeature(
                "--plot needs matplotlib: pip install 'unixipc[bench]' (or pip install matplotlib)"
            ) from None
    if args.doc:
        update_doc(args.doc, "(checking the markers before measuring)")

    report = run(options, progress=ProgressBar(sys.stderr))
    if args.json_path:
        write_json(report, args.json_path)
    if args.doc:
        update_doc(args.doc, format_report(report))
    if args.plot:
        from ..bench.plot import write_plot

        write_plot(report, args.plot)
    if args.json:
        emit(args, report_to_json(report))
    else:
        print(format_report(report))
        saved = [path for path in (args.json_path, args.plot, args.doc) if path]
        if saved:
            print(f"\nwrote {', '.join(saved)}")
    failed = [row for row in report.rows if row.status == "failed"]
    return 1 if failed and not any(row.status == "ok" for row in report.rows) else 0


__all__ = ("message_size", "register", "size_label")
