"""The CI regression gate: export group means as a baseline, later fail if a metric dropped.

A baseline file is a small Parquet table: one row per group, the group's key columns (as
normalised strings), one column per metric holding the mean over seeds, `n` (distinct seeds),
and what the group was trained with: `settings` (its hashed settings but the seed, as JSON)
and `dataset_sha256` (its data's fingerprint). A group is a single setting; the gate refuses
current runs trained with other settings or data, since their means are not comparable.
Only a change for the worse can fail, never an improvement: a drop for most metrics, a rise
for the ones that are better low (gini, arp: `metrics.higher_is_better`), whose "drop" below
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
    MISSING,
    apply_where,
    check_names,
    describe,
    fail,
    groupable_columns,
    labels,
    metric_columns,
    normalise,
)
from mmlbench.report.settings import (
    group_settings,
    refuse_mixed_settings,
    seed_labels,
    setting_order,
    settings_from_text,
    settings_text,
    stored_setting,
)

# The gate's own failure (a regression, a baseline group without current runs); bad input is 2.
GATE_FAILED = 1
COUNT_COLUMN = "n"
# What each group was trained with; baselines written before them hold neither.
SETTINGS_COLUMN = "settings"
FINGERPRINT_COLUMN = "dataset_sha256"
_TRAINED_WITH = (SETTINGS_COLUMN, FINGERPRINT_COLUMN)
_MIXED_ADVICE = "keep one setting with --where COLUMN=VALUE, or make the differing column a row"
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
    """Mean of each metric over distinct seeds and their count per group; key values as normalised strings.

    Runs of one seed in a group (the same run stored twice) are averaged first, as in `compare`.
    """
    table = pd.DataFrame({key: runs[key].map(normalise) for key in keys})
    for metric in metrics:
        table[metric] = pd.to_numeric(runs[metric], errors="coerce")
    table["_seed"] = seed_labels(runs)
    per_seed = table.groupby([*keys, "_seed"], sort=True, dropna=False)[metrics].mean().reset_index()
    grouped = per_seed.groupby(keys, sort=True, dropna=False)
    means = grouped[metrics].mean()
    means[COUNT_COLUMN] = grouped.size()
    return means.reset_index()


def trained_with(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of `keys` (each of one setting): its settings as JSON and its data fingerprint."""
    records = []
    for key, group in runs.groupby(labels(runs, keys), sort=False):
        fingerprint = group[FINGERPRINT_COLUMN].map(normalise).iloc[0] if FINGERPRINT_COLUMN in group else MISSING
        records.append({**dict(zip(keys, key, strict=True)), SETTINGS_COLUMN: settings_text(group_settings(group)),
                        FINGERPRINT_COLUMN: fingerprint})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=[*keys, *_TRAINED_WITH])


def export_baseline(
    runs: pd.DataFrame, rows: list[str], cols: list[str], metrics: list[str], where: Mapping[str, Any]
) -> pd.DataFrame:
    check_names("metric", metrics, metric_columns(runs))
    check_names("column", [*rows, *cols], groupable_columns(runs))
    selected = apply_where(runs, where)
    keys = baseline_keys(selected, rows, cols, where)
    refuse_mixed_groups(selected, keys)
    refuse_mixed_settings(selected, keys, _MIXED_ADVICE)
    return group_means(selected, keys, metrics).merge(trained_with(selected, keys), on=keys, validate="one_to_one")


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
    return [c for c in baseline.columns if c not in (COUNT_COLUMN, *_TRAINED_WITH) and not is_metric_column(c)]


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
    notes: list[str] = field(default_factory=list)


def check_against(runs: pd.DataFrame, baseline: pd.DataFrame, max_drop: MaxDrop) -> GateResult:
    """Compare current group means with the baseline's; exit code 2 when no group matches."""
    keys, metrics = _key_columns(baseline), metric_columns(baseline)
    absent = [c for c in [*keys, *metrics] if c not in runs.columns]
    if absent:
        raise fail(f"the baseline needs {', '.join(absent)}, which the current runs do not record")
    gated = runs[labels(runs, keys).isin(set(labels(baseline, keys)))]
    refuse_mixed_groups(gated, keys)
    refuse_mixed_settings(gated, keys, _MIXED_ADVICE)
    notes = _check_trained_alike(gated, baseline, keys)
    current = group_means(runs, keys, metrics)
    found = {key: position for position, key in enumerate(labels(current, keys))}
    result = GateResult(checked_groups=0, metrics=metrics, notes=notes)
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


def _check_trained_alike(runs: pd.DataFrame, baseline: pd.DataFrame, keys: list[str]) -> list[str]:
    """Refuse (exit 2) when a group's current runs differ from the baseline's in settings; notes for the rest.

    Another data fingerprint is a note, not a refusal: the fingerprint hashes the processed
    file's bytes, which another pyarrow version writes differently from the same rows, so a
    refusal would fail CI on every pyarrow release. A baseline written before groups stored
    what they were trained with gets a note too.
    """
    if not set(_TRAINED_WITH) <= set(baseline.columns):
        return [
            "the baseline records no settings or data fingerprint per group (written by an older mmlbench): "
            "not checked that the current runs were trained alike; export it again to check them"
        ]
    now = trained_with(runs, keys)
    current = dict(zip(labels(now, keys), (row for _, row in now.iterrows()), strict=True))
    differing, other_data = [], []
    for key, (_, base) in zip(labels(baseline, keys), baseline.iterrows(), strict=True):
        if key not in current:
            continue
        if changes := _setting_changes(base, current[key]):
            differing.append(f"{describe(keys, key)}: {changes}")
        if normalise(base[FINGERPRINT_COLUMN]) != normalise(current[key][FINGERPRINT_COLUMN]):
            other_data.append(
                f"{describe(keys, key)}: data {_version(current[key][FINGERPRINT_COLUMN])} "
                f"(baseline {_version(base[FINGERPRINT_COLUMN])})"
            )
    if differing:
        raise fail(
            f"the current runs were not trained like the baseline's, so the gate cannot compare them ({_first(differing)}): "
            "train with the baseline's settings, or export a new baseline with --export-baseline"
        )
    if other_data:
        return [
            f"trained on another version of the data than the baseline ({_first(other_data)}); compared anyway: "
            "check the data, or export a new baseline with --export-baseline"
        ]
    return []


def _first(items: list[str], shown: int = 3) -> str:
    return "; ".join(items[:shown]) + (f"; and {len(items) - shown} more groups" if len(items) > shown else "")


def _setting_changes(base: pd.Series, now: pd.Series) -> str:
    """'lr 0.001 (baseline 0.01), l2 0 (baseline 1e-09)', or ''."""
    ours, theirs = settings_from_text(now[SETTINGS_COLUMN]), settings_from_text(base[SETTINGS_COLUMN])
    return ", ".join(
        f"{name} {stored_setting(ours, name)} (baseline {stored_setting(theirs, name)})"
        for name in setting_order(set(ours) | set(theirs))
        if stored_setting(ours, name) != stored_setting(theirs, name)
    )


def _version(fingerprint: Any) -> str:
    text = normalise(fingerprint)
    return text if text == MISSING else f"sha256:{text[:8]}"


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
