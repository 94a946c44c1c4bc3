"""The processed-dataset format: the one contract between `preprocess` and the engine.

Layout of `<data-dir>/<name>/processed/`:
- `interactions.parquet`: `user` int32, `item` int32, `split` string (train, valid, test);
  ids are 0-based and contiguous; rows sorted by split, user, item.
- `meta.json`: counts, input checksums, the options that shaped the output and the sha256
  of `interactions.parquet` (its `fingerprint`).
- generic inputs only: `user_map.parquet` and `item_map.parquet` (`original` string,
  `index` int32), mapping the ids back to the input file's ids.
The folder is always written whole (`atomic_dir`): it is either complete or absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mmlbench import __version__
from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import atomic_dir, sha256_file

FORMAT_VERSION = 1
INTERACTIONS_FILE = "interactions.parquet"
META_FILE = "meta.json"
USER_MAP_FILE = "user_map.parquet"
ITEM_MAP_FILE = "item_map.parquet"
# A row's split is stored as a name; in memory it is the index of that name here.
SPLITS = ("train", "valid", "test")
TRAIN, VALID, TEST = range(len(SPLITS))
SOURCE_LIGHTGCN = "lightgcn"
SOURCE_GENERIC = "generic"


@dataclass(frozen=True)
class Interactions:
    """(user, item, split code) rows with 0-based contiguous ids."""

    users: np.ndarray
    items: np.ndarray
    splits: np.ndarray
    n_users: int
    n_items: int

    def counts(self) -> dict[str, int]:
        per_split = np.bincount(self.splits, minlength=len(SPLITS))
        return {split: int(count) for split, count in zip(SPLITS, per_split)}

    def density(self) -> float:
        return len(self.users) / (self.n_users * self.n_items)


@dataclass(frozen=True)
class IdMaps:
    """Original ids as strings, in index order: `users[i]` is the input id of user i."""

    users: np.ndarray
    items: np.ndarray


def _interactions_table(data: Interactions) -> pa.Table:
    order = np.lexsort((data.items, data.users, data.splits))
    split_names = pa.DictionaryArray.from_arrays(
        pa.array(data.splits[order].astype(np.int8)), pa.array(SPLITS, pa.string())
    )
    return pa.table(
        {
            "user": pa.array(data.users[order].astype(np.int32)),
            "item": pa.array(data.items[order].astype(np.int32)),
            "split": split_names.cast(pa.string()),
        }
    )


def _map_table(originals: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "original": pa.array(originals.astype(str), pa.string()),
            "index": pa.array(np.arange(len(originals), dtype=np.int32)),
        }
    )


def write_processed(
    path: Path,
    data: Interactions,
    *,
    name: str,
    source: str,
    inputs: dict[str, str],
    options: dict[str, Any],
    id_maps: IdMaps | None = None,
) -> dict[str, Any]:
    """Write the processed folder atomically and return its meta."""
    with atomic_dir(path) as tmp:
        pq.write_table(_interactions_table(data), tmp / INTERACTIONS_FILE)
        if id_maps is not None:
            pq.write_table(_map_table(id_maps.users), tmp / USER_MAP_FILE)
            pq.write_table(_map_table(id_maps.items), tmp / ITEM_MAP_FILE)
        meta = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "source": source,
            "n_users": data.n_users,
            "n_items": data.n_items,
            "interactions": data.counts(),
            "density": data.density(),
            "inputs": inputs,
            "options": options,
            "fingerprint": sha256_file(tmp / INTERACTIONS_FILE),
            "mmlbench_version": __version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def read_meta(processed_dir: Path) -> dict[str, Any]:
    """The meta.json of a processed folder; a clear error if it is missing or unreadable."""
    path = Path(processed_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MMLBenchError(f"{path} not found; run `mmlbench preprocess` first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MMLBenchError(f"cannot read {path}: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("format_version"), int):
        raise MMLBenchError(f"{path} has no format_version; rerun `mmlbench preprocess --force`")
    return meta


def read_interactions(processed_dir: Path) -> pd.DataFrame:
    """The interactions table: columns user (int32), item (int32), split (train/valid/test)."""
    meta = read_meta(processed_dir)
    if meta["format_version"] > FORMAT_VERSION:
        raise MMLBenchError(
            f"{processed_dir} uses format {meta['format_version']}, newer than this mmlbench "
            f"reads ({FORMAT_VERSION}); upgrade mmlbench"
        )
    return pd.read_parquet(Path(processed_dir) / INTERACTIONS_FILE)


def read_id_map(processed_dir: Path, kind: str) -> pd.DataFrame:
    """The id map of a generic dataset, `kind` 'user' or 'item': columns original, index."""
    file = {"user": USER_MAP_FILE, "item": ITEM_MAP_FILE}[kind]
    path = Path(processed_dir) / file
    if not path.is_file():
        raise MMLBenchError(f"{path} not found: only datasets built with --input have id maps")
    return pd.read_parquet(path)


def current_meta(
    processed_dir: Path, inputs: dict[str, str], options: dict[str, Any]
) -> dict[str, Any] | None:
    """The meta of an intact processed folder built from these inputs and options, else None.

    None means "build it": nothing is there, or it is damaged. A folder built from other
    inputs or options is refused (the caller skips this check on --force): replacing it
    would silently change the data behind runs already trained on it. So is a folder
    written by a newer format, which rebuilding would silently downgrade.
    """
    try:
        meta = read_meta(processed_dir)
    except MMLBenchError:
        return None
    version = meta["format_version"]
    if version > FORMAT_VERSION:
        raise MMLBenchError(
            f"{processed_dir} was written in format {version}, newer than this mmlbench's "
            f"({FORMAT_VERSION}); use --force to overwrite it"
        )
    differences = _differences(meta, inputs, options)
    if differences:
        raise MMLBenchError(
            f"{processed_dir} was built differently ({'; '.join(differences)}); "
            "pass --force to replace it"
        )
    interactions = Path(processed_dir) / INTERACTIONS_FILE
    if version != FORMAT_VERSION or not interactions.is_file():
        return None
    if sha256_file(interactions) != meta.get("fingerprint"):
        return None
    if meta.get("source") == SOURCE_GENERIC and not all(
        (Path(processed_dir) / f).is_file() for f in (USER_MAP_FILE, ITEM_MAP_FILE)
    ):
        return None
    return meta


def _differences(meta: dict[str, Any], inputs: dict[str, str], options: dict[str, Any]) -> list[str]:
    """How the recorded inputs and options differ from these, e.g. `--split: random:0.2 -> temporal:0.2`."""
    old_inputs = meta.get("inputs") or {}
    differences = []
    if sorted(old_inputs) != sorted(inputs):
        differences.append(f"input {', '.join(sorted(old_inputs)) or 'none'} -> {', '.join(sorted(inputs))}")
    else:
        differences += [f"{file} changed" for file in sorted(inputs) if old_inputs[file] != inputs[file]]
    old_options = meta.get("options") or {}
    new_options = json.loads(json.dumps(options))  # as meta.json would hold them
    for key in sorted(old_options.keys() | new_options.keys()):
        old, new = old_options.get(key), new_options.get(key)
        if old != new:
            differences.append(f"--{key.replace('_', '-')}: {_shown(old)} -> {_shown(new)}")
    return differences


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)
