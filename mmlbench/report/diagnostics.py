"""What a reader must know before trusting a comparison: protocols, and runs that should not mix."""

from __future__ import annotations

import pandas as pd

from mmlbench.report.selection import DATA_VERSION, CompareSpec, describe, fail, labels, normalise, sort_key

PROTOCOL_MEANINGS = {
    "test-as-validation": "the test split was used for model selection",
    "validation": "model selected on a validation split, metrics on the test split",
}

# A mean over runs of different protocols or data is no number at all: cells and gate groups
# never average over these columns. Order matters: a dataset split explains a version split.
NEVER_MIXED = {"protocol": "protocols", "dataset": "datasets", DATA_VERSION: "data versions"}


def protocol_lines(runs: pd.DataFrame) -> list[str]:
    """One line per evaluation protocol among the runs, saying what it means."""
    if "protocol" not in runs.columns:
        return ["protocol: not recorded by these runs"]
    lines = []
    for protocol in sorted(set(runs["protocol"].map(normalise))):
        meaning = PROTOCOL_MEANINGS.get(protocol)
        lines.append(f"protocol: {protocol}" + (f" ({meaning})" if meaning else ""))
    return lines


def mixing_warnings(runs: pd.DataFrame, spec: CompareSpec) -> list[str]:
    """A warning when the table's cells, each of one protocol, hold runs of several protocols."""
    message = _mixed_column(runs, "protocol", spec)
    return [message] if message else []


def refuse_several_datasets(runs: pd.DataFrame, spec: CompareSpec) -> None:
    """One table compares one dataset, unless the dataset is a row or a column of it."""
    if "dataset" not in runs.columns or "dataset" in spec.rows or "dataset" in spec.cols:
        return
    counts = runs["dataset"].map(normalise).value_counts()
    if len(counts) > 1:
        found = ", ".join(f"{value} ({counts[value]} runs)" for value in sorted(counts.index, key=sort_key))
        raise fail(
            f"the selected runs cover {len(counts)} datasets, {found}: compare one at a time with "
            f"--where dataset={min(counts.index, key=sort_key)}, or make dataset a row or a column "
            f"(--rows {','.join(spec.rows)},dataset)"
        )


def _mixed_column(runs: pd.DataFrame, column: str, spec: CompareSpec) -> str | None:
    if column not in runs.columns or column in spec.rows or column in spec.cols:
        return None
    counts = runs[column].map(normalise).value_counts()
    if len(counts) < 2:
        return None
    found = ", ".join(f"{value} ({counts[value]} runs)" for value in sorted(counts.index, key=sort_key))
    return f"the compared runs mix protocols: {found}; narrow with --where {column}=..."


def _values_per_group(runs: pd.DataFrame, keys: list[str], column: str) -> dict[tuple, set[str]]:
    groups: dict[tuple, set[str]] = {}
    for key, value in zip(labels(runs, keys), runs[column].map(normalise), strict=True):
        groups.setdefault(key, set()).add(value)
    return groups


def split_columns(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """The NEVER_MIXED columns some group of `keys` holds several values of.

    Each column is tested with those found before it added to the keys, so runs on two
    datasets are split by dataset and not, redundantly, by data version too.
    """
    added: list[str] = []
    for column in NEVER_MIXED:
        if column not in runs.columns or column in keys:
            continue
        if any(len(values) > 1 for values in _values_per_group(runs, [*keys, *added], column).values()):
            added.append(column)
    return added


def split_warning(runs: pd.DataFrame, column: str) -> str:
    """Why the rows gained `column`, with the run count of each value."""
    counts = runs[column].map(normalise).value_counts()
    found = ", ".join(f"{value} ({counts[value]} runs)" for value in sorted(counts.index, key=sort_key))
    named = f"{column} (dataset_sha256 prefix)" if column == DATA_VERSION else column
    return (
        f"runs with {len(counts)} {NEVER_MIXED[column]} would be averaged or compared together, "
        f"so rows are split by {named}: {found}; keep one with --where {column}=..."
    )


def refuse_mixed_groups(runs: pd.DataFrame, keys: list[str]) -> None:
    """Raise for the first group of `keys` that would average over a NEVER_MIXED column."""
    for column in NEVER_MIXED:
        if column not in runs.columns or column in keys:
            continue
        for key, values in _values_per_group(runs, keys, column).items():
            if len(values) > 1:
                raise fail(
                    f"group {describe(keys, key)} mixes {column} {', '.join(sorted(values, key=sort_key))}: "
                    f"keep one with --where {column}=..."
                )
