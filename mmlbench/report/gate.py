"""The CI regression gate: export group means as a baseline, later fail if a metric dropped.

A baseline file is a small Parquet table: one row per group, the group's key columns (as
normalised strings), one column per metric holding the mean over seeds, and `n`. Only a
change for the worse can fail, never an improvement: a drop for most metrics, a rise for
the ones that are better low (gini, arp: `metrics.higher_is_better`), whose "drop" below
is how far they rose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table
from rich.text import Text

from mmlbench.fsutil import atomic_file
from mmlbench.metrics import higher_is_better, is_metric_column
from mmlbench.report.diagnostics import refuse_mixed_groups
from mmlbench.report.selection import (
    apply_where,
    check_names,
    describe,
    fail,
    groupable_columns,
    labels,
    metric_columns,
    normalise,
)

# The gate's own failure (a regression, a baseline group without current runs); bad input is 2.
GATE_FAILED = 1
COUNT_COLUMN = "n"
# Always part of a baseline's key when the runs have them: a number means little without both.
CONTEXT_COLUMNS = ("dataset", "model")
# Float noise from summing in another order must not fail a gate set to "no drop at all".
TOLERANCE = 1e-12


@dataclass(frozen=True)
class MaxDrop:
    """How far a metric may fall: an absolute amount, or a fraction of the baseline value."""

    amount: float
    relative: bool = False

    def allowed(self, baseline: float) -> float:
        return self.amount * abs(baseline) if self.relative else self.amount

    def __str__(self) -> str:
        return f"{self.amount * 100:g}%" if self.relative else f"{self.amount:g}"


def parse_max_drop(text: str) -> MaxDrop:
    """'0.02' (absolute) or '5%' (relative to the baseline value)."""
    cleaned = text.strip()
    relative = cleaned.endswith("%")
    try:
        amount = float(cleaned.removesuffix("%"))
    except ValueError:
        raise fail(f"bad --max-drop '{text}': give an amount such as 0.02 or a percentage such as 5%") from None
    if not math.isfinite(amount) or amount < 0:
        raise fail(f"bad --max-drop '{text}': it must be a finite number >= 0")
    return MaxDrop(amount / 100 if relative else amount, relative)


def baseline_keys(runs: pd.DataFrame, rows: list[str], cols: list[str], where: Mapping[str, Any]) -> list[str]:
    """The columns that identify a group: rows, cols, --where columns, dataset and model."""
    keys = [*rows, *cols, *where, *(c for c in CONTEXT_COLUMNS if c in runs.columns)]
    return list(dict.fromkeys(keys))


def group_means(runs: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean of each metric and run count per group; key values as normalised strings."""
    table = pd.DataFrame({key: runs[key].map(normalise) for key in keys})
    for metric in metrics:
        table[metric] = pd.to_numeric(runs[metric], errors="coerce")
    grouped = table.groupby(keys, sort=True, dropna=False)
    means = grouped[metrics].mean()
    means[COUNT_COLUMN] = grouped.size()
    return means.reset_index()


def export_baseline(
    runs: pd.DataFrame, rows: list[str], cols: list[str], metrics: list[str], where: Mapping[str, Any]
) -> pd.DataFrame:
    check_names("metric", metrics, metric_columns(runs))
    check_names("column", [*rows, *cols], groupable_columns(runs))
    selected = apply_where(runs, where)
    keys = baseline_keys(selected, rows, cols, where)
    refuse_mixed_groups(selected, keys)
    return group_means(selected, keys, metrics)


def write_baseline(baseline: pd.DataFrame, path: Path) -> None:
    with atomic_file(Path(path)) as tmp:
        baseline.to_parquet(tmp, index=False)


def read_baseline(path: Path) -> pd.DataFrame:
    """A baseline file, checked for the shape `export_baseline` writes."""
    path = Path(path)
    if not path.is_file():
        raise fail(f"baseline file {path} does not exist (write one with --export-baseline)")
    try:
        baseline = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise fail(f"cannot read baseline file {path}: {exc}") from None
    problem = None
    if COUNT_COLUMN not in baseline.columns:
        problem = f"no '{COUNT_COLUMN}' column"
    elif not metric_columns(baseline):
        problem = "no metric column such as recall@20"
    elif not _key_columns(baseline):
        problem = "no group column such as loss"
    elif baseline.empty:
        problem = "no rows"
    if problem:
        raise fail(f"{path} is not an mmlbench baseline ({problem}); write one with --export-baseline")
    return baseline


def _key_columns(baseline: pd.DataFrame) -> list[str]:
    return [c for c in baseline.columns if c != COUNT_COLUMN and not is_metric_column(c)]


@dataclass
class Regression:
    group: dict[str, str]
    metric: str
    baseline: float
    current: float
    allowed: float

    @property
    def drop(self) -> float:
        """How much worse: the fall, or the rise of a metric that is better low."""
        change = self.baseline - self.current
        return change if higher_is_better(self.metric) else -change


@dataclass
class GateResult:
    checked_groups: int
    metrics: list[str]
    regressions: list[Regression] = field(default_factory=list)
    missing_groups: list[dict[str, str]] = field(default_factory=list)


def check_against(runs: pd.DataFrame, baseline: pd.DataFrame, max_drop: MaxDrop) -> GateResult:
    """Compare current group means with the baseline's; exit code 2 when no group matches."""
    keys, metrics = _key_columns(baseline), metric_columns(baseline)
    absent = [c for c in [*keys, *metrics] if c not in runs.columns]
    if absent:
        raise fail(f"the baseline needs {', '.join(absent)}, which the current runs do not record")
    refuse_mixed_groups(runs[labels(runs, keys).isin(set(labels(baseline, keys)))], keys)
    current = group_means(runs, keys, metrics)
    found = {key: position for position, key in enumerate(labels(current, keys))}
    result = GateResult(checked_groups=0, metrics=metrics)
    for position, key in enumerate(labels(baseline, keys)):
        group = dict(zip(keys, key, strict=True))
        if key not in found:
            result.missing_groups.append(group)
            continue
        result.checked_groups += 1
        for metric in metrics:
            base = float(baseline[metric].iloc[position])
            now = float(current[metric].iloc[found[key]])
            regression = Regression(group, metric, base, now, max_drop.allowed(base))
            if math.isnan(now) or regression.drop > regression.allowed + TOLERANCE:
                result.regressions.append(regression)
    if result.checked_groups == 0:
        example = describe(keys, next(iter(found))) if found else "no runs"
        raise fail(
            f"none of the {len(baseline)} baseline groups match the current runs "
            f"(baseline e.g. {_group_name(result.missing_groups[0])}; current e.g. {example})"
        )
    return result


def missing_text(result: GateResult, verdict: str = "") -> str:
    """'2 baseline group(s) have no current runs{verdict}: loss=ssm, ...; loss=...', every group named."""
    names = "; ".join(_group_name(group) for group in result.missing_groups)
    return f"{len(result.missing_groups)} baseline group(s) have no current runs{verdict}: {names}"


def _group_name(group: dict[str, str]) -> str:
    return describe(group, group.values())


def regression_table(result: GateResult, max_drop: MaxDrop) -> Table:
    title = f"{len(result.regressions)} regression(s) in {result.checked_groups} groups (max drop {max_drop})"
    table = Table(title=title)
    for header in ("group", "metric", "baseline", "current", "drop", "allowed"):
        table.add_column(header, justify="left" if header in ("group", "metric") else "right")
    for item in result.regressions:
        cells = [_group_name(item.group), item.metric, *(f"{x:.4f}" for x in (item.baseline, item.current, item.drop))]
        table.add_row(*map(Text, [*cells, f"{item.allowed:.4f}"]))  # Text: group values are data, not markup
    return table
