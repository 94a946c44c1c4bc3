"""Training end to end on planted data: learns the structure, is deterministic, stops early."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.data.dataset import load_dataset
from mmlbench.engine.evaluator import Evaluation, evaluate
from mmlbench.engine.models import MF
from mmlbench.engine.parts import Parts
from mmlbench.engine.trainer import Trainer
from mmlbench.errors import MMLBenchError
from mmlbench.metrics import is_metric_column
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.single import train_run

_real = Trainer.evaluate

FAST = dict(negatives=10, batch_size=64, lr=0.01, epochs=12, patience=4)


def _options(planted_dir, tmp_path, **kwargs) -> TrainOptions:
    return TrainOptions(device="cpu", data_dir=planted_dir, results_dir=tmp_path / "results", quiet=True, **kwargs)


class Popularity(torch.nn.Module):
    """Every user ranks items by their training popularity."""

    def __init__(self, counts: torch.Tensor) -> None:
        super().__init__()
        self.counts = counts.float().unsqueeze(1)

    def item_table(self) -> torch.Tensor:
        return self.counts

    def user_vectors(self, users: torch.Tensor, normalize: bool = False):
        return torch.ones(users.numel(), 1)


def test_popularity_reference_is_weak_on_planted_data(planted_dir):
    data = load_dataset("planted", planted_dir, torch.device("cpu"))
    recall = evaluate(Popularity(data.item_counts()), data, "test", (10,), cosine=False).metrics["recall@10"]
    assert recall < 0.4  # four equal clusters: popularity cannot tell them apart


# Every loss, model and sampler learning the planted clusters: tests/test_plugins.py.


def test_same_seed_same_numbers_on_cpu(planted_dir, tmp_path):
    config = RunConfig("planted", epochs=3, negatives=10, batch_size=64, lr=0.01)
    first = train_run(config, _options(planted_dir, tmp_path / "a"))
    second = train_run(config, _options(planted_dir, tmp_path / "b"))
    other = train_run(RunConfig("planted", epochs=3, negatives=10, batch_size=64, lr=0.01, seed=7), _options(planted_dir, tmp_path / "a"))
    metrics = [name for name in first.row if is_metric_column(name)]
    assert [first.row[m] for m in metrics] == [second.row[m] for m in metrics]
    assert [first.row[m] for m in metrics] != [other.row[m] for m in metrics]


def test_early_stopping_with_patience(planted_dir, tmp_path):
    # lr so small nothing improves after the first evaluation: stops after `patience` more.
    config = RunConfig("planted", epochs=30, patience=2, lr=1e-9, negatives=5, batch_size=64)
    outcome = train_run(config, _options(planted_dir, tmp_path))
    assert outcome.row["epochs_run"] < 30
    curve = store.read_curve(outcome.run_dir)
    assert len(curve) == outcome.row["epochs_run"]


def test_plateau_decays_the_learning_rate_and_stops(planted_dir, tmp_path, monkeypatch):
    flat = Evaluation({"recall@20": 0.5, "recall@10": 0.4}, seconds=0.0, users=1)
    monkeypatch.setattr(Trainer, "evaluate", lambda self, split, per_user=False: flat if not per_user else _real(self, split))
    config = RunConfig("planted", epochs=30, patience=3, lr=0.01, negatives=5, batch_size=64, plateau_lr_factor=0.5)
    curve = store.read_curve(train_run(config, _options(planted_dir, tmp_path)).run_dir)
    assert curve["lr"].tolist() == [0.01, 0.01, 0.005, 0.0025]  # best at epoch 1, then 3 stale evaluations


def test_divergence_is_recorded_as_failed(planted_dir, tmp_path, monkeypatch):
    def diverge(self, on_batch=None):
        return float("nan"), 0.0

    monkeypatch.setattr("mmlbench.engine.step.TrainStep.run_epoch", diverge)
    with pytest.raises(MMLBenchError, match="diverged"):
        train_run(RunConfig("planted", **FAST), _options(planted_dir, tmp_path))
    runs = store.read_runs(tmp_path / "results")
    assert runs["status"].tolist() == [store.STATUS_FAILED]
    assert "diverged" in runs["error"].iloc[0]


def test_ctrl_c_is_recorded_as_interrupted(planted_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = Trainer._train_epoch

    def interrupt_on_third(self, epoch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupt_on_third)
    outcome = train_run(RunConfig("planted", **FAST), _options(planted_dir, tmp_path))
    assert outcome.status == store.STATUS_INTERRUPTED
    assert outcome.row["epochs_run"] == 2
    assert outcome.row["recall@10"] > 0  # the best weights so far were evaluated on test


def test_completed_runs_are_reused_unless_forced(planted_dir, tmp_path):
    config = RunConfig("planted", epochs=2, negatives=5, batch_size=64)
    first = train_run(config, _options(planted_dir, tmp_path))
    again = train_run(config, _options(planted_dir, tmp_path))
    forced = train_run(config, _options(planted_dir, tmp_path, force=True))
    assert again.skipped and again.run_dir == first.run_dir
    assert not forced.skipped
    assert len(store.read_runs(tmp_path / "results")) == 1


def test_validation_split_selects_and_test_reports(tmp_path):
    from synthetic import planted_interactions, write_processed

    write_processed(tmp_path, "withvalid", planted_interactions(valid=True), 120, 60)
    outcome = train_run(RunConfig("withvalid", **FAST), TrainOptions(device="cpu", data_dir=tmp_path, results_dir=tmp_path / "r", quiet=True))
    assert outcome.row["protocol"] == "validation"
    per_user = store.read_per_user(outcome.run_dir)
    assert per_user["recall@10"].mean() == pytest.approx(outcome.row["recall@10"])


def test_run_folder_holds_every_file(planted_dir, tmp_path):
    outcome = train_run(RunConfig("planted", epochs=2, negatives=5, batch_size=64), _options(planted_dir, tmp_path))
    names = {p.name for p in outcome.run_dir.iterdir()}
    assert {store.RUN_FILE, store.CURVE_FILE, store.PER_USER_FILE, store.CHECKPOINT_FILE} <= names
    row = pd.read_parquet(outcome.run_dir / store.RUN_FILE).iloc[0]
    for column in ("config_hash", "dataset_sha256", "torch_version", "git_commit", "epoch_seconds_median", "peak_memory_bytes", "ndcg@20"):
        assert column in row.index
    assert row["protocol"] == "test-as-validation"


@pytest.mark.parametrize("scale", [0.01, 100.0])
def test_clip_gradients_matches_torch(scale):
    from mmlbench.engine.step import clip_gradients

    generator = torch.Generator().manual_seed(4)
    ours = [torch.nn.Parameter(torch.randn(5, 3, generator=generator)) for _ in range(2)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for a, b in zip(ours, theirs):
        a.grad = torch.randn(5, 3, generator=generator) * scale
        b.grad = a.grad.clone()
    clip_gradients(ours, 10.0, RunConfig.grad_clip_eps)
    torch.nn.utils.clip_grad_norm_(theirs, 10.0)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_the_trainer_trains_parts_registered_nowhere(planted_dir):
    """The engine looks no plug-in up: it trains the model, loss and sampler it is handed
    (runs.build makes them from a config), here a loss and a sampler of this test's own."""
    config = RunConfig("planted", negatives=5, batch_size=64, lr=0.01, epochs=8, patience=8).resolved()
    data = load_dataset("planted", planted_dir, torch.device("cpu"))
    torch.manual_seed(0)
    model = MF(data.n_users, data.n_items, config.embedding_dim, dropout=0.0, init_std=0.1)
    shapes = []

    def hardest_negative_hinge(s_pos, s_neg):
        shapes.append(tuple(s_neg.shape))
        return torch.relu(0.5 - s_pos + s_neg.max(dim=1).values).mean()

    def five_uniform(users):
        return torch.randint(data.n_items, (users.shape[0], 5))

    trainer = Trainer(config, data, Parts(model, hardest_negative_hinge, five_uniform), torch.device("cpu"), cuda_graphs=False)
    trainer.fit()
    assert shapes and {shape[1] for shape in shapes} == {5}
    assert trainer.evaluate("test").metrics["recall@10"] > 0.6  # popularity stays below 0.4 (above)
