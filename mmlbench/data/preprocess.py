"""`preprocess` as plain functions: raw files in, a processed folder out (format: processed.py).

Both entry points skip the work when the folder on disk was built from the same input
bytes with the same options, and otherwise rebuild it atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmlbench import console
from mmlbench.data import generic, lightgcn
from mmlbench.data.download import mismatch
from mmlbench.data.generic import GenericOptions
from mmlbench.data.processed import (
    SOURCE_GENERIC,
    SOURCE_LIGHTGCN,
    TEST,
    TRAIN,
    VALID,
    IdMaps,
    Interactions,
    current_meta,
    write_processed,
)
from mmlbench.data import registry
from mmlbench.data.registry import DATASETS, DatasetSpec, get_dataset
from mmlbench.data.splits import (
    LEAVE_ONE_OUT,
    TEMPORAL,
    check_fraction,
    latest_holdout,
    random_holdout,
    select_test_rows,
)
from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import sha256_file
from mmlbench.paths import processed_dir, raw_dir

DEFAULT_SEED = 0  # only matters when a split draws random rows


@dataclass(frozen=True)
class PreprocessResult:
    """What `preprocess` did: the folder, its meta, and anything the user should hear about."""

    name: str
    path: Path
    meta: dict[str, Any]
    up_to_date: bool
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def preprocess_dataset(
    name: str,
    data_dir: Path | None = None,
    *,
    valid_fraction: float | None = None,
    sample_users: float | None = None,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    trust_raw: bool = False,
    output_name: str | None = None,
) -> PreprocessResult:
    """Build `<data-dir>/<output_name or name>/processed/` from a registered dataset's raw LightGCN files.

    The raw files must match the registry's size and sha256 unless `trust_raw`. A slice of
    the dataset (`sample_users`) usually gets its own `output_name`, so that the whole
    dataset stays processed beside it.
    """
    spec = get_dataset(name)
    output = name if output_name is None else _check_new_name(output_name, source=name)
    return _build_registered(spec, output, data_dir, valid_fraction, sample_users, seed, force, trust_raw)


def preprocess_slice(name: str, data_dir: Path | None = None, *, force: bool = False, trust_raw: bool = False) -> PreprocessResult:
    """Build a registered slice (registry.SLICES) from its dataset's raw files, with its own options."""
    piece = registry.SLICES[name]  # looked up now: tests register their own
    return _build_registered(
        get_dataset(piece.source), name, data_dir, piece.valid_fraction, piece.sample_users, piece.seed, force, trust_raw
    )


def _build_registered(
    spec: DatasetSpec,
    output: str,
    data_dir: Path | None,
    valid_fraction: float | None,
    sample_users: float | None,
    seed: int,
    force: bool,
    trust_raw: bool,
) -> PreprocessResult:
    name = spec.name
    _check_fractions(valid_fraction, sample_users)
    raw = raw_dir(name, data_dir)
    with console.status(f"{name}: reading and checking the raw files"):
        contents = _read_raw(spec, raw, trust_raw)
    inputs = {file: hashlib.sha256(data).hexdigest() for file, data in contents.items()}
    options = {"valid_fraction": valid_fraction, "seed": seed if valid_fraction or sample_users else None}
    options |= _sample_option(sample_users)
    path = processed_dir(output, data_dir)
    if not force and (meta := current_meta(path, inputs, options)):
        return PreprocessResult(output, path, meta, up_to_date=True)

    with console.status(f"{name}: parsing {lightgcn.TRAIN_FILE} and {lightgcn.TEST_FILE}"):
        train, test = (
            lightgcn.parse_user_lines(str(raw / file), contents[file])
            for file in (lightgcn.TRAIN_FILE, lightgcn.TEST_FILE)
        )
        data = lightgcn.combine(train, test)
        rng = np.random.default_rng(seed)
        data, id_maps = _sampled(data, sample_users, rng)
        data = _with_validation(data, valid_fraction, rng)
    warnings = lightgcn.duplicate_warnings(train, test)
    if sample_users is None:
        warnings += _count_mismatches(spec, data)
    with console.status(f"{output}: writing {path}"):
        meta = write_processed(
            path, data, name=output, source=SOURCE_LIGHTGCN, inputs=inputs, options=options, id_maps=id_maps
        )
    return PreprocessResult(output, path, meta, up_to_date=False, warnings=tuple(warnings))


def preprocess_file(
    input_path: Path,
    name: str,
    options: GenericOptions,
    data_dir: Path | None = None,
    *,
    valid_fraction: float | None = None,
    sample_users: float | None = None,
    seed: int = DEFAULT_SEED,
    force: bool = False,
) -> PreprocessResult:
    """Build `<data-dir>/<name>/processed/` (with id maps) from a CSV, TSV or Parquet file."""
    _check_new_name(name)
    _check_fractions(valid_fraction, sample_users)
    input_path = Path(input_path)
    with console.status(f"{name}: hashing {input_path.name}"):
        inputs = {input_path.name: _sha256_input(input_path)}
    all_options = {
        **options.as_dict(),
        "valid_fraction": valid_fraction,
        "seed": None if _ordered_by_time(options) and sample_users is None else seed,
        **_sample_option(sample_users),
    }
    path = processed_dir(name, data_dir)
    if not force and (meta := current_meta(path, inputs, all_options)):
        return PreprocessResult(name, path, meta, up_to_date=True)

    with console.status(f"{name}: reading {input_path.name}"):
        table, notes = _clean_table(input_path, options)
    rng = np.random.default_rng(seed)
    n_users, n_items = len(table.user_ids), len(table.item_ids)
    test = select_test_rows(options.split, table.users, table.items, n_users, table.times, rng)
    splits = np.where(test, TEST, TRAIN).astype(np.int8)
    data = Interactions(table.users, table.items, splits, n_users, n_items)
    times = table.times
    if sample_users is not None:
        data, kept = _users_sample(data, sample_users, rng)
        table = dataclasses.replace(table, user_ids=table.user_ids[kept.users], item_ids=table.item_ids[kept.items])
        times = None if times is None else times[kept.rows]
    data = _with_validation(data, valid_fraction, rng, times if _ordered_by_time(options) else None)
    warnings = [] if test.any() else ["the test split is empty: no user has two or more interactions"]
    with console.status(f"{name}: writing {path}"):
        meta = write_processed(
            path,
            data,
            name=name,
            source=SOURCE_GENERIC,
            inputs=inputs,
            options=all_options,
            id_maps=IdMaps(table.user_ids, table.item_ids),
        )
    return PreprocessResult(name, path, meta, up_to_date=False, warnings=tuple(warnings), notes=tuple(notes))


def _read_raw(spec: DatasetSpec, raw: Path, trust_raw: bool) -> dict[str, bytes]:
    paths = [raw / file.name for file in spec.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MMLBenchError(
            f"raw files of '{spec.name}' not found ({', '.join(missing)}); "
            f"run `mmlbench download {spec.name}` first"
        )
    try:
        if not trust_raw:
            _check_registered(spec, raw)
        return {p.name: p.read_bytes() for p in paths}
    except OSError as exc:
        raise MMLBenchError(f"cannot read {exc.filename}: {exc.strerror}") from None


def _check_registered(spec: DatasetSpec, raw: Path) -> None:
    """Refuse raw files that `download --list` would call corrupt (size or sha256 off the registry)."""
    for file in spec.files:
        problem = mismatch(file, raw / file.name)
        if problem:
            kind, detail = problem
            raise MMLBenchError(
                f"raw file {raw / file.name} is corrupt ({kind}: {detail}); run `mmlbench download "
                f"{spec.name} --force` to fetch it again, or pass --trust-raw if you changed it on purpose"
            )


def _sha256_input(path: Path) -> str:
    generic.check_input(path)
    try:
        return sha256_file(path)
    except OSError as exc:
        raise MMLBenchError(f"cannot read {path}: {exc.strerror}") from None


def _check_new_name(name: str, *, source: str | None = None) -> str:
    """`name` if it can name a processed dataset of the user's (`source`: the registered one it comes from).

    Letters of any alphabet (naïve-données), digits, '.', '_' and '-': a folder name everywhere.
    """
    if not (name[:1].isalnum() and all(char.isalnum() or char in "._-" for char in name)):
        allowed = "letters (of any alphabet), digits, '.', '_' or '-', starting with a letter or digit"
        raise MMLBenchError(f"--name '{name}' must be {allowed}")
    if name in DATASETS and name != source:
        raise MMLBenchError(f"--name '{name}' is a registered dataset; choose another name for your data")
    if name in registry.SLICES:
        raise MMLBenchError(
            f"--name '{name}' is a registered slice ({registry.SLICES[name].describe()}): `mmlbench preprocess {name}` "
            "builds it; choose another name for yours"
        )
    return name


def _check_fractions(valid_fraction: float | None, sample_users: float | None) -> None:
    if valid_fraction is not None:
        check_fraction(valid_fraction, "--valid-fraction")
    if sample_users is not None and not 0.0 < sample_users <= 1.0:  # also rejects NaN
        raise MMLBenchError(f"--sample-users must be more than 0 and at most 1, got {sample_users:g}")


def _sample_option(sample_users: float | None) -> dict[str, float]:
    """The option as meta.json records it: absent when not sampling, so older folders compare equal."""
    return {} if sample_users is None else {"sample_users": sample_users}


@dataclass(frozen=True)
class Kept:
    """What a users' sample kept of the full data: row positions, old user ids, old item ids (sorted)."""

    rows: np.ndarray
    users: np.ndarray
    items: np.ndarray


def _users_sample(data: Interactions, fraction: float, rng: np.random.Generator) -> tuple[Interactions, Kept]:
    """Keep round(fraction * users) users drawn without replacement, with all their rows.

    Users and the items that still have a row are renumbered 0.. in their old order, so the
    ids stay contiguous; `Kept` maps the new ids back to the old ones.
    """
    count = max(1, int(np.floor(fraction * data.n_users + 0.5)))
    users = np.sort(rng.choice(data.n_users, size=count, replace=False))
    rows = np.flatnonzero(np.isin(data.users, users))
    items = np.unique(data.items[rows])
    sample = Interactions(
        np.searchsorted(users, data.users[rows]),
        np.searchsorted(items, data.items[rows]),
        data.splits[rows],
        len(users),
        len(items),
    )
    return sample, Kept(rows, users, items)


def _sampled(
    data: Interactions, fraction: float | None, rng: np.random.Generator
) -> tuple[Interactions, IdMaps | None]:
    """A registered dataset's users' sample and its id maps (to the LightGCN ids), or the data as it is."""
    if fraction is None:
        return data, None
    sample, kept = _users_sample(data, fraction, rng)
    return sample, IdMaps(kept.users, kept.items)


def _ordered_by_time(options: GenericOptions) -> bool:
    """Whether test and validation rows are each user's latest (else they are drawn with the seed)."""
    kind = options.split.kind
    return kind == TEMPORAL or (kind == LEAVE_ONE_OUT and options.time_col is not None)


def _clean_table(input_path: Path, options: GenericOptions) -> tuple[generic.Table, list[str]]:
    """Read, deduplicate, drop low ratings, k-core and renumber; notes say what was removed."""
    table, duplicates = generic.deduplicate(generic.load_table(input_path, options))
    table = generic.filter_ratings(table, options)
    before = len(table.users)
    table, passes = generic.k_core(table, options.min_user_interactions, options.min_item_interactions)
    if not len(table.users):
        raise MMLBenchError(
            f"the k-core filter (users >= {options.min_user_interactions}, items >= "
            f"{options.min_item_interactions} interactions) removed every interaction; lower the minimums"
        )
    notes = []
    if duplicates:
        notes.append(f"collapsed {duplicates:,} duplicate (user, item) row(s)")
    if passes:
        notes.append(f"k-core removed {before - len(table.users):,} interaction(s) in {passes} pass(es)")
    return generic.compact_ids(table), notes


def _with_validation(
    data: Interactions,
    valid_fraction: float | None,
    rng: np.random.Generator,
    times: np.ndarray | None = None,
) -> Interactions:
    """Move round(valid_fraction * n_u) train rows of each user to valid (one always stays).

    With `times` (a split ordered by time) they are the user's latest train rows, so validation
    sits between train and test in time; otherwise they are drawn at random.
    """
    if valid_fraction is None:
        return data
    train_rows = np.flatnonzero(data.splits == TRAIN)
    users = data.users[train_rows]
    if times is None:
        moved = random_holdout(users, data.n_users, valid_fraction, rng)
    else:
        moved = latest_holdout(users, data.items[train_rows], times[train_rows], data.n_users, valid_fraction)
    splits = data.splits.copy()
    splits[train_rows[moved]] = VALID
    return dataclasses.replace(data, splits=splits)


def _count_mismatches(spec: DatasetSpec, data: Interactions) -> list[str]:
    counts = data.counts()
    found = {
        "users": data.n_users,
        "items": data.n_items,
        "train": counts["train"] + counts["valid"],  # validation rows come out of train
        "test": counts["test"],
    }
    expected = {"users": spec.users, "items": spec.items, "train": spec.train, "test": spec.test}
    return [
        f"{spec.name}: {key} {found[key]:,} differs from the registry's {expected[key]:,}"
        for key in found
        if found[key] != expected[key]
    ]
