"""Full-ranking metrics against a brute-force reference; ties; batch-size independence."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mmlbench.data.dataset import load_dataset
from mmlbench.engine.evaluator import evaluate, metrics_from_hits, rank_top
from synthetic import write_processed

N_USERS, N_ITEMS, KS = 30, 25, (1, 3, 5, 10)


class FixedScores(torch.nn.Module):
    """A 'model' whose dot-product scores are a given matrix: identity items, score rows as users."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores
        self.items = torch.eye(scores.shape[1])

    def item_table(self) -> torch.Tensor:
        return self.items

    def user_vectors(self, users: torch.Tensor, normalize: bool = False):
        return self.scores[users]


def _random_splits(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(N_USERS):
        items = rng.permutation(N_ITEMS)
        n_train, n_test = rng.integers(1, 8), rng.integers(1, 13)  # some users have more test items than K
        rows += [(user, int(i), "train") for i in items[:n_train]]
        rows += [(user, int(i), "test") for i in items[n_train : n_train + n_test]]
    return pd.DataFrame(rows, columns=["user", "item", "split"]).astype({"user": "int32", "item": "int32"})


def _brute_force(scores: np.ndarray, frame: pd.DataFrame, k: int) -> dict[str, float]:
    """Metrics by their definitions, one user at a time, ties broken by lower item id."""
    totals = {name: [] for name in ("recall", "ndcg", "hitrate", "precision", "mrr")}
    for user in range(N_USERS):
        seen = set(frame[(frame.user == user) & (frame.split == "train")].item)
        relevant = set(frame[(frame.user == user) & (frame.split == "test")].item)
        ranking = sorted((i for i in range(N_ITEMS) if i not in seen), key=lambda i: (-scores[user, i], i))[:k]
        hits = [item in relevant for item in ranking]
        dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
        idcg = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
        first = next((rank for rank, hit in enumerate(hits) if hit), None)
        totals["recall"].append(sum(hits) / len(relevant))
        totals["ndcg"].append(dcg / idcg)
        totals["hitrate"].append(float(any(hits)))
        totals["precision"].append(sum(hits) / k)
        totals["mrr"].append(0.0 if first is None else 1 / (first + 1))
    return {f"{name}@{k}": float(np.mean(values)) for name, values in totals.items()}


@pytest.fixture(params=["continuous", "ties"])
def case(request, tmp_path):
    frame = _random_splits(seed=5)
    write_processed(tmp_path, "random", frame, N_USERS, N_ITEMS)
    data = load_dataset("random", tmp_path, torch.device("cpu"))
    generator = torch.Generator().manual_seed(2)
    if request.param == "ties":  # few distinct values: ties everywhere, also across the cut
        scores = torch.randint(0, 3, (N_USERS, N_ITEMS), generator=generator).float()
    else:
        scores = torch.rand(N_USERS, N_ITEMS, generator=generator)
    return frame, data, scores


def test_metrics_equal_the_brute_force_reference(case):
    frame, data, scores = case
    got = evaluate(FixedScores(scores), data, "test", KS, cosine=False).metrics
    for k in KS:
        expected = _brute_force(scores.numpy(), frame, k)
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize("batch_users", [1, 7, 64])
def test_metrics_do_not_depend_on_the_evaluation_batch_size(case, batch_users):
    _, data, scores = case
    reference = evaluate(FixedScores(scores), data, "test", KS, cosine=False, batch_users=N_USERS).metrics
    assert evaluate(FixedScores(scores), data, "test", KS, cosine=False, batch_users=batch_users).metrics == reference


def test_rank_top_orders_ties_by_item_id():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 3.0], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    values, items = rank_top(scores, 3)
    assert items.tolist() == [[1, 2, 4], [0, 1, 2]]
    assert values.tolist() == [[3.0, 3.0, 3.0], [5.0, 4.0, 3.0]]


def test_metrics_from_hits_by_hand():
    hits = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    out = metrics_from_hits(hits, torch.tensor([4, 1]), (3,))
    ndcg_user0 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert out["recall@3"].tolist() == [0.5, 0.0]
    assert out["precision@3"].tolist() == pytest.approx([2 / 3, 0.0])
    assert out["mrr@3"].tolist() == [0.5, 0.0]
    assert out["hitrate@3"].tolist() == [1.0, 0.0]
    assert out["ndcg@3"].tolist() == pytest.approx([ndcg_user0, 0.0])


def test_per_user_metrics_average_to_the_reported_means(case):
    _, data, scores = case
    evaluation = evaluate(FixedScores(scores), data, "test", KS, cosine=False, per_user=True)
    assert len(evaluation.per_user) == N_USERS
    for name, value in evaluation.metrics.items():
        if name.startswith(("coverage@", "gini@")):  # one value for all the lists together
            assert name not in evaluation.per_user.columns
        else:
            assert evaluation.per_user[name].mean() == pytest.approx(value)


def test_progress_is_reported_after_every_batch(case):
    _, data, scores = case
    calls = []
    evaluate(FixedScores(scores), data, "test", KS, cosine=False, batch_users=12, progress=lambda *done: calls.append(done))
    assert calls == [(12, N_USERS), (24, N_USERS), (N_USERS, N_USERS)]
