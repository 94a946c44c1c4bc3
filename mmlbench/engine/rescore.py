"""Re-scoring a stored run: rebuild its model from model.pt, evaluate, export top-K lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmlbench.config import RunConfig
from mmlbench.data.dataset import load_dataset
from mmlbench.engine.device import resolve_device
from mmlbench.engine.evaluator import Evaluation, evaluate
from mmlbench.engine.models import build_model
from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import atomic_file
from mmlbench.report import store

SPLITS = ("test", "valid")


def rescore(
    run_dir: Path,
    *,
    ks: tuple[int, ...] | None,
    split: str,
    device: str,
    data_dir: Path | None,
    eval_batch_users: int | None,
    keep_top: bool,
) -> tuple[RunConfig, Evaluation]:
    """Evaluate a stored checkpoint on `split` at cut-offs `ks` (default: the run's own)."""
    if split not in SPLITS:
        raise MMLBenchError(f"--split must be one of {', '.join(SPLITS)}, got '{split}'")
    row = store.read_run(run_dir)
    config = RunConfig.from_row(row)
    ks = tuple(sorted(set(ks))) if ks else config.ks
    if min(ks) < 1:
        raise MMLBenchError(f"--k needs positive cut-offs, got {list(ks)}")
    checkpoint = _load_checkpoint(run_dir)
    target = resolve_device(device)
    data = load_dataset(config.dataset, data_dir, target)
    if checkpoint.get("dataset_fingerprint") != data.fingerprint:
        raise MMLBenchError(
            f"the processed '{config.dataset}' data changed since run {row['run_id']} was trained "
            "(fingerprints differ); re-scoring it would mix datasets"
        )
    if not data.splits[split].size:
        raise MMLBenchError(f"'{config.dataset}' has no {split} split")
    model = build_model(config, data.n_users, data.n_items, data.history).to(target)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise MMLBenchError(f"{run_dir / store.CHECKPOINT_FILE} does not fit this run's model: {exc}") from None
    evaluation = evaluate(
        model, data, split, ks, cosine=config.score == "cosine", batch_users=eval_batch_users, keep_top=keep_top
    )
    return config, evaluation


def _load_checkpoint(run_dir: Path) -> dict:
    path = Path(run_dir) / store.CHECKPOINT_FILE
    if not path.is_file():
        raise MMLBenchError(f"run {run_dir.name} has no checkpoint ({path} is missing)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise MMLBenchError(f"the checkpoint {path} is corrupt or unreadable: {type(exc).__name__}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise MMLBenchError(f"the checkpoint {path} is corrupt or unreadable: no state_dict")
    return checkpoint


def write_top_k(path: Path, evaluation: Evaluation, k: int) -> int:
    """Write the top-k lists as Parquet rows (user, rank, item, score); returns the row count."""
    assert evaluation.top_items is not None and evaluation.user_ids is not None
    items = evaluation.top_items[:, :k].numpy()
    scores = evaluation.top_scores[:, :k].numpy()
    users = evaluation.user_ids.numpy()
    frame = pd.DataFrame(
        {
            "user": np.repeat(users, items.shape[1]).astype(np.int32),
            "rank": np.tile(np.arange(1, items.shape[1] + 1, dtype=np.int16), len(users)),
            "item": items.reshape(-1).astype(np.int32),
            "score": scores.reshape(-1).astype(np.float32),
        }
    )
    with atomic_file(Path(path)) as tmp:
        frame.to_parquet(tmp, index=False)
    return len(frame)


def save_evaluation(run_dir: Path, split: str, ks: tuple[int, ...], evaluation: Evaluation, device: str) -> Path:
    """Keep the re-scored metrics beside the run as eval-<split>.parquet (one row)."""
    row = {"split": split, "ks": ",".join(map(str, ks)), "users": evaluation.users, "device": device}
    row.update(evaluation.metrics)
    path = Path(run_dir) / f"eval-{split}.parquet"
    with atomic_file(path) as tmp:
        pd.DataFrame([row]).to_parquet(tmp, index=False)
    return path
