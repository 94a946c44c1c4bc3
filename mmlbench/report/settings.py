"""A run's settings as its hash sees them: what the runs of one cell or gate group may not differ in.

Every run stores `setting_hash`, the hash of all its RunConfig fields but the seed, and of
its data fingerprint. The runs averaged into one `compare` cell or one gate group are seeds
of one setting: runs that differ in anything else are split into rows by the setting columns
that tell them apart, or refused when no stored column does.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping

import pandas as pd

from mmlbench.config import HASH_NEUTRAL, RunConfig
from mmlbench.report.selection import MISSING, describe, fail, labels, normalise, sort_key

SEED = "seed"
SETTING_HASH = "setting_hash"
_SETTING_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name != SEED)


def setting_columns(runs: pd.DataFrame) -> list[str]:
    """The RunConfig fields but the seed that the runs record, in RunConfig order."""
    return [name for name in _SETTING_FIELDS if name in runs.columns]


def setting_values(runs: pd.DataFrame, column: str) -> pd.Series:
    """A setting column as normalised strings; a hash-neutral setting a run predates reads as its neutral value."""
    values = runs[column].map(normalise)
    neutral = HASH_NEUTRAL.get(column)
    return values.replace(MISSING, neutral) if neutral is not None else values


def setting_ids(runs: pd.DataFrame) -> pd.Series:
    """One id per setting: the stored `setting_hash`, or (older runs) the setting columns' values."""
    if SETTING_HASH in runs.columns and runs[SETTING_HASH].notna().all():
        return runs[SETTING_HASH].map(normalise)
    columns = setting_columns(runs)
    if not columns:
        return pd.Series([""] * len(runs), index=runs.index, dtype=object)
    return pd.Series(
        list(zip(*(setting_values(runs, c) for c in columns), strict=True)), index=runs.index, dtype=object
    ).map(str)


def differing_settings(runs: pd.DataFrame) -> list[str]:
    """The setting columns that take several values among `runs`."""
    return [c for c in setting_columns(runs) if setting_values(runs, c).nunique() > 1]


def _mixed_groups(runs: pd.DataFrame, ids: pd.Series, keys: list[str]) -> dict[tuple, pd.DataFrame]:
    """The groups of `keys` that hold runs of more than one setting."""
    groups = runs.groupby(labels(runs, keys), sort=False)
    return {key: group for key, group in groups if ids[group.index].nunique() > 1}


def split_by_settings(runs: pd.DataFrame, keys: list[str]) -> tuple[list[str], list[str]]:
    """Setting columns to add to `keys` so that no group holds two settings, and the warning that says so.

    Columns are added in RunConfig order, each only while some group still mixes settings
    and the column varies within such a group, so a split by sampler is not also split by
    the samplers' own parameters. A group whose settings no stored column tells apart is refused.
    """
    runs = runs.reset_index(drop=True)
    ids = setting_ids(runs)
    mixed = _mixed_groups(runs, ids, keys)
    if not mixed:
        return [], []
    cells = [f"{describe(keys, key)}: {_differences(group)}" for key, group in mixed.items()]
    added: list[str] = []
    for column in setting_columns(runs):
        if mixed and column not in keys and any(setting_values(g, column).nunique() > 1 for g in mixed.values()):
            added.append(column)
            mixed = _mixed_groups(runs, ids, [*keys, *added])
    if mixed:
        key, group = next(iter(mixed.items()))
        hashes = ", ".join(sorted({str(h)[:12] for h in ids[group.index]}))
        raise fail(
            f"cell {describe(keys, key)} holds runs of {ids[group.index].nunique()} settings that no stored "
            f"setting column tells apart (setting_hash {hashes}...): keep one with --where setting_hash=..."
        )
    shown = "; ".join(cells[:3]) + (f"; and {len(cells) - 3} more" if len(cells) > 3 else "")
    warning = (
        f"cells would average runs of different settings ({shown}), so rows are split by {', '.join(added)}; "
        f"keep one setting with --where {added[0]}=..."
    )
    return added, [warning]


def _differences(group: pd.DataFrame) -> str:
    """'lr 0.001/0.01, epochs 3/5': the setting columns in which a group's runs differ, with their values."""
    differing = ", ".join(f"{c} {_values_text(setting_values(group, c))}" for c in differing_settings(group))
    return differing or "fields not stored in run.parquet"


def _values_text(values: Iterable[str]) -> str:
    return "/".join(sorted(set(values), key=sort_key))


def seed_labels(runs: pd.DataFrame) -> pd.Series:
    """Each run's seed as a label; runs that record none count as a seed each."""
    if SEED not in runs.columns:
        return pd.Series([f"run {i}" for i in range(len(runs))], index=runs.index, dtype=object)
    seeds = runs[SEED].map(normalise)
    return seeds.where(seeds != MISSING, [f"run {i}" for i in range(len(runs))])


def repeated_seeds(cell: str, seeds: list[str]) -> str | None:
    """A warning when a cell holds a seed more than once (one setting: the same run stored twice)."""
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1}, key=sort_key)
    if not repeated:
        return None
    return (
        f"cell {cell} holds seed {', '.join(repeated)} more than once with one setting: "
        "those runs are averaged and count as one seed"
    )


def refuse_mixed_settings(runs: pd.DataFrame, keys: list[str], advice: str) -> None:
    """Raise for the first group of `keys` whose runs differ in a setting other than the seed."""
    runs = runs.reset_index(drop=True)
    mixed = _mixed_groups(runs, setting_ids(runs), keys)
    if mixed:
        key, group = next(iter(mixed.items()))
        raise fail(
            f"group {describe(keys, key)} mixes runs of {setting_ids(group).nunique()} settings "
            f"(differing: {_differences(group)}): {advice}"
        )


def group_settings(runs: pd.DataFrame) -> dict[str, str]:
    """The setting of a group's runs (one setting: see refuse_mixed_settings), unused plug-in parameters left out."""
    settings = {}
    for column in setting_columns(runs):
        value = setting_values(runs, column).iloc[0]
        if value != MISSING:
            settings[column] = value
    return settings


def stored_setting(settings: Mapping[str, str], name: str) -> str:
    """A setting of group_settings' dict; one left out reads as its hash-neutral value, else 'none'."""
    return settings.get(name, normalise(HASH_NEUTRAL.get(name)))


def setting_order(names: Iterable[str]) -> list[str]:
    """Setting names in RunConfig order; names RunConfig no longer has come last, alphabetically."""
    position = {name: index for index, name in enumerate(_SETTING_FIELDS)}
    return sorted(names, key=lambda name: (position.get(name, len(position)), name))


def settings_text(settings: Mapping[str, str]) -> str:
    return json.dumps(dict(settings), sort_keys=True)


def settings_from_text(text: str) -> dict[str, str]:
    """The settings a baseline group stored; an error if the text is not what settings_text writes."""
    try:
        settings = json.loads(text)
    except (TypeError, ValueError):
        settings = None
    if not isinstance(settings, dict):
        raise fail(f"a baseline group's settings are not a JSON object: {str(text)[:60]!r}")
    return {str(k): str(v) for k, v in settings.items()}
