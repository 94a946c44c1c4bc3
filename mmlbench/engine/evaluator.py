"""Full-ranking evaluation: every item scored for every user, the user's known items masked.

One top-k for the largest K feeds every metric at every K, the accuracy metrics and the
beyond-accuracy ones (engine.exposure) alike. Ties are broken by item id (lower id ranks
first), so the numbers do not depend on the evaluation batch size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mmlbench.data.dataset import InteractionData
from mmlbench.engine.exposure import Exposure
from mmlbench.engine.models import refresh
from mmlbench.engine.scoring import unit
from mmlbench.errors import MMLBenchError

# Bytes of one batch's score matrix: bounds memory whatever the number of users.
_SCORE_BYTES = {"cpu": 256 << 20, "cuda": 4 << 30}


@dataclass
class Evaluation:
    """Mean metrics over users with items in the split, optional per-user values and top-K lists."""

    metrics: dict[str, float]
    seconds: float
    users: int
    per_user: pd.DataFrame | None = None
    user_ids: Tensor | None = None  # [users] on the CPU, with the top-K lists
    top_items: Tensor | None = None  # [users, K_max] on the CPU, when asked for
    top_scores: Tensor | None = None


def masked_splits(split: str) -> tuple[str, ...]:
    """Known interactions hidden from the ranking: train for valid; train and valid for test."""
    return ("train",) if split == "valid" else ("train", "valid")


def rank_top(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k per row in canonical order: score descending, then item id ascending.

    torch.topk does not order equal scores; a row whose k-th and (k+1)-th scores are
    equal (a tie across the cut) falls back to a stable full sort of that row only.
    """
    k_probe = min(k + 1, scores.shape[1])
    values, items = torch.topk(scores, k_probe, dim=1)
    items, by_item = items.sort(dim=1)
    values = values.gather(1, by_item)
    values, by_value = values.sort(dim=1, descending=True, stable=True)
    items = items.gather(1, by_value)
    if k_probe > k:
        tied = torch.nonzero(values[:, k - 1] == values[:, k]).flatten()
        if tied.numel():
            full_values, full_items = torch.sort(scores[tied], dim=1, descending=True, stable=True)
            values[tied], items[tied] = full_values[:, :k_probe], full_items[:, :k_probe]
    return values[:, :k], items[:, :k]


def metrics_from_hits(hits: Tensor, n_relevant: Tensor, ks: tuple[int, ...]) -> dict[str, Tensor]:
    """Per-user metrics from a [users, K_max] hit matrix (float) and relevant-item counts."""
    k_max = hits.shape[1]
    positions = torch.arange(1, k_max + 1, device=hits.device, dtype=hits.dtype)
    discount = 1.0 / torch.log2(positions + 1)
    ideal = torch.cumsum(discount, 0)
    found = torch.cumsum(hits, 1)
    gains = torch.cumsum(hits * discount, 1)
    reciprocal = torch.cummax(hits / positions, 1).values
    n_relevant = n_relevant.to(hits.dtype)
    out: dict[str, Tensor] = {}
    for k in ks:
        column = min(k, k_max) - 1
        ideal_k = ideal[(torch.clamp(n_relevant, max=min(k, k_max)) - 1).long()]
        out[f"recall@{k}"] = found[:, column] / n_relevant
        out[f"ndcg@{k}"] = gains[:, column] / ideal_k
        out[f"hitrate@{k}"] = (found[:, column] > 0).to(hits.dtype)
        out[f"precision@{k}"] = found[:, column] / k
        out[f"mrr@{k}"] = reciprocal[:, column]
    return out


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    data: InteractionData,
    split: str,
    ks: tuple[int, ...],
    *,
    cosine: bool = True,
    batch_users: int | None = None,
    per_user: bool = False,
    keep_top: bool = False,
    progress: Callable[[int, int], None] | None = None,
    head_fraction: float = 0.2,
) -> Evaluation:
    """Score all items for every user with items in `split`; average the metrics over them.

    `head_fraction` is tail@K's cut (engine.exposure). `progress(users done, users)` is
    called after each batch with host-side counts only: it never waits for the device.
    """
    started = time.perf_counter()
    target = data.splits[split]
    users = target.users()
    if users.numel() == 0:
        raise MMLBenchError(f"the {split} split of '{data.name}' is empty: nothing to evaluate")
    was_training = model.training
    model.eval()
    refresh(model)  # LightGCN propagates here, once for the whole evaluation
    try:
        items = model.item_table()
        items = unit(items) if cosine else items
        _check_finite(items, "item")
        k_max = min(max(ks), data.n_items)
        step = batch_users or _default_batch(data.n_items, items.device)
        buffer = torch.empty((min(step, users.numel()), data.n_items), device=items.device, dtype=items.dtype)
        exposure = Exposure(data.item_counts(), head_fraction, ks, k_max)
        hits_parts, exposure_parts, tops, top_scores = [], [], [], []
        for start in range(0, users.numel(), step):
            batch = users[start : start + step]
            scores = buffer[: batch.numel()]
            user_vectors = model.user_vectors(batch, normalize=cosine)
            _check_finite(user_vectors, "user")
            torch.mm(user_vectors, items.T, out=scores)
            for hidden in masked_splits(split):
                rows, cols = data.splits[hidden].pairs_of(batch)
                scores[rows, cols] = float("-inf")
            values, top = rank_top(scores, k_max)
            keys = batch.unsqueeze(1) * data.n_items + top
            found = torch.searchsorted(target.keys, keys).clamp_max_(target.size - 1)
            hits_parts.append((target.keys[found] == keys).double())
            exposure_parts.append(exposure.add(top, values != float("-inf")))  # masked items are not listed
            if keep_top:
                tops.append(top.cpu())
                top_scores.append(values.cpu())
            if progress is not None:
                progress(start + batch.numel(), users.numel())
        hits = torch.cat(hits_parts)
        relevant = target.counts()[users]
        per_user_values = metrics_from_hits(hits, relevant, ks)
        per_user_values |= {name: torch.cat([part[name] for part in exposure_parts]) for name in exposure_parts[0]}
        totals = exposure.totals()
    finally:
        model.train(was_training)
    if items.is_cuda:
        torch.cuda.synchronize(items.device)
    means = {name: float(values.mean()) for name, values in per_user_values.items()} | totals
    evaluation = Evaluation(means, time.perf_counter() - started, int(users.numel()))
    if per_user:
        evaluation.per_user = _per_user_frame(users, relevant, per_user_values)
    if keep_top:
        evaluation.user_ids = users.cpu()
        evaluation.top_items, evaluation.top_scores = torch.cat(tops), torch.cat(top_scores)
    return evaluation


def _default_batch(n_items: int, device: torch.device) -> int:
    budget = _SCORE_BYTES.get(device.type, _SCORE_BYTES["cpu"])
    return max(1, budget // (4 * max(n_items, 1)))


def _check_finite(vectors: Tensor, side: str) -> None:
    if not bool(torch.isfinite(vectors).all()):
        raise MMLBenchError(f"the model's {side} vectors hold NaN or inf: training diverged (try a lower --lr)")


def _per_user_frame(users: Tensor, counts: Tensor, values: dict[str, Tensor]) -> pd.DataFrame:
    frame = {"user": users.cpu().numpy().astype(np.int32), "n_test": counts.cpu().numpy().astype(np.int32)}
    frame.update({name: column.cpu().numpy() for name, column in values.items()})
    return pd.DataFrame(frame)
