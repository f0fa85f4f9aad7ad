"""The picture of a report: latency per transport, throughput against message size.

Needs matplotlib (in the ``bench`` extra); it draws with the Agg backend, so no
display is needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from .report import size_label
from .runner import Report, Row

_FAMILY_COLORS = {"unixipc": "#1f6fb4", "peer": "#e07b24", "C": "#3a3a3a"}
_PLACEMENT_MARKERS = {"cross-core": "o", "same-core": "s", "unpinned": "^"}


def _latency_panel(axes: Any, rows: Sequence[Row]) -> None:
    latency = [row for row in rows if row.test == "latency" and row.status == "ok"]
    placements = [p for p in _PLACEMENT_MARKERS if any(row.placement == p for row in latency)]
    if not latency:
        axes.text(0.5, 0.5, "no latency measured", ha="center", va="center")
        axes.set_axis_off()
        return
    main = placements[0]

    def best(transport: str) -> float:
        values = [row.rtt_median_us or 0.0 for row in latency if row.transport == transport]
        return min(values) if values else float("inf")

    transports = sorted({row.transport for row in latency}, key=best, reverse=True)
    position = {name: index for index, name in enumerate(transports)}
    for row in latency:
        if row.placement != main:
            continue
        y = position[row.transport]
        color = _FAMILY_COLORS.get(row.family, "grey")
        axes.barh(y, row.rtt_median_us, color=color, alpha=0.35, height=0.7)
        if row.rtt_p99_us:
            axes.plot([row.rtt_median_us, row.rtt_p99_us], [y, y], color=color, linewidth=1)
            axes.plot(row.rtt_p99_us, y, marker="|", color=color, markersize=9)
    for placement in placements:
        for row in latency:
            if row.placement == placement:
                axes.plot(
                    row.rtt_median_us,
                    position[row.transport],
                    marker=_PLACEMENT_MARKERS[placement],
                    color=_FAMILY_COLORS.get(row.family, "grey"),
                    linestyle="none",
                    markersize=5,
                    label=placement,
                )
    axes.set_xscale("log")
    axes.set_yticks(range(len(transports)), transports, fontsize=8)
    axes.set_xlabel("round trip, microseconds (log scale)")
    others = ", ".join(p for p in placements if p != main)
    axes.set_title(
        f"64 B round trip: bar = median ({main}), whisker = p99"
        + (f"; markers: {others}" if others else ""),
        fontsize=10,
    )
    axes.grid(axis="x", which="both", alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=False))
    from matplotlib.patches import Patch

    families = [
        Patch(color=color, alpha=0.5, label=family) for family, color in _FAMILY_COLORS.items()
    ]
    axes.legend(
        [*unique.values(), *families],
        [*unique.keys(), *_FAMILY_COLORS],
        fontsize=8,
        loc="lower right",
    )


# Throughput: one panel per group, so that no panel has more lines than styles;
# the C limit (black) and, beside unixipc's groups, the best peer (grey) on every panel.
_GROUPS: tuple[tuple[str, Callable[[Row], bool]], ...] = (
    (
        "unixipc facilities",
        lambda row: row.family == "unixipc" and not row.transport.startswith("ch-"),
    ),
    (
        "unixipc channels (ch-*)",
        lambda row: row.family == "unixipc" and row.transport.startswith("ch-"),
    ),
    ("peers", lambda row: row.family == "peer"),
)
_STYLES = ("-", "--", "-.", ":")
_MARKERS = "os^vD<>pP*Xh"


def _throughput_series(rows: Sequence[Row]) -> tuple[str, dict[str, list[Row]]]:
    throughput = [
        row for row in rows if row.test == "throughput" and row.status == "ok" and row.mb_per_s
    ]
    if not throughput:
        return "", {}
    placement = throughput[0].placement
    series: dict[str, list[Row]] = {}
    for row in throughput:
        if row.placement == placement:
            series.setdefault(row.transport, []).append(row)
    for points in series.values():
        points.sort(key=lambda row: row.size)
    return placement, series


def _peak(points: Sequence[Row]) -> float:
    return max(row.mb_per_s or 0.0 for row in points)


def _throughput_panel(
    axes: Any, title: str, mine: dict[str, list[Row]], references: dict[str, list[Row]]
) -> None:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    names = sorted(mine, key=lambda name: _peak(mine[name]), reverse=True)
    for index, name in enumerate(names):
        points = mine[name]
        axes.plot(
            [row.size for row in points],
            [row.mb_per_s for row in points],
            linestyle=_STYLES[index // 10 % len(_STYLES)],
            marker=_MARKERS[index % len(_MARKERS)],
            color=palette(index % 10),
            linewidth=1.8,
            markersize=4,
            label=name,
        )
    for number, (name, points) in enumerate(references.items()):
        family = points[0].family
        axes.plot(
            [row.size for row in points],
            [row.mb_per_s for row in points],
            linestyle=(":", "-.")[number % 2] if family == "C" else "--",
            color="black" if family == "C" else "0.55",
            linewidth=2.0 if family == "C" else 1.5,
            label=f"{name} ({'C limit' if family == 'C' else 'best peer'})",
        )
    sizes = sorted({row.size for points in mine.values() for row in points})
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(sizes, [size_label(size) for size in sizes])
    axes.set_ylabel("MB/s (log)")
    axes.set_title(title, fontsize=10)
    axes.grid(which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def write_plot(report: Report, path: str | os.PathLike[str]) -> None:
    """Draw the report into a PNG file: latency on the left, throughput per group on the right.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'unixipc[bench]'``).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    placement, series = _throughput_series(report.rows)
    groups = [
        (title, {name: points for name, points in series.items() if belongs(points[0])})
        for title, belongs in _GROUPS
    ]
    groups = [(title, mine) for title, mine in groups if mine]
    c_rows = {name: points for name, points in series.items() if points[0].family == "C"}
    peers = {name: points for name, points in series.items() if points[0].family == "peer"}
    best_peer = dict(sorted(peers.items(), key=lambda item: -_peak(item[1]))[:1])
    latency_count = len({row.transport for row in report.rows if row.test == "latency"})
    height = max(4.0 * max(len(groups), 1), 0.28 * latency_count + 2.0, 6.0)
    figure = pyplot.figure(figsize=(18, height))
    grid = figure.add_gridspec(max(len(groups), 1), 2, width_ratios=[1, 1.15])
    _latency_panel(figure.add_subplot(grid[:, 0]), report.rows)
    if not groups:
        empty = figure.add_subplot(grid[0, 1])
        empty.text(0.5, 0.5, "no throughput measured", ha="center", va="center")
        empty.set_axis_off()
    for index, (title, mine) in enumerate(groups):
        references = dict(c_rows)
        if not title.startswith("peers"):
            references.update(best_peer)
        _throughput_panel(
            figure.add_subplot(grid[index, 1]),
            f"One-way throughput, {placement}: {title}",
            mine,
            references,
        )
    env = report.environment
    figure.suptitle(
        f"unixipc bench: {env['cpu_model']}, {env['kernel']}, {env['python']} ({env['date'][:10]})",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
