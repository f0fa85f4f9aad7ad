"""Presenting a report: the terminal table, the JSON document, the progress bar."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from .runner import Report, Row
from .transport import PLACEMENTS, TESTS

JSON_FORMAT = "unixipc-bench/1"

RATIO_NOTE = (
    "x peer, x C: speed relative to the best peer and to the C limit measured in this run "
    "(higher is better; 0.5 = half as fast)"
)


def size_label(size: int) -> str:
    """64 -> '64 B', 4096 -> '4 KiB', 1048576 -> '1 MiB'."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    for suffix, factor in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10:
        return f"{value:.0f}"
    if value >= 0.995:
        return f"{value:.1f}"
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def header_lines(report: Report) -> list[str]:
    env, options = report.environment, report.options
    packages = ", ".join(
        f"{name} {version}" for name, version in env["packages"].items() if name != "unixipc"
    )
    affinity = env["affinity"]
    cpus = (
        f"{affinity[0]}-{affinity[-1]}"
        if affinity == list(range(affinity[0], affinity[-1] + 1))
        else affinity
    )
    kind = "quick" if options["quick"] else "full"
    repeats = options["repeats"]
    return [
        f"unixipc bench: unixipc {env['packages']['unixipc']}, {env['date']}",
        f"machine   {env['machine']}, {env['cpu_model']}, {env['cpus']} CPUs (using {cpus}), "
        f"load {' '.join(str(value) for value in env['load_average'])}",
        f"kernel    {env['kernel']}",
        f"python    {env['python']}; C compiler: {env['compiler']}",
        f"packages  {packages}",
        f"run       {kind}: {repeats} run{'s' if repeats != 1 else ''} of {options['seconds']:g} s "
        f"per configuration (interleaved, fresh processes), time limit {options['time_limit']:g} s"
        + (f"; took {report.elapsed_s:.0f} s" if report.elapsed_s else ""),
    ]


_PLACEMENT_TEXT = {
    "cross-core": "processes pinned to two different CPUs",
    "same-core": "both processes pinned to one CPU",
    "unpinned": "the scheduler places the processes",
}


def _sections(rows: Iterable[Row]) -> dict[tuple[str, int, str], list[Row]]:
    sections: dict[tuple[str, int, str], list[Row]] = {}
    for row in rows:
        sections.setdefault(row.key, []).append(row)

    def order(key: tuple[str, int, str]) -> tuple[int, int, int]:
        test, size, placement = key
        return (TESTS.index(test), PLACEMENTS.index(placement), size)

    return {key: sections[key] for key in sorted(sections, key=order)}


def _table(lines: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    out = []
    for line in lines:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def section_lines(key: tuple[str, int, str], rows: list[Row]) -> list[str]:
    test, size, placement = key
    measured = sorted(
        (row for row in rows if row.status == "ok"), key=lambda row: -(row.score() or 0.0)
    )
    failed = [row for row in rows if row.status == "failed"]
    title = "Round-trip latency" if test == "latency" else "One-way throughput"
    lines = [f"{title}, {size_label(size)} messages, {placement} ({_PLACEMENT_TEXT[placement]})"]
    if test == "latency":
        table = [["transport", "family", "median us", "p99 us", "p99.9 us", "CPU us/msg", "spread"]]
        for row in measured:
            table.append(
                [
                    row.transport,
                    row.family,
                    _number(row.rtt_median_us),
                    _number(row.rtt_p99_us),
                    _number(row.rtt_p999_us),
                    _number(row.cpu_us_per_message),
                    _percent(row.spread_pct),
                ]
            )
    else:
        table = [["transport", "family", "msg/s", "MB/s", "CPU us/msg", "spread"]]
        for row in measured:
            table.append(
                [
                    row.transport,
                    row.family,
                    _rate(row.messages_per_s),
                    _number(row.mb_per_s),
                    _number(row.cpu_us_per_message),
                    _percent(row.spread_pct),
                ]
            )
    table[0] += ["x peer", "x C"]
    for line, row in zip(table[1:], measured, strict=False):
        line += [_ratio(row.ratio_to_best_peer), _ratio(row.ratio_to_c)]
    columns = len(table[0])
    for row in failed:
        table.append([row.transport, row.family, "FAILED", *[""] * (columns - 3)])
    lines += _table(table, right=set(range(2, columns)))
    for row in failed:
        lines.append(f"    {row.transport}: {row.error}")
    for row in measured:
        if row.error:
            lines.append(f"    {row.transport}: {row.error}")
    return lines


def skipped_lines(rows: Iterable[Row]) -> list[str]:
    """One line per transport and reason: which configurations were not measured, and why."""
    grouped: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if row.status == "skipped":
            grouped.setdefault((row.transport, row.skipped_reason or ""), []).append(row)
    if not grouped:
        return []
    every: dict[str, int] = {}
    for row in rows:
        every[row.transport] = every.get(row.transport, 0) + 1
    lines = ["Not measured"]
    for (transport, reason), group in grouped.items():
        if len(group) == every[transport]:
            what = "all"
        else:
            parts = []
            for test in ("latency", "throughput"):
                chosen = [row for row in group if row.test == test]
                if test == "latency" and chosen:
                    parts.append("latency " + ", ".join(sorted({row.placement for row in chosen})))
                elif chosen:
                    sizes = sorted({row.size for row in chosen})
                    parts.append("throughput " + ", ".join(size_label(size) for size in sizes))
            what = "; ".join(parts)
        lines.append(f"  {transport} ({what}): {reason}")
    return lines


def format_report(report: Report) -> str:
    """The whole report as text: header, one table per configuration, what was skipped."""
    lines = header_lines(report)
    lines.append(RATIO_NOTE)
    for key, rows in _sections(report.rows).items():
        if any(row.status != "skipped" for row in rows):
            lines.append("")
            lines += section_lines(key, rows)
    skipped = skipped_lines(report.rows)
    if skipped:
        lines.append("")
        lines += skipped
    return "\n".join(lines)


def report_to_json(report: Report) -> dict[str, Any]:
    """The JSON document: format, environment, options and one record per row."""
    return {
        "format": JSON_FORMAT,
        "environment": report.environment,
        "options": report.options,
        "elapsed_s": round(report.elapsed_s, 3),
        "results": [dataclasses.asdict(row) for row in report.rows],
    }


def write_json(report: Report, path: str | os.PathLike[str]) -> None:
    with open(path, "w") as file:
        json.dump(report_to_json(report), file, indent=1)
        file.write("\n")


class ProgressBar:
    """A progress bar on a terminal; a line every tenth of the way otherwise."""

    WIDTH = 28

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last_tenth = -1

    def __call__(self, done: int, total: int, label: str) -> None:
        elapsed = time.monotonic() - self.started
        clock = f"{int(elapsed // 60)}:{int(elapsed % 60):02d}"
        fraction = done / total if total else 1.0
        if self.tty:
            filled = int(self.WIDTH * fraction)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            text = f"[{bar}] {done}/{total} {clock} {label}"
            columns = _terminal_columns(self.stream)
            self.stream.write("\r" + text[: columns - 1].ljust(columns - 1))
            if done == total and label == "done":
                self.stream.write("\r" + " " * (columns - 1) + "\r")
        else:
            tenth = int(fraction * 10)
            if tenth > self._last_tenth:
                self._last_tenth = tenth
                self.stream.write(f"unixipc bench: {done}/{total} runs, {clock}\n")
        self.stream.flush()


def _terminal_columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError):
        return 80
