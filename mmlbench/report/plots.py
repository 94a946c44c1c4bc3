"""Plots (PNG, PDF or SVG by suffix): a metric against the number of negatives, and per-epoch training curves."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen: works in CI and over ssh

import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mmlbench import store  # noqa: E402
from mmlbench.config import ALL  # noqa: E402
from mmlbench.errors import MMLBenchError  # noqa: E402
from mmlbench.fsutil import atomic_file  # noqa: E402
from mmlbench.metrics import higher_is_better  # noqa: E402
from mmlbench.report.compare import Comparison, CompareSpec, Key  # noqa: E402
from mmlbench.report.formats import plot_format  # noqa: E402
from mmlbench.report.render import significance_line  # noqa: E402
from mmlbench.report.selection import MISSING, fail, normalise, where_text  # noqa: E402
from mmlbench.report.significance import TEST_MARKS  # noqa: E402

DPI = 150
TITLE_SIZE = 12
NOTE_SIZE = 8
LEGEND_SIZE = 8
LINE_SPACING = 1.3
PANEL_HEIGHT = 5.5  # inches, title, panels and legend; the footnote's lines come on top


def _save(figure: Figure, path: Path) -> None:
    """Write the figure atomically, in the format its suffix names (the temporary name has none)."""
    with atomic_file(Path(path)) as tmp:
        figure.savefig(tmp, format=plot_format(path), dpi=DPI)


def _catalogue_size(comparison: Comparison, col: tuple[str, ...]) -> float:
    """Where negatives=all sits on the x axis: the number of items (every run of the column on one catalogue)."""
    run_dirs = [d for (_, key), cell in comparison.cells.items() if key == col for d in cell.run_dirs]
    sizes = {normalise(store.read_run(Path(d)).get("n_items")) for d in run_dirs}
    if len(sizes) != 1 or MISSING in sizes:
        found = ", ".join(sorted(sizes))
        raise fail(f"--plot draws negatives=all at the number of items, which its runs do not share (n_items: {found}); "
                   "narrow with --where dataset=...")  # fmt: skip
    return float(sizes.pop())


def _numeric_columns(comparison: Comparison) -> dict[tuple[str, ...], float]:
    """The x position of each column key with a positive value; an error unless there is one numeric column.

    negatives=all sits at the catalogue size. Values <= 0 have no place on a log axis: they
    are left out (the footnote says so).
    """
    spec = comparison.spec
    if len(spec.cols) != 1:
        raise fail(f"--plot needs exactly one --cols column (such as negatives), got {len(spec.cols)}")
    positions = {}
    for col in comparison.col_keys:
        if spec.cols[0] == "negatives" and col[0] == ALL:
            positions[col] = _catalogue_size(comparison, col)
            continue
        try:
            positions[col] = float(col[0])
        except ValueError:
            values = ", ".join(c[0] for c in comparison.col_keys)
            raise fail(f"--plot needs numeric --cols values on a log axis; {spec.cols[0]} has {values}") from None
    if all(x <= 0 for x in positions.values()):
        raise fail(f"--plot uses a log axis: no {spec.cols[0]} value is positive")
    return {col: x for col, x in positions.items() if x > 0}


def plot_metric(comparison: Comparison, path: Path) -> None:
    _save(metric_figure(comparison), path)


def metric_figure(comparison: Comparison) -> Figure:
    """Every metric against the column value (log x), a panel each, one line per row with its ± std band.

    The y-axis starts at 0, so a line's height is its value and small differences look small.
    Points significantly different from their baseline carry the table's marks; published
    values are crosses (a dotted line where they name no column value); the legend gives each
    row's n, and the footnote the protocol, the summary and the tests.
    """
    spec = comparison.spec
    positions = _numeric_columns(comparison)
    colours = {row: f"C{index % 10}" for index, row in enumerate(comparison.row_keys)}
    width = 1.5 + 5.0 * len(spec.metrics)
    lines = _notes(comparison, [col for col in comparison.col_keys if col not in positions])
    notes = "\n".join(textwrap.fill(line, _characters(width, NOTE_SIZE)) for line in lines)
    # The footnote gets a subfigure of its own below the plot: a figure text is not laid out.
    notes_height = (notes.count("\n") + 1) * NOTE_SIZE * LINE_SPACING / 72 + 0.15
    figure = Figure(figsize=(width, PANEL_HEIGHT + notes_height), layout="constrained")
    plot, footnote = figure.subfigures(2, 1, height_ratios=[PANEL_HEIGHT, notes_height])
    footnote.text(0.01, 1, notes, fontsize=NOTE_SIZE, va="top", linespacing=LINE_SPACING)
    for axes, metric in zip(plot.subplots(1, len(spec.metrics), squeeze=False)[0], spec.metrics, strict=True):
        tops = [_plot_row(axes, comparison, row, metric, positions, colours[row]) for row in comparison.row_keys]
        tops += _plot_references(axes, comparison, metric, colours)
        ticks = _ticks(comparison, positions)
        axes.set_xscale("log")
        axes.set_xticks(list(ticks), labels=list(ticks.values()))
        axes.minorticks_off()
        axes.set_ylim(0, 1.1 * max(tops, default=1.0) or 1.0)
        better_low = "" if higher_is_better(metric) else " (lower is better)"
        axes.set(title=metric, xlabel=f"{spec.cols[0]} (log scale)", ylabel=metric + better_low)
        axes.grid(alpha=0.3)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    # As many columns of entries as fit across the figure, at most 3.
    columns = max(1, min(3, len(labels), _characters(width, LEGEND_SIZE) // (max(map(len, labels)) + 8)))
    plot.legend(handles, labels, loc="outside lower center", ncols=columns, title=" / ".join(spec.rows),
                fontsize=LEGEND_SIZE)  # fmt: skip
    plot.suptitle(textwrap.fill(_title(comparison), _characters(width, TITLE_SIZE)), fontsize=TITLE_SIZE)
    return figure


def _plot_row(axes, comparison: Comparison, row: Key, metric: str, positions: dict[Key, float], colour: str) -> float:  # noqa: ANN001 - matplotlib Axes
    """One row's line, band and significance marks; returns the highest point drawn (0 for none)."""
    cells = [c for col in positions if (c := comparison.cell(row, col)) is not None]
    if not cells:
        return 0.0
    xs = [positions[c.col] for c in cells]
    means = [c.mean[metric] for c in cells]
    spread = [0.0 if math.isnan(c.std[metric]) else c.std[metric] for c in cells]
    counts = sorted({c.n for c in cells})
    n = f"n={counts[0]}" if len(counts) == 1 else f"n={counts[0]}-{counts[-1]}"
    label = " / ".join(row) + (" (baseline)" if comparison.is_baseline(row) else "") + f", {n}"
    axes.plot(xs, means, marker="o", color=colour, label=label)
    high = [m + s for m, s in zip(means, spread, strict=True)]
    axes.fill_between(xs, [m - s for m, s in zip(means, spread, strict=True)], high, color=colour, alpha=0.2, linewidth=0)
    for cell, x, mean in zip(cells, xs, means, strict=True):
        marks = "".join(TEST_MARKS[name] for name in cell.marks(metric))
        if marks:
            axes.annotate(marks, (x, mean), textcoords="offset points", xytext=(5, 3), ha="left", color=colour)
    return max((h for h in high if not math.isnan(h)), default=0.0)


def _ticks(comparison: Comparison, positions: dict[Key, float]) -> dict[float, str]:
    """The x ticks in order, with their labels: the column values and the published values' places;
    negatives=all, drawn at the catalogue size, is labelled all."""
    labels = {x: normalise(x) for x in _reference_positions(comparison)}
    labels |= {x: ALL if col[0] == ALL else normalise(x) for col, x in positions.items()}
    return dict(sorted(labels.items()))


def _reference_positions(comparison: Comparison) -> list[float]:
    column = comparison.spec.cols[0]
    return [x for r in comparison.spec.references if (x := _number(r.get(column))) is not None and x > 0]


def _plot_references(axes, comparison: Comparison, metric: str, colours: dict[Key, str]) -> list[float]:  # noqa: ANN001 - matplotlib Axes
    """Published values: a cross at their column value, or a dotted line when they name none."""
    drawn = []
    for reference in comparison.spec.references:
        value = _number(reference.get(metric))
        if value is None:
            continue
        colour = _reference_colour(comparison, reference, colours)
        label = f"published: {reference['label']}"
        x = _number(reference.get(comparison.spec.cols[0]))
        if x is not None and x > 0:
            axes.scatter([x], [value], marker="X", s=70, color=colour, edgecolors="black", zorder=3, label=label)
        else:
            axes.axhline(value, linestyle=":", color=colour, label=f"{label} (any {comparison.spec.cols[0]})")
        drawn.append(value)
    return drawn


def _reference_colour(comparison: Comparison, reference: dict[str, Any], colours: dict[Key, str]) -> str:
    """The colour of the first row whose values the reference names (e.g. loss=ccl), else black."""
    named = {i: normalise(reference[c]) for i, c in enumerate(comparison.spec.rows) if c in reference}
    for row in comparison.row_keys:
        if named and all(row[i] == value for i, value in named.items()):
            return colours[row]
    return "black"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _title(comparison: Comparison) -> str:
    spec = comparison.spec
    return f"{', '.join(spec.metrics)} vs {spec.cols[0]}" + _where_suffix(spec) + " — mean ± std over seeds"


def _notes(comparison: Comparison, left_out: list[Key]) -> list[str]:
    """The footnote: protocol, how points are summarised, what the marks mean, what is not shown."""
    notes = list(comparison.protocols)
    if left_out:
        values = ", ".join(col[0] for col in left_out)
        notes.append(f"not on the log axis, left out: {comparison.spec.cols[0]}={values} (see the table)")
    notes.append("points: mean over distinct seeds (n in the legend), band ± sample std; the y-axis starts at 0")
    if comparison.spec.baseline:
        notes.append(significance_line(comparison))
    if comparison.warnings:
        notes.append(f"{len(comparison.warnings)} warning(s) about these runs: see the table's footer")
    return notes


def _characters(width: float, size: float) -> int:
    """How many characters of a font size fit across `width` inches (an average glyph is under 0.6 em wide)."""
    return int(width * 72 / (size * 0.6))


def _where_suffix(spec: CompareSpec) -> str:
    return f" ({where_text(spec.where)})" if spec.where else ""


def _run_label(run: pd.Series, spec: CompareSpec) -> str:
    columns = [*spec.rows, *spec.cols, "seed"]
    return ", ".join(f"{c}={normalise(run[c])}" for c in columns if c in run.index)


def _curve_or_none(run_dir: Path) -> pd.DataFrame | None:
    try:
        curve = store.read_curve(run_dir)
    except MMLBenchError:
        return None
    return curve if {"epoch", "loss"} <= set(curve.columns) else None


def plot_curves(runs: pd.DataFrame, spec: CompareSpec, path: Path) -> list[str]:
    """Training loss and the first metric per epoch, one line per run.

    Returns the runs left out because they have no curve file.
    """
    metric = spec.metrics[0]
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    loss_axes, metric_axes = figure.subplots(1, 2)
    for axes in (loss_axes, metric_axes):
        axes.set_prop_cycle(color=matplotlib.colormaps["tab20"].colors)  # 20 colours before a repeat
    left_out = []
    for _, run in runs.iterrows():
        curve = _curve_or_none(Path(run["run_dir"]))
        if curve is None:
            left_out.append(str(run.get("run_id", run["run_dir"])))
            continue
        label = _run_label(run, spec)
        (line,) = loss_axes.plot(curve["epoch"], curve["loss"], label=label)
        if metric in curve.columns:
            evaluated = curve.dropna(subset=[metric])
            metric_axes.plot(evaluated["epoch"], evaluated[metric], marker=".", color=line.get_color())
    if len(left_out) == len(runs):
        raise fail(f"none of the {len(runs)} selected runs has a readable {store.CURVE_FILE}: nothing to plot")
    loss_axes.set(title="training loss" + _where_suffix(spec), xlabel="epoch", ylabel="loss")
    metric_axes.set(title=f"{metric} per evaluated epoch", xlabel="epoch", ylabel=metric)
    for axes in (loss_axes, metric_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.legend(loc="outside right upper", fontsize=7)
    _save(figure, path)
    return left_out
