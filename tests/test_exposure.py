"""Beyond-accuracy metrics (coverage, gini, arp, tail, novelty): worked by hand on a top-K one can
check on paper, against a brute-force reference with ties and short lists, and against pandas
on a top-K exported by `mmlbench evaluate`."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.data.dataset import load_dataset
from mmlbench.engine.evaluator import evaluate
from mmlbench.engine.exposure import head_items
from synthetic import write_processed
from test_evaluator import FixedScores

runner = CliRunner()

# 4 users, 5 items. Train counts: item 0: 3 (users 0, 1, 2), item 1: 2 (users 0, 1), items 2 and 3:
# 1 (user 3), item 4: 0; 7 training pairs. Popularity 3/7, 2/7, 1/7, 1/7, 0.
HAND_PAIRS = [
    (0, 0, "train"), (0, 1, "train"), (0, 2, "test"),
    (1, 0, "train"), (1, 1, "train"), (1, 3, "test"),
    (2, 0, "train"), (2, 1, "test"),
    (3, 2, "train"), (3, 3, "train"), (3, 0, "test"),
]  # fmt: skip
# Scores chosen so that the top-2 lists of unseen items are: user 0 [2, 4], user 1 [3, 2],
# user 2 [1, 4], user 3 [0, 1]; the top-1 lists 2, 3, 1, 0.
HAND_SCORES = [
    [9, 9, 5, 1, 3],
    [9, 9, 4, 5, 1],
    [9, 5, 1, 2, 3],
    [5, 4, 9, 9, 1],
]  # fmt: skip


@pytest.fixture
def hand(tmp_path):
    frame = pd.DataFrame(HAND_PAIRS, columns=["user", "item", "split"]).astype({"user": "int32", "item": "int32"})
    write_processed(tmp_path, "hand", frame, 4, 5)
    return load_dataset("hand", tmp_path, torch.device("cpu"))


def test_the_metrics_of_a_top_k_worked_by_hand(hand):
    evaluation = evaluate(FixedScores(torch.tensor(HAND_SCORES, dtype=torch.float32)), hand, "test", (1, 2), cosine=False, per_user=True)
    got = evaluation.metrics
    # K = 2. Exposure: item 0 once, 1 twice, 2 twice, 3 once, 4 twice: every item listed.
    assert got["coverage@2"] == 1.0
    # Sorted counts 1, 1, 2, 2, 2 (sum 8): (-4*1 - 2*1 + 0*2 + 2*2 + 4*2) / (5 * 8) = 6/40.
    assert got["gini@2"] == pytest.approx(0.15)
    # Popularity of the lists: user 0 (1/7 + 0)/2, user 1 (1/7 + 1/7)/2, user 2 (2/7 + 0)/2, user 3 (3/7 + 2/7)/2.
    assert evaluation.per_user["arp@2"].tolist() == pytest.approx([1 / 14, 1 / 7, 1 / 7, 5 / 14])
    assert got["arp@2"] == pytest.approx(5 / 28)
    # Head at 0.2 of 5 items: item 0 alone. Only user 3's list holds it.
    assert evaluation.per_user["tail@2"].tolist() == [1.0, 1.0, 1.0, 0.5]
    assert got["tail@2"] == 0.875
    # Self-information: item 0 log2(7/3), item 1 log2(7/2), items 2, 3 log2(7); item 4 (no train
    # interaction) counts as one interaction: log2(7).
    novelty = [math.log2(7), math.log2(7), (math.log2(3.5) + math.log2(7)) / 2, (math.log2(7 / 3) + math.log2(3.5)) / 2]
    assert evaluation.per_user["novelty@2"].tolist() == pytest.approx(novelty)
    assert got["novelty@2"] == pytest.approx(sum(novelty) / 4)
    # K = 1: items 2, 3, 1, 0 listed once, item 4 never: coverage 4/5; sorted 0, 1, 1, 1, 1 (sum 4):
    # (-4*0 - 2 + 0 + 2 + 4) / (5 * 4) = 0.2.
    assert got["coverage@1"] == 0.8
    assert got["gini@1"] == pytest.approx(0.2)
    assert got["tail@1"] == 0.75
    assert got["arp@1"] == pytest.approx((1 / 7 + 1 / 7 + 2 / 7 + 3 / 7) / 4)


def test_gini_is_zero_for_equal_exposure_and_near_one_when_one_item_takes_it(hand):
    equal = torch.tensor([[0, 0, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.float32)
    got = evaluate(FixedScores(equal), hand, "test", (1,), cosine=False).metrics
    assert got["coverage@1"] == 0.8 and got["gini@1"] == pytest.approx(0.2)  # 4 items once, 1 never
    same = torch.tensor([[0, 0, 0, 0, 1]] * 4, dtype=torch.float32)  # every user gets item 4
    got = evaluate(FixedScores(same), hand, "test", (1,), cosine=False).metrics
    assert got["coverage@1"] == 0.2 and got["gini@1"] == pytest.approx(4 / 5)  # (I - 1) / I


def test_the_head_is_the_most_popular_share_ties_to_the_lower_id():
    counts = torch.tensor([5, 2, 2, 9, 2, 0, 1, 2, 0, 0])
    assert torch.nonzero(head_items(counts, 0.2)).flatten().tolist() == [0, 3]
    assert torch.nonzero(head_items(counts, 0.3)).flatten().tolist() == [0, 1, 3]  # 1, 2, 4, 7 tie: 1 first
    assert torch.nonzero(head_items(counts, 0.25)).flatten().tolist() == [0, 1, 3]  # 2.5 rounds half up
    assert not head_items(counts, 0.0).any() and head_items(counts, 1.0).all()


def _brute_force(scores: np.ndarray, frame: pd.DataFrame, n_items: int, k: int, head_fraction: float) -> dict[str, float]:
    """The definitions, one user and one item at a time, in plain Python."""
    train = frame[frame.split == "train"]
    counts = [int((train.item == i).sum()) for i in range(n_items)]
    total = sum(counts)
    by_popularity = sorted(range(n_items), key=lambda i: (-counts[i], i))
    head = set(by_popularity[: math.floor(head_fraction * n_items + 0.5)])
    lists = []
    for user in sorted(set(frame[frame.split == "test"].user)):
        seen = set(train[train.user == user].item)
        lists.append(sorted((i for i in range(n_items) if i not in seen), key=lambda i: (-scores[user, i], i))[:k])
    exposure = sorted(sum(item in top for top in lists) for item in range(n_items))
    gini = sum((2 * rank - n_items - 1) * x for rank, x in enumerate(exposure, 1)) / (n_items * sum(exposure))
    return {
        f"coverage@{k}": sum(x > 0 for x in exposure) / n_items,
        f"gini@{k}": gini,
        f"arp@{k}": np.mean([np.mean([counts[i] / total for i in top]) for top in lists]),
        f"tail@{k}": np.mean([np.mean([i not in head for i in top]) for top in lists]),
        f"novelty@{k}": np.mean([np.mean([-math.log2(max(counts[i], 1) / total) for i in top]) for top in lists]),
    }


@pytest.mark.parametrize("head_fraction", [0.2, 0.5])
@pytest.mark.parametrize("batch_users", [1, 7, 64])
def test_the_metrics_equal_a_brute_force_reference_with_ties_and_short_lists(tmp_path, head_fraction, batch_users):
    rng = np.random.default_rng(3)
    n_users, n_items = 20, 12
    rows = []
    for user in range(n_users):
        items = rng.permutation(n_items)
        n_train = rng.integers(1, 10)  # up to 9 seen: lists at K = 5 or 8 can be shorter than K
        rows += [(user, int(i), "train") for i in items[:n_train]] + [(user, int(items[n_train]), "test")]
    frame = pd.DataFrame(rows, columns=["user", "item", "split"]).astype({"user": "int32", "item": "int32"})
    write_processed(tmp_path, "random", frame, n_users, n_items)
    data = load_dataset("random", tmp_path, torch.device("cpu"))
    scores = torch.randint(0, 3, (n_users, n_items), generator=torch.Generator().manual_seed(1)).float()  # ties
    ks = (1, 3, 5, 8)
    got = evaluate(FixedScores(scores), data, "test", ks, cosine=False, batch_users=batch_users, head_fraction=head_fraction).metrics
    for k in ks:
        for name, value in _brute_force(scores.numpy(), frame, n_items, k, head_fraction).items():
            assert got[name] == pytest.approx(value, abs=1e-12), name


def test_an_evaluation_stores_the_metrics_and_pandas_recomputes_them_from_the_export(planted_dir, tmp_path):
    """Train, then `evaluate --export-topk`; pandas recomputes every metric from the exported
    lists and the processed train interactions, as docs/evaluate.md defines them."""
    results = tmp_path / "r"
    train = runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results),
        "--negatives", "5", "--batch-size", "64", "--lr", "0.01", "--epochs", "1", "--device", "cpu",
        "--head-fraction", "0.3", "-q",
    ])  # fmt: skip
    assert train.exit_code == 0, train.output
    run_dir = next(store.iter_run_dirs(results))
    row = store.read_run(run_dir)
    per_user = store.read_per_user(run_dir)
    for name in ("coverage", "gini", "arp", "tail", "novelty"):
        assert 0 < row[f"{name}@20"] < math.inf
    assert {"arp@20", "tail@20", "novelty@20"} <= set(per_user.columns) and "gini@20" not in per_user.columns
    export = tmp_path / "top.parquet"
    result = runner.invoke(app, [
        "evaluate", run_dir.name, "--results-dir", str(results), "--data-dir", str(planted_dir),
        "--device", "cpu", "--k", "10", "--export-topk", str(export), "--format", "json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    top = pd.read_parquet(export)
    interactions = pd.read_parquet(planted_dir / "planted" / "processed" / "interactions.parquet")
    counts = interactions[interactions.split == "train"].item.value_counts().reindex(range(60), fill_value=0)
    share = counts / counts.sum()
    head = counts.reset_index().sort_values(["count", "item"], ascending=[False, True]).item.head(18)  # 0.3 * 60
    top = top.assign(share=top.item.map(share), tail=~top.item.isin(head), novelty=-np.log2(top.item.map(counts.clip(lower=1)) / counts.sum()))
    by_user = top.groupby("user")[["share", "tail", "novelty"]].mean()
    exposure = top.item.value_counts().reindex(range(60), fill_value=0).sort_values().to_numpy()
    gini = ((2 * np.arange(1, 61) - 61) * exposure).sum() / (60 * exposure.sum())
    assert metrics["arp@10"] == pytest.approx(by_user["share"].mean(), abs=1e-12)
    assert metrics["tail@10"] == pytest.approx(by_user["tail"].mean(), abs=1e-12)
    assert metrics["novelty@10"] == pytest.approx(by_user["novelty"].mean(), abs=1e-12)
    assert metrics["coverage@10"] == pytest.approx(top.item.nunique() / 60, abs=1e-12)
    assert metrics["gini@10"] == pytest.approx(gini, abs=1e-12)
