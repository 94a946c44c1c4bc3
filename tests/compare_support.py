"""Hand-made run stores with known numbers, for the `compare` tests.

The standard store holds loss in {bpr, ccl, mmcl} x negatives in {10, 100} x seeds {0, 1, 2}
on 40 users. Per-user recall@20 / ndcg@20 values are planted so that:
- mmcl beats ccl clearly at 10 negatives (significant),
- mmcl equals ccl on average at 100 negatives, with differences of +d, -d, +d, ... (p = 1),
- bpr is clearly below ccl everywhere (significant).
Each run's metric is the mean of its per-user values, as the engine writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmlbench.store import RunRecord, write_run

USERS = 40
METRICS = ("recall@20", "ndcg@20")
LOSSES = ("bpr", "ccl", "mmcl")
NEGATIVES = (10, 100)
SEEDS = (0, 1, 2)


def per_user_values(loss: str, negatives: int, seed: int, metric: str) -> np.ndarray:
    """The planted per-user values of one run (deterministic); other negative counts than NEGATIVES work too."""
    column = NEGATIVES.index(negatives) if negatives in NEGATIVES else negatives
    rng = np.random.default_rng(1000 * column + 10 * seed + METRICS.index(metric))
    base = rng.uniform(0.1, 0.3, USERS)  # shared by every loss of this (negatives, seed)
    if loss == "bpr":
        return base - 0.05 + rng.uniform(-0.01, 0.01, USERS)
    if loss == "mmcl" and negatives == 10:
        return base + 0.02 + rng.uniform(0, 0.01, USERS)
    if loss == "mmcl":
        return base + np.where(np.arange(USERS) % 2 == 0, 0.004, -0.004)
    return base


def run_row(run_id: str, **fields: object) -> dict[str, object]:
    """A run.parquet row with every column the engine writes, overridable by `fields`."""
    row: dict[str, object] = {
        "run_id": run_id, "status": "completed", "error": None, "protocol": "test-as-validation",
        "dataset": "gowalla", "model": "mf", "loss": "ccl", "negatives": 10, "sampler": "uniform",
        "embedding_dim": 64, "batch_size": 256, "lr": 1e-4, "l2": 1e-8, "epochs": 3, "seed": 0,
        "margin": 0.9, "negative_weight": 150.0, "margins": "", "margin_weights": "",
        "temperature": 0.1, "config_hash": run_id, "dataset_sha256": "abc", "git_commit": "deadbeef",
        "mmlbench_version": "0.1.0", "torch_version": "2.4", "device": "cpu", "device_name": "cpu",
        "epochs_run": 3, "best_epoch": 2, "epoch_seconds_median": 1.5, "eval_seconds_median": 0.5,
        "train_seconds_total": 4.5, "samples_per_second": 1000.0, "peak_memory_bytes": 2**29,
    }  # fmt: skip
    row.update(fields)
    setting = {k: v for k, v in row.items() if k in ("dataset", "model", "loss", "negatives", "lr")}
    row.setdefault("setting_hash", "-".join(str(v) for v in setting.values()))
    return row


def add_run(
    results: Path,
    loss: str,
    negatives: int,
    seed: int,
    *,
    run_id: str | None = None,
    with_per_user: bool = True,
    with_curve: bool = True,
    **fields: object,
) -> None:
    """Write one run whose metrics are the means of its planted per-user values."""
    per_user = pd.DataFrame({"user": np.arange(USERS, dtype="int32"), "n_test": np.full(USERS, 5, "int32")})
    for metric in METRICS:
        per_user[metric] = per_user_values(loss, negatives, seed, metric)
    means = {metric: float(per_user[metric].mean()) for metric in METRICS}
    run_id = run_id or f"{loss}-{negatives}-s{seed}"
    row = run_row(run_id, **{"loss": loss, "negatives": negatives, "seed": seed, **means, **fields})
    curve = pd.DataFrame(
        {"epoch": [1, 2, 3], "loss": [0.9, 0.6, 0.5], "epoch_seconds": [1.5] * 3, "eval_seconds": [0.5] * 3,
         "recall@20": [means["recall@20"] * 0.8, np.nan, means["recall@20"]],
         "ndcg@20": [means["ndcg@20"] * 0.8, np.nan, means["ndcg@20"]]}
    )  # fmt: skip
    write_run(
        results,
        RunRecord(row=row, curve=curve if with_curve else None, per_user=per_user if with_per_user else None),
    )


def make_store(results: Path, **options: object) -> Path:
    """The standard store (see the module docstring)."""
    for loss in LOSSES:
        for negatives in NEGATIVES:
            for seed in SEEDS:
                add_run(results, loss, negatives, seed, **options)
    return results


def cell_values(loss: str, negatives: int, metric: str) -> np.ndarray:
    """The run-level metric of each seed of a cell."""
    return np.array([per_user_values(loss, negatives, s, metric).mean() for s in SEEDS])


def user_means(loss: str, negatives: int, metric: str) -> np.ndarray:
    """Per-user metric averaged over a cell's seeds: what the paired tests compare."""
    return np.mean([per_user_values(loss, negatives, s, metric) for s in SEEDS], axis=0)
