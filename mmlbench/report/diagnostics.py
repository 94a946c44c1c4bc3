"""What a reader must know before trusting a comparison: protocols, and runs that should not mix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from mmlbench.report import store
from mmlbench.report.selection import NOT_CONFIG, describe, labels, normalise, sort_key

if TYPE_CHECKING:
    from mmlbench.report.compare import CompareSpec

PROTOCOL_MEANINGS = {
    "test-as-validation": "the test split was used for model selection",
    "validation": "model selected on a validation split, metrics on the test split",
}


def protocol_lines(runs: pd.DataFrame) -> list[str]:
    """One line per evaluation protocol among the runs, saying what it means."""
    if "protocol" not in runs.columns:
        return ["protocol: not recorded by these runs"]
    lines = []
    for protocol in sorted(set(runs["protocol"].map(normalise))):
        meaning = PROTOCOL_MEANINGS.get(protocol)
        lines.append(f"protocol: {protocol}" + (f" ({meaning})" if meaning else ""))
    return lines


def mixing_warnings(
    runs: pd.DataFrame, spec: CompareSpec, members: dict[tuple[tuple, tuple], list[int]]
) -> list[str]:
    """Warnings for runs mixed across protocols or datasets, and for cells mixing settings."""
    warnings = [
        message
        for column in ("protocol", "dataset")
        if (message := _mixed_column(runs, column, spec))
    ]
    for (row, col), positions in members.items():
        message = _mixed_settings(runs.iloc[positions])
        if message:
            warnings.append(f"cell {describe([*spec.rows, *spec.cols], [*row, *col])} {message}")
    return warnings


def _mixed_column(runs: pd.DataFrame, column: str, spec: CompareSpec) -> str | None:
    if column not in runs.columns or column in spec.rows or column in spec.cols:
        return None
    counts = runs[column].map(normalise).value_counts()
    if len(counts) < 2:
        return None
    found = ", ".join(f"{value} ({counts[value]} runs)" for value in sorted(counts.index, key=sort_key))
    plural = "protocols" if column == "protocol" else "datasets"
    return f"the compared runs mix {plural}: {found}; narrow with --where {column}=..."


def _setting_ids(group: pd.DataFrame) -> pd.Series:
    if "setting_hash" in group.columns:
        return group["setting_hash"].map(normalise)
    return labels(group, _config_columns(group)).map(str)


def _config_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if c not in NOT_CONFIG and not store.is_metric_column(c)]


def _mixed_settings(group: pd.DataFrame) -> str | None:
    """Say which config columns differ when one cell holds runs of several settings.

    A column counts as a difference only if it is constant within each setting, so
    per-run fields (seed, timestamps) that slipped into the row are not blamed.
    """
    settings = _setting_ids(group)
    if settings.nunique() < 2:
        return None
    differing = []
    for column in _config_columns(group):
        values = group[column].map(normalise)
        within = values.groupby(settings).nunique()
        if (within == 1).all() and values.nunique() > 1:
            differing.append(column)
    detail = ", ".join(differing) if differing else "fields not stored in run.parquet"
    return f"mixes {settings.nunique()} settings (differing: {detail})"

