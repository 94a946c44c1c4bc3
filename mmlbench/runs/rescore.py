"""Re-scoring a stored run: rebuild its model from model.pt, evaluate, export top-K lists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.data.dataset import load_dataset, require_processed
from mmlbench.data.processed import SOURCE_GENERIC, IdMaps, read_id_map, read_meta
from mmlbench.engine.device import resolve_device
from mmlbench.engine.evaluator import Evaluation, evaluate
from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import atomic_file, writable_folder
from mmlbench.metrics import is_metric_column
from mmlbench.runs import build

SPLITS = ("test", "valid")
TOPK_SUFFIXES = (".csv", ".parquet")
# How far a re-scored metric may be from the stored one for the new ones to join the run: far
# below one user's share of a mean (1 / users), so a changed ranking is never papered over.
SAME_METRIC = 1e-6


class Rescored(NamedTuple):
    config: RunConfig
    evaluation: Evaluation
    originals: IdMaps | None  # the input ids of users and items, with the top-K lists
    status: str  # the stored run's status: completed, interrupted, ...


def rescore(
    run_dir: Path,
    *,
    ks: tuple[int, ...] | None,
    split: str,
    device: str,
    data_dir: Path | None,
    eval_batch_users: int | None,
    keep_top: bool,
    progress: Callable[[int, int], None] | None = None,
) -> Rescored:
    """Evaluate a stored checkpoint on `split` at cut-offs `ks` (default: the run's own)."""
    if split not in SPLITS:
        raise MMLBenchError(f"--split must be one of {', '.join(SPLITS)}, got '{split}'")
    row = store.read_run(run_dir)
    config = RunConfig.from_row(row)
    ks = tuple(sorted(set(ks))) if ks else config.ks
    if min(ks) < 1:
        raise MMLBenchError(f"--k needs positive cut-offs, got {list(ks)}")
    checkpoint = load_checkpoint(store.verified_checkpoint(run_dir, row))
    target = resolve_device(device)
    data = load_dataset(config.dataset, data_dir, target)
    if checkpoint.get("dataset_fingerprint") != data.fingerprint:
        raise MMLBenchError(
            f"the processed '{config.dataset}' data changed since run {row['run_id']} was trained "
            "(fingerprints differ); re-scoring it would mix datasets"
        )
    if not data.splits[split].size:
        raise MMLBenchError(f"'{config.dataset}' has no {split} split")
    if max(ks) > data.n_items:
        raise MMLBenchError(
            f"K = {max(ks)} is more than the {data.n_items} items of '{config.dataset}': "
            f"give --k values of at most {data.n_items}"
        )
    originals = original_ids(config.dataset, data_dir, data.n_users, data.n_items) if keep_top else None
    model = build.model(config, data, target)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise MMLBenchError(f"{run_dir / store.CHECKPOINT_FILE} does not fit this run's model: {exc}") from None
    evaluation = evaluate(
        model, data, split, ks, cosine=config.score == "cosine", batch_users=eval_batch_users, keep_top=keep_top,
        progress=progress, head_fraction=config.head_fraction, per_user=True,
    )
    return Rescored(config, evaluation, originals, str(row.get("status")))


@dataclass(frozen=True)
class Evaluated:
    """A stored run re-scored: its metrics, and what was written (`export`: the top-K file and its
    rows; `saved`: eval-<split>.parquet; `added`: metrics the run's row lacked, added to it (to
    `added_to`), or `not_added` saying why none were; `read_only`: the run folder takes no file)."""

    run_dir: Path
    status: str
    split: str
    ks: tuple[int, ...]
    evaluation: Evaluation
    export: tuple[Path, int] | None = None
    saved: Path | None = None
    added: list[str] = field(default_factory=list)
    added_to: str = f"{store.RUN_FILE}, per-user ones to {store.PER_USER_FILE}"
    not_added: str = ""
    read_only: bool = False


def evaluate_stored(
    run_dir: Path, *, ks: tuple[int, ...] | None, split: str, device: str, data_dir: Path | None,
    eval_batch_users: int | None, export_topk: Path | None, progress: Callable[[int, int], None] | None, writable: bool,
) -> Evaluated:
    """`rescore` the run, export its top-K lists, and where the folder is `writable` keep the
    metrics beside it (save_evaluation) and, on test, add the new ones to it (add_to_run)."""
    result = rescore(
        run_dir, ks=ks, split=split, device=device, data_dir=data_dir,
        eval_batch_users=eval_batch_users, keep_top=export_topk is not None, progress=progress,
    )
    ks = ks or result.config.ks
    evaluation, export, saved, added, not_added = result.evaluation, None, None, [], ""
    if export_topk is not None:
        export = (export_topk, write_top_k(export_topk, evaluation, max(ks), result.originals))
    if writable:
        saved = save_evaluation(run_dir, split, ks, evaluation, device)
        if split == "test":  # the run row's metrics are test metrics
            added, not_added = add_to_run(run_dir, evaluation)
    return Evaluated(run_dir, result.status, split, ks, evaluation, export, saved, added, not_added=not_added, read_only=not writable)


def add_to_run(run_dir: Path, evaluation: Evaluation) -> tuple[list[str], str]:
    """Add the test metrics that the run's row lacks (those newer than the run, or at other K)
    to run.parquet, and their per-user values to per_user.parquet: (the columns added, '') or
    ([], why none were). Only when every metric the row already holds that was re-scored
    agrees with the stored value, so the checkpoint demonstrably gives the run's numbers.
    """
    row = store.read_run(run_dir)
    shared = [name for name in evaluation.metrics if name in row and is_metric_column(name)]
    new = [name for name in evaluation.metrics if name not in row]
    if not new:
        return [], ""
    if not shared:
        return [], f"none of the run's stored metrics was re-scored (give --k with one of its cut-offs): {', '.join(new)} not added to it"
    worst = max(shared, key=lambda name: abs(float(row[name]) - evaluation.metrics[name]))
    gap = abs(float(row[worst]) - evaluation.metrics[worst])
    if not gap <= SAME_METRIC:  # NaN too
        return [], (
            f"{worst} re-scored is {evaluation.metrics[worst]:.6f}, stored {float(row[worst]):.6f} (the checkpoint or "
            f"the device differs from the run's): {', '.join(new)} not added to the run"
        )
    per_user = None
    if evaluation.per_user is not None and (Path(run_dir) / store.PER_USER_FILE).is_file():
        per_user = evaluation.per_user[["user", *(name for name in new if name in evaluation.per_user.columns)]]
    store.add_columns(run_dir, {name: evaluation.metrics[name] for name in new}, per_user)
    return new, ""


def load_checkpoint(path: Path) -> dict:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise MMLBenchError(f"the checkpoint {path} is corrupt or unreadable: {type(exc).__name__}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise MMLBenchError(f"the checkpoint {path} is corrupt or unreadable: no state_dict")
    return checkpoint


def original_ids(dataset: str, data_dir: Path | None, n_users: int, n_items: int) -> IdMaps:
    """The input ids of every user and item, as strings.

    A dataset preprocessed from a generic file keeps them in its id maps; the others
    (LightGCN files, already 0-based and contiguous) have identity ids.
    """
    folder = require_processed(dataset, data_dir)
    if read_meta(folder).get("source") != SOURCE_GENERIC:
        return IdMaps(np.arange(n_users).astype(str), np.arange(n_items).astype(str))
    return IdMaps(_originals(folder, "user", n_users), _originals(folder, "item", n_items))


def _originals(folder: Path, kind: str, count: int) -> np.ndarray:
    try:
        frame = read_id_map(folder, kind).sort_values("index")
    except MMLBenchError:
        raise
    except Exception as exc:  # a damaged Parquet file: pyarrow raises several types
        raise MMLBenchError(f"cannot read the {kind} id map in {folder}: {exc}") from None
    if not np.array_equal(frame["index"].to_numpy(), np.arange(count)):
        raise MMLBenchError(
            f"the {kind} id map in {folder} does not cover the {count} {kind}s of meta.json; "
            "rerun `mmlbench preprocess --force`"
        )
    return frame["original"].to_numpy(dtype=str)


def check_top_k_path(path: Path) -> None:
    """Refuse an export file of a format the export cannot write, or in a folder it cannot write."""
    if Path(path).suffix.lower() not in TOPK_SUFFIXES:
        raise MMLBenchError(f"--export-topk {path}: the file name must end in .csv or .parquet")
    if not writable_folder(Path(path).parent):
        raise MMLBenchError(f"--export-topk {path}: cannot create files in {Path(path).parent}")


def write_top_k(path: Path, evaluation: Evaluation, k: int, originals: IdMaps) -> int:
    """Write the top-k lists as CSV or Parquet rows (by the suffix); returns the row count.

    Columns: user, rank, item, score (internal ids), original_user, original_item (input ids).
    Seen items are masked at -inf and sort last; they are left out, so a user with fewer
    than k unseen items gets a shorter list.
    """
    assert evaluation.top_items is not None and evaluation.top_scores is not None and evaluation.user_ids is not None
    items = evaluation.top_items[:, :k].numpy()
    scores = evaluation.top_scores[:, :k].numpy()
    rows, positions = np.nonzero(~np.isneginf(scores))  # row-major: by user, then rank
    users = evaluation.user_ids.numpy()[rows]
    items = items[rows, positions]
    frame = pd.DataFrame(
        {
            "user": users.astype(np.int32),
            "rank": (positions + 1).astype(np.int32),
            "item": items.astype(np.int32),
            "score": scores[rows, positions].astype(np.float32),
            "original_user": originals.users[users],
            "original_item": originals.items[items],
        }
    )
    check_top_k_path(path)
    with atomic_file(Path(path)) as tmp:
        if Path(path).suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
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
