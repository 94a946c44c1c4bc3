"""Small processed datasets with planted structure, written in the processed format directly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd


def planted_interactions(
    n_users: int = 120, n_items: int = 60, clusters: int = 4, per_user: int = 12, seed: int = 0, valid: bool = False
) -> pd.DataFrame:
    """Users of cluster c mostly interact with the items of block c; a fifth of each user's items go to test."""
    rng = np.random.default_rng(seed)
    block = n_items // clusters
    rows = []
    for user in range(n_users):
        cluster = user % clusters
        own = np.arange(cluster * block, (cluster + 1) * block)
        noise = rng.choice(n_items, size=2, replace=False)
        items = np.unique(np.concatenate([rng.choice(own, size=per_user - 2, replace=False), noise]))
        rng.shuffle(items)
        n_test = max(1, len(items) // 5)
        n_valid = n_test if valid else 0
        for position, item in enumerate(items):
            split = "test" if position < n_test else "valid" if position < n_test + n_valid else "train"
            rows.append((user, int(item), split))
    return pd.DataFrame(rows, columns=["user", "item", "split"]).astype({"user": "int32", "item": "int32"})


def write_processed(data_dir: Path, name: str, frame: pd.DataFrame, n_users: int, n_items: int) -> Path:
    folder = Path(data_dir) / name / "processed"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / "interactions.parquet", index=False)
    fingerprint = hashlib.sha256((folder / "interactions.parquet").read_bytes()).hexdigest()
    counts = frame["split"].value_counts().to_dict()
    meta = {
        "format_version": 1,
        "name": name,
        "source": "synthetic",
        "n_users": n_users,
        "n_items": n_items,
        "interactions": {split: int(counts.get(split, 0)) for split in ("train", "valid", "test")},
        "fingerprint": fingerprint,
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def make_planted(data_dir: Path, name: str = "planted", **kwargs) -> Path:  # noqa: ANN003
    frame = planted_interactions(**kwargs)
    return write_processed(data_dir, name, frame, kwargs.get("n_users", 120), kwargs.get("n_items", 60))
