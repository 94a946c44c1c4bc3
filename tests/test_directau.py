"""DirectAU: a loss over the batch's user and item vectors that draws no negatives."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.engine.losses import directau
from mmlbench.errors import MMLBenchError
from mmlbench.plan.experiment import Experiment
from mmlbench.plugins.losses import get_loss, resolve_params
from mmlbench.runs.build import loss_function
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.single import train_run
from mmlbench.store import ids


def test_directau_by_hand():
    # Rows normalise to users (1,0),(0,1),(0,-1) and items (1,0),(1,0),(0,-1).
    users = torch.tensor([[3.0, 0.0], [0.0, 2.0], [0.0, -1.0]], dtype=torch.float64)
    items = torch.tensor([[1.0, 0.0], [4.0, 0.0], [0.0, -5.0]], dtype=torch.float64)
    alignment = (0 + 2 + 0) / 3  # squared distances of the pairs
    uniform_users = math.log((math.exp(-2 * 2) + math.exp(-2 * 2) + math.exp(-2 * 4)) / 3)  # |a-b|^2 = 2, 2, 4
    uniform_items = math.log((math.exp(0) + math.exp(-2 * 2) + math.exp(-2 * 2)) / 3)  # 0, 2, 2
    for gamma in (1.0, 5.0):
        expected = alignment + gamma * (uniform_users + uniform_items) / 2
        assert directau(users, items, uniformity_weight=gamma).item() == pytest.approx(expected)


def test_directau_gradients_match_float64_finite_differences():
    generator = torch.Generator().manual_seed(4)
    users = torch.randn(6, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    items = torch.randn(6, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    fn = loss_function("directau", resolve_params("directau", {}))
    assert torch.autograd.gradcheck(fn, (users, items))


def test_aligned_and_spread_vectors_score_lower_than_misaligned_or_collapsed():
    spread = torch.eye(4)
    aligned = directau(spread, spread.clone(), uniformity_weight=1.0)
    misaligned = directau(spread, -spread, uniformity_weight=1.0)
    collapsed = directau(torch.ones(4, 4), torch.ones(4, 4), uniformity_weight=1.0)
    assert aligned < misaligned and aligned < collapsed


def test_a_run_of_directau_has_no_negatives_whatever_was_asked():
    spec = get_loss("directau")
    assert spec.takes_embeddings and spec.defaults == {"uniformity_weight": 1.0}
    config = RunConfig("planted", loss="directau", negatives=100).resolved()
    assert config.negatives == 0 and "-n0-" in ids.run_id(config, "abc")
    grid = Experiment({"dataset": "planted", "loss": "directau"}, {"negatives": [10, 100, 800]})
    assert [c.negatives for c in grid.configs()] == [0]  # one run, not three identical ones


@pytest.mark.parametrize("sampler", ["popularity", "hard", "in-batch"])
def test_a_sampler_given_to_directau_is_refused(sampler):
    with pytest.raises(MMLBenchError, match=f"directau draws no negatives: --sampler {sampler} does not apply"):
        RunConfig("planted", loss="directau", sampler=sampler).resolved()


def test_bad_uniformity_weight_is_refused():
    with pytest.raises(MMLBenchError, match="--uniformity-weight must be > 0"):
        resolve_params("directau", {"uniformity_weight": 0.0})


def test_directau_run_records_no_violations_and_its_gamma(planted_dir, tmp_path):
    config = RunConfig("planted", loss="directau", uniformity_weight=2.0, batch_size=64, lr=0.01, epochs=2)
    outcome = train_run(config, TrainOptions(device="cpu", data_dir=planted_dir, results_dir=tmp_path, quiet=True))
    assert outcome.status == store.STATUS_COMPLETED
    assert outcome.row["negatives"] == 0 and outcome.row["uniformity_weight"] == 2.0
    curve = pd.read_parquet(outcome.run_dir / "curve.parquet")
    assert curve["violations"].isna().all() and curve["loss"].notna().all()
