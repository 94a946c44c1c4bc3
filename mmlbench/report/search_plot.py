"""`tune --plot FILE`: each cell's search, one panel each: every finished trial's validation value and
the best value so far, by trial number (PNG, PDF or SVG by suffix)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen

from matplotlib.figure import Figure  # noqa: E402

from mmlbench.errors import MMLBenchError  # noqa: E402
from mmlbench.fsutil import atomic_file, writable_folder  # noqa: E402
from mmlbench.report.formats import plot_format  # noqa: E402

History = list[tuple[int, str, float]]  # (trial number, state, validation value)
MARKERS = {"completed": "o", "pruned": "x", "failed": "s"}
COLUMNS = 3


def check_plot_path(path: Path) -> None:
    """Refuse a plot file of an unknown suffix, or in a folder that takes no file, before anything runs."""
    plot_format(path)
    if not writable_folder(Path(path).parent):
        raise MMLBenchError(f"--plot {path}: cannot create files in {Path(path).parent}")


def plot_searches(searches: list[tuple[str, History]], path: Path) -> None:
    figure = search_figure(searches)
    with atomic_file(Path(path)) as tmp:
        figure.savefig(tmp, format=plot_format(path), dpi=150)


def search_figure(searches: list[tuple[str, History]]) -> Figure:
    rows = max(1, math.ceil(len(searches) / COLUMNS))
    columns = min(COLUMNS, max(1, len(searches)))
    figure = Figure(figsize=(4.5 * columns, 3.2 * rows), layout="constrained")
    for index, (name, history) in enumerate(searches):
        axes = figure.add_subplot(rows, columns, index + 1)
        _panel(axes, name, history)
    figure.suptitle("tune: validation value by trial (line: best so far)")
    return figure


def _panel(axes, name: str, history: History) -> None:  # noqa: ANN001 - matplotlib Axes
    ordered = sorted(history)
    for state, marker in MARKERS.items():
        points = [(number, value) for number, kind, value in ordered if kind == state and math.isfinite(value)]
        if points:
            axes.scatter(*zip(*points), marker=marker, s=18, label=state)
    best, running = [], -math.inf
    for number, state, value in ordered:
        if state == "completed" and math.isfinite(value):
            running = max(running, value)
        best.append((number, running if math.isfinite(running) else math.nan))
    if best:
        axes.step(*zip(*best), where="post", color="black", linewidth=1)
    axes.set_title(name, fontsize=8)
    axes.set_xlabel("trial")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7)
