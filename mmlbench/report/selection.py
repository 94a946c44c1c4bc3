"""Choosing the runs to compare: what to compare (CompareSpec), load completed runs, check names, apply `--where` filters.

Config values are compared as normalised strings (`normalise`) so that `negatives=10`
matches an int column, `lr=1e-3` matches 0.001 and a missing value reads as "none".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmlbench import store
from mmlbench.errors import INPUT_ERROR, MMLBenchError, unknown_name
from mmlbench.metrics import is_metric_column

MISSING = "none"
# A short, table-friendly name for the data a run was trained on: a prefix of its fingerprint.
DATA_VERSION = "data_version"
_FINGERPRINT = "dataset_sha256"
_VERSION_DIGITS = 8
COST_COLUMNS = ("epoch_seconds_median", "eval_seconds_median", "peak_memory_bytes")

NOT_GROUPABLE = frozenset({"run_dir", "error", "status", "schema_version", *COST_COLUMNS})


@dataclass
class CompareSpec:
    """What to compare. Plain data, so a preset file or a script can fill it."""

    rows: list[str] = field(default_factory=lambda: ["loss"])
    cols: list[str] = field(default_factory=lambda: ["negatives"])
    metrics: list[str] = field(default_factory=lambda: ["recall@20", "ndcg@20"])
    # Column -> wanted value, or a list of values of which a run must have any.
    where: dict[str, str | list[str]] = field(default_factory=dict)
    # Row coordinates of the baseline, e.g. {"loss": "ccl"}; empty means no baseline.
    baseline: dict[str, str] = field(default_factory=dict)
    alpha: float = 0.05
    cost: bool = False
    # Published numbers shown beside ours: {"label": ..., "loss": "ccl", "negatives": 800,
    # "recall@20": 0.1837}. A reference sits in the column its `cols` coordinates name.
    references: list[dict[str, Any]] = field(default_factory=list)


def fail(message: str) -> MMLBenchError:
    return MMLBenchError(message, exit_code=INPUT_ERROR)


def normalise(value: Any) -> str:
    """A config value as a comparable string: 10, 10.0 and "10" all become "10"."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return normalise(number) if math.isfinite(number) else text


def sort_key(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order first, then text in alphabetical order."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def load_completed_runs(results_dir: Path) -> pd.DataFrame:
    """Every completed run in the store, or an error saying where we looked and what we found."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise fail(f"results folder {results_dir} does not exist (set --results-dir or $MMLBENCH_RESULTS_DIR)")
    runs = store.read_runs(results_dir)  # damaged runs are skipped with a warning
    if runs.empty:
        raise fail(f"no runs in {store.runs_dir(results_dir)}: train some with `mmlbench train`")
    _check_schema_versions(runs)
    if "status" not in runs.columns:
        raise fail(f"runs in {store.runs_dir(results_dir)} record no status column")
    completed = runs[runs["status"] == store.STATUS_COMPLETED].reset_index(drop=True)
    if completed.empty:
        counts = runs["status"].astype(str).value_counts().to_dict()
        found = ", ".join(f"{n} {status}" for status, n in counts.items())
        raise fail(f"no completed runs in {store.runs_dir(results_dir)} (found {found})")
    return with_data_version(completed)


def with_data_version(runs: pd.DataFrame) -> pd.DataFrame:
    """Add `data_version` ('sha256:3f2a9c1b') from the fingerprint, for rows, filters and messages.

    The 'sha256:' prefix keeps an all-digit prefix from being read as a number.
    """
    if _FINGERPRINT not in runs.columns:
        return runs
    versions = runs[_FINGERPRINT].map(
        lambda value: f"sha256:{value[:_VERSION_DIGITS]}" if isinstance(value, str) and value else MISSING
    )
    return runs.assign(**{DATA_VERSION: versions})


def _check_schema_versions(runs: pd.DataFrame) -> None:
    """Newer run formats may mean something else by the same column: refuse them clearly.

    Runs without a version (older) are read as far as their columns allow.
    """
    if "schema_version" not in runs.columns:
        return
    versions = pd.to_numeric(runs["schema_version"], errors="coerce")
    newer = runs[versions > store.SCHEMA_VERSION]
    if not newer.empty:
        first = newer.iloc[0]
        raise fail(
            f"run {first.get('run_id', first['run_dir'])} has schema_version "
            f"{normalise(first['schema_version'])}, but this mmlbench reads run schema versions "
            f"up to {store.SCHEMA_VERSION}: upgrade mmlbench to compare it"
        )


def metric_columns(runs: pd.DataFrame) -> list[str]:
    return sorted((c for c in runs.columns if is_metric_column(c)), key=_metric_order)


def _metric_order(name: str) -> tuple[str, int]:
    base, _, k = name.partition("@")
    return (base, int(k))


def groupable_columns(runs: pd.DataFrame) -> list[str]:
    return sorted(c for c in runs.columns if c not in NOT_GROUPABLE and not is_metric_column(c))


def check_names(kind: str, names: Iterable[str], valid: Sequence[str]) -> None:
    """Raise for the first name not in `valid`, listing the valid ones and the closest."""
    for name in names:
        if name not in valid:
            raise as_input_error(unknown_name(kind, name, valid))


def as_input_error(error: MMLBenchError) -> MMLBenchError:
    error.exit_code = INPUT_ERROR
    return error


def parse_assignment(text: str, option: str) -> tuple[str, str]:
    """'dataset=gowalla' -> ('dataset', 'gowalla'), with the value normalised."""
    column, sep, value = text.partition("=")
    if not sep or not column.strip() or not value.strip():
        raise fail(f"bad {option} '{text}': expected COLUMN=VALUE, e.g. {option} dataset=gowalla")
    return column.strip(), normalise(value)


def parse_baseline(text: str, rows: Sequence[str]) -> dict[str, str]:
    """'loss=ccl', or just 'ccl' when there is a single row column."""
    if "=" not in text and len(rows) == 1:
        return {rows[0]: normalise(text)}
    return dict([parse_assignment(text, "--baseline")])


def parse_where(clauses: Iterable[str]) -> dict[str, list[str]]:
    """--where clauses by column; a column given several times keeps runs with any of its values."""
    where: dict[str, list[str]] = {}
    for clause in clauses:
        column, value = parse_assignment(clause, "--where")
        values = where.setdefault(column, [])
        if value not in values:
            values.append(value)
    return where


def where_values(wanted: Any) -> list[str]:
    """A filter's wanted values, normalised: one value, or a list or tuple of any-of values."""
    return [normalise(value) for value in wanted] if isinstance(wanted, list | tuple) else [normalise(wanted)]


def where_text(where: Mapping[str, Any]) -> str:
    """'dataset=gowalla or yelp2018, model=mf': filters as messages and plot titles name them."""
    return ", ".join(f"{column}={' or '.join(where_values(wanted))}" for column, wanted in where.items())


def apply_where(runs: pd.DataFrame, where: Mapping[str, Any], what: str = "completed runs") -> pd.DataFrame:
    """The runs matching every column's filter (any of its values); an error names a value that matches nothing.

    `what` names the runs in that error ("completed runs" for compare, "runs" for a listing).
    """
    check_names("column", where, groupable_columns(runs))
    selected = runs
    for column, wanted in where.items():
        values = where_values(wanted)
        labels = selected[column].map(normalise)
        for value in values:
            if not (labels == value).any():
                present = ", ".join(sorted(set(labels), key=sort_key))
                raise fail(f"no {what} with {column}={value} (values here: {present})")
        selected = selected[labels.isin(values)]
    return selected.reset_index(drop=True)


def describe(columns: Iterable[str], values: Iterable[Any]) -> str:
    """'loss=ccl, negatives=10': how groups, cells and filters are named in messages."""
    return ", ".join(f"{column}={value}" for column, value in zip(columns, values, strict=True))


def labels(runs: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Each run's values of `columns` as a tuple of normalised strings."""
    if not columns:
        return pd.Series([()] * len(runs), index=runs.index, dtype=object)
    parts = [runs[c].map(normalise) for c in columns]
    return pd.Series(list(zip(*parts, strict=True)), index=runs.index, dtype=object)
