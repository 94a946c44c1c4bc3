"""The comparison of stored runs: one object, built by `build_comparison`, shown by renderers.

Runs are grouped into cells by the values of the `rows` and `cols` columns; the runs of a
cell are the seeds of one setting (runs that differ in any other hashed setting are split
into rows, see `report.settings`). Each cell holds the mean, sample std and count over its
distinct seeds, the % change of its mean against the baseline row in the same column, and
paired tests on per-user metrics against that baseline cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from mmlbench import store
from mmlbench.errors import MMLBenchError
from mmlbench.metrics import METRICS
from mmlbench.report.diagnostics import (
    mixing_warnings,
    protocol_lines,
    refuse_several_datasets,
    split_columns,
    split_warning,
)
from mmlbench.report.selection import (
    CompareSpec,
    apply_where,
    check_names,
    describe,
    fail,
    groupable_columns,
    labels,
    metric_columns,
    normalise,
    sort_key,
)
from mmlbench.report.settings import repeated_seeds, seed_labels, split_by_settings
from mmlbench.report.significance import PairedTest, correct, paired_tests, per_user_means

Key = tuple[str, ...]
PerUserReader = Callable[[Path], pd.DataFrame]


@dataclass
class Cell:
    """The seeds of one (row, col) setting, summarised."""

    row: Key
    col: Key
    run_dirs: list[str]
    seeds: list[str]  # the seed of each run in run_dirs; a seed stored twice counts once
    mean: dict[str, float]
    std: dict[str, float]  # sample std (ddof=1) over seeds; NaN for a single seed
    cost: dict[str, float]
    change_pct: dict[str, float] = field(default_factory=dict)
    tests: dict[str, list[PairedTest]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """The number of distinct seeds."""
        return len(set(self.seeds))

    def marks(self, metric: str) -> list[str]:
        """Names of the tests that found this cell significantly different from its baseline."""
        return [t.test for t in self.tests.get(metric, []) if t.significant]


@dataclass
class Comparison:
    """A table of cells plus everything a reader needs to trust it (footer, warnings)."""

    spec: CompareSpec
    row_keys: list[Key]
    col_keys: list[Key]
    cells: dict[tuple[Key, Key], Cell]
    protocols: list[str]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cell(self, row: Key, col: Key) -> Cell | None:
        return self.cells.get((row, col))

    def baseline_row(self, row: Key) -> Key | None:
        """The baseline row a row is compared with: its own key with the baseline values put in."""
        if not self.spec.baseline:
            return None
        baseline = self.spec.baseline
        return tuple(normalise(baseline[c]) if c in baseline else v for c, v in zip(self.spec.rows, row, strict=True))

    def is_baseline(self, row: Key) -> bool:
        return bool(self.spec.baseline) and self.baseline_row(row) == row

    def tests(self) -> list[PairedTest]:
        return [t for cell in self.cells.values() for tests in cell.tests.values() for t in tests]

    def reference_col(self, reference: dict[str, Any]) -> Key | None:
        """The column a published reference belongs in, if the table has it."""
        if not all(c in reference for c in self.spec.cols):
            return None
        col = tuple(normalise(reference[c]) for c in self.spec.cols)
        return col if col in self.col_keys else None


def build_comparison(
    runs: pd.DataFrame, spec: CompareSpec, read_per_user: PerUserReader = store.read_per_user
) -> Comparison:
    """Group completed runs into cells and compare every cell with its baseline cell.

    The runs must be of one dataset unless it is a row or a column. When a cell would hold
    runs of several protocols, data versions or settings, the columns that tell them apart
    are added to the rows (the comparison's spec says so) and a warning explains the split.
    Columns are tested within the baseline's reach (rows but the baseline's, and cols), so a
    cell is never compared with a baseline cell of another protocol or data version either.
    """
    validate_spec(runs, spec)
    selected = apply_where(runs, spec.where)
    refuse_several_datasets(selected, spec)
    reach = [*(c for c in spec.rows if c not in spec.baseline), *spec.cols]
    added = split_columns(selected, reach)
    spec = replace(spec, rows=[*spec.rows, *added])
    by_setting, setting_warnings = split_by_settings(selected, [*spec.rows, *spec.cols])
    spec = replace(spec, rows=[*spec.rows, *by_setting])
    members: dict[tuple[Key, Key], list[int]] = {}
    for position, key in enumerate(zip(labels(selected, spec.rows), labels(selected, spec.cols), strict=True)):
        members.setdefault(key, []).append(position)
    cells = {key: _summarise(selected.iloc[rows], key, spec) for key, rows in members.items()}
    comparison = Comparison(
        spec=spec,
        row_keys=sorted({row for row, _ in cells}, key=_key_order),
        col_keys=sorted({col for _, col in cells}, key=_key_order),
        cells=cells,
        protocols=protocol_lines(selected),
        warnings=[split_warning(selected, column) for column in added] + setting_warnings
        + mixing_warnings(selected, spec)
        + [w for cell in cells.values() if (w := repeated_seeds(_describe_cell(spec, cell), cell.seeds))],
    )  # fmt: skip
    if spec.baseline:
        _check_baseline_present(comparison)
        pairs = _baseline_pairs(comparison)
        _add_changes(pairs)
        _add_tests(comparison, pairs, read_per_user)
    return comparison


def _key_order(key: Key) -> list[tuple[int, float, str]]:
    return [sort_key(value) for value in key]


def validate_spec(runs: pd.DataFrame, spec: CompareSpec) -> None:
    """Check every name in the spec against the runs before any work is done."""
    if not spec.metrics:
        raise fail("no metric given: pass e.g. --metric recall@20")
    check_names("metric", spec.metrics, metric_columns(runs))
    check_names("column", [*spec.rows, *spec.cols], groupable_columns(runs))
    if not spec.rows:
        raise fail("no row column given: pass e.g. --rows loss")
    overlap = set(spec.rows) & set(spec.cols)
    if overlap:
        raise fail(f"{', '.join(sorted(overlap))} cannot be both a row and a column")
    if not 0 < spec.alpha < 1:
        raise fail(f"--alpha must be between 0 and 1, got {spec.alpha}")
    outside = [c for c in spec.baseline if c not in spec.rows]
    if outside:
        raise fail(f"baseline column '{outside[0]}' is not a row column ({', '.join(spec.rows)})")
    for reference in spec.references:
        if "label" not in reference:
            raise fail(f"a published reference needs a 'label': {reference}")


def _summarise(group: pd.DataFrame, key: tuple[Key, Key], spec: CompareSpec) -> Cell:
    """Mean and std over distinct seeds: runs of one seed (the same run stored twice) are averaged first."""
    seeds = seed_labels(group)
    values = group[spec.metrics].apply(pd.to_numeric, errors="coerce").groupby(seeds.to_numpy()).mean()
    return Cell(
        row=key[0],
        col=key[1],
        run_dirs=[str(d) for d in group["run_dir"]] if "run_dir" in group else [""] * len(group),
        seeds=list(seeds),
        mean=values.mean().to_dict(),
        std=values.std(ddof=1).to_dict(),
        cost=_cost(group) if spec.cost else {},
    )


def _cost(group: pd.DataFrame) -> dict[str, float]:
    """Median time over seeds (robust to one slow machine), largest peak memory."""

    def column(name: str) -> pd.Series:
        return pd.to_numeric(group[name], errors="coerce") if name in group else pd.Series(dtype=float)

    return {
        "epoch_seconds_median": float(column("epoch_seconds_median").median()),
        "eval_seconds_median": float(column("eval_seconds_median").median()),
        "peak_memory_bytes": float(column("peak_memory_bytes").max()),
    }


def _check_baseline_present(comparison: Comparison) -> None:
    spec = comparison.spec
    wanted = {column: normalise(value) for column, value in spec.baseline.items()}
    positions = {c: spec.rows.index(c) for c in wanted}
    if any(all(row[positions[c]] == v for c, v in wanted.items()) for row in comparison.row_keys):
        return
    for column, value in wanted.items():
        present = sorted({row[positions[column]] for row in comparison.row_keys})
        check_names(f"--baseline {column}", [value], present)
    raise fail(f"no row matches the baseline {describe(wanted, wanted.values())}")


def _baseline_pairs(comparison: Comparison) -> list[tuple[Cell, Cell]]:
    """(cell, its baseline cell) for every non-baseline cell; a note for each missing baseline cell."""
    pairs = []
    missing: dict[str, None] = {}  # an ordered set
    for (row, col), cell in comparison.cells.items():
        base_row = comparison.baseline_row(row)
        base = comparison.cell(base_row, col)
        if base is None:
            missing[describe([*comparison.spec.rows, *comparison.spec.cols], [*base_row, *col])] = None
        elif base is not cell:
            pairs.append((cell, base))
    comparison.notes.extend(f"no baseline runs for {name}: no % change or tests there" for name in missing)
    return pairs


def _add_changes(pairs: list[tuple[Cell, Cell]]) -> None:
    for cell, base in pairs:
        for metric, mean in cell.mean.items():
            reference = base.mean[metric]
            cell.change_pct[metric] = 100.0 * (mean - reference) / reference if reference else float("nan")


def _add_tests(comparison: Comparison, pairs: list[tuple[Cell, Cell]], read_per_user: PerUserReader) -> None:
    """Test every cell against its baseline cell on per-user metrics, then Holm-correct."""
    spec = comparison.spec
    loaded: dict[str, pd.DataFrame | None] = {}
    skipped: dict[str, None] = {}  # an ordered set of cells without per-user metrics
    whole = [metric for metric in spec.metrics if not METRICS[metric.partition("@")[0]].per_user]
    if whole and pairs:
        comparison.notes.append(f"{', '.join(whole)}: one value per run, not per user: no paired tests")
    for cell, base in pairs:
        for metric in (metric for metric in spec.metrics if metric not in whole):
            ours = _per_user_frames(cell, metric, read_per_user, loaded)
            theirs = _per_user_frames(base, metric, read_per_user, loaded)
            if ours is None or theirs is None:
                skipped[_describe_cell(spec, cell if ours is None else base)] = None
                continue
            cell.tests[metric] = paired_tests(
                per_user_means(ours, metric, cell.seeds), per_user_means(theirs, metric, base.seeds)
            )
    comparison.notes.extend(f"per-user metrics missing for {name}: tests involving it skipped" for name in skipped)
    correct(comparison.tests(), spec.alpha)


def _per_user_frames(
    cell: Cell, metric: str, read_per_user: PerUserReader, loaded: dict[str, pd.DataFrame | None]
) -> list[pd.DataFrame] | None:
    """The per-user frames of every seed of a cell, or None when any seed lacks `metric`."""
    frames = []
    for run_dir in cell.run_dirs:
        if run_dir not in loaded:
            loaded[run_dir] = _try_read(read_per_user, run_dir)
        frame = loaded[run_dir]
        if frame is None or metric not in frame.columns or "user" not in frame.columns:
            return None
        frames.append(frame)
    return frames


def _try_read(read_per_user: PerUserReader, run_dir: str) -> pd.DataFrame | None:
    if not run_dir:
        return None
    try:
        return read_per_user(Path(run_dir))
    except MMLBenchError:
        return None


def _describe_cell(spec: CompareSpec, cell: Cell) -> str:
    return describe([*spec.rows, *spec.cols], [*cell.row, *cell.col])
