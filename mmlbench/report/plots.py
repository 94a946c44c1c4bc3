"""Plots (PNG, PDF or SVG by suffix): a metric against the number of negatives, and per-epoch training curves."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen: works in CI and over ssh

import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mmlbench import store  # noqa: E402
from mmlbench.config import ALL  # noqa: E402
from mmlbench.errors import MMLBenchError  # noqa: E402
from mmlbench.fsutil import atomic_file  # noqa: E402
from mmlbench.report.compare import Comparison, CompareSpec  # noqa: E402
from mmlbench.report.formats import plot_format  # noqa: E402
from mmlbench.report.selection import MISSING, fail, normalise, where_text  # noqa: E402

DPI = 150


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
    """The x position of each column key; an error unless there is one positive numeric column
    (negatives=all counts: at the catalogue size)."""
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
    if any(x <= 0 for x in positions.values()):
        raise fail(f"--plot uses a log axis: every {spec.cols[0]} value must be positive")
    return positions


def plot_metric(comparison: Comparison, path: Path) -> None:
    """The first metric against the column value (log x), one line per row, ± std band."""
    spec = comparison.spec
    metric, column = spec.metrics[0], spec.cols[0]
    positions = _numeric_columns(comparison)
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for row in comparison.row_keys:
        cells = [c for col in comparison.col_keys if (c := comparison.cell(row, col)) is not None]
        xs = [positions[c.col] for c in cells]
        means = [c.mean[metric] for c in cells]
        spread = [0.0 if math.isnan(c.std[metric]) else c.std[metric] for c in cells]
        (line,) = axes.plot(xs, means, marker="o", label=" / ".join(row))
        low = [m - s for m, s in zip(means, spread, strict=True)]
        high = [m + s for m, s in zip(means, spread, strict=True)]
        axes.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    _plot_references(axes, comparison, metric, positions)
    axes.set_xscale("log")
    ticks = sorted(positions.items(), key=lambda item: item[1])
    axes.set_xticks([x for _, x in ticks], labels=[col[0] if col[0] == ALL else normalise(x) for col, x in ticks])
    axes.minorticks_off()
    axes.set_xlabel(f"{column} (log scale)")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} vs {column}" + _where_suffix(spec) + " — mean ± std over seeds")
    axes.grid(alpha=0.3)
    axes.legend(title=" / ".join(spec.rows))
    _save(figure, path)


def _plot_references(axes, comparison: Comparison, metric: str, positions: dict[tuple[str, ...], float]) -> None:  # noqa: ANN001 - matplotlib Axes
    for reference in comparison.spec.references:
        col = comparison.reference_col(reference)
        value = reference.get(metric)
        if col is not None and isinstance(value, int | float):
            axes.scatter([positions[col]], [value], marker="x", color="black", zorder=3)
            axes.annotate(f"published: {reference['label']}", (positions[col], value),
                          textcoords="offset points", xytext=(4, 4), fontsize=7)  # fmt: skip


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
