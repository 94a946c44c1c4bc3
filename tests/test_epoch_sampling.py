"""--epoch-sampling user-uniform (LightGCN's official epoch) and --grad-clip 0 (no clipping).

The official code (gusye1234/LightGCN-PyTorch, `utils.UniformSample_original_python`) draws as
many (user, positive, negative) triples per epoch as there are training pairs: a user uniformly,
one of the user's training items uniformly, a negative among the items the user has not
interacted with (here `--sampler uniform-exclude-pos`). Its trainer clips no gradient.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.config import RunConfig
from mmlbench.data.dataset import load_dataset
from mmlbench.engine.parts import Parts
from mmlbench.engine.sampling import epoch_pairs
from mmlbench.engine.step import TrainStep
from mmlbench.errors import MMLBenchError
from mmlbench.runs import build
from synthetic import planted_interactions, write_processed

runner = CliRunner()
EPOCHS = 40  # epochs of draws pooled for the tests of fit


@pytest.fixture
def skewed(tmp_path):
    """Planted data whose users have 1 to 8 training items (user u keeps u % 8 + 1), so drawing
    users uniformly and drawing training pairs uniformly differ."""
    frame = planted_interactions(per_user=12)
    train = frame[frame["split"] == "train"]
    kept = train[train.groupby("user").cumcount() <= train["user"] % 8]
    data_dir = tmp_path / "datasets"
    write_processed(data_dir, "skewed", pd.concat([kept, frame[frame["split"] == "test"]]), 120, 60)
    return load_dataset("skewed", data_dir, torch.device("cpu"))


def _draws(data, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    index = torch.cat([epoch_pairs(data, method, generator) for _ in range(EPOCHS)])
    return data.train_users[index], index


def test_user_uniform_draws_users_uniformly_then_their_items_uniformly(skewed):
    users, index = _draws(skewed, "user-uniform")
    assert index.numel() == EPOCHS * skewed.train_items.numel()  # as many draws as training pairs
    per_user = torch.bincount(users, minlength=skewed.n_users).numpy()
    assert stats.chisquare(per_user).pvalue > 0.01  # uniform over users
    # Within each user, uniform over the user's training items: one chi-square over all users.
    statistic, dof = 0.0, 0
    counts = skewed.splits["train"].counts()
    for user in range(skewed.n_users):
        positions = index[users == user] - skewed.splits["train"].indptr[user]
        assert int(positions.min()) >= 0 and int(positions.max()) < int(counts[user])
        if int(counts[user]) > 1:
            observed = torch.bincount(positions, minlength=int(counts[user])).double()
            expected = observed.sum() / int(counts[user])
            statistic += float(((observed - expected) ** 2 / expected).sum())
            dof += int(counts[user]) - 1
    assert stats.chi2.sf(statistic, dof) > 0.01


def test_pairs_is_a_permutation_and_fails_the_user_uniform_test(skewed):
    """The default epoch: every pair once; its users follow their degrees, which the test above rejects."""
    users, index = _draws(skewed, "pairs")
    n_pairs = skewed.train_items.numel()
    assert torch.equal(index[:n_pairs].sort().values, torch.arange(n_pairs))
    assert stats.chisquare(torch.bincount(users, minlength=skewed.n_users).numpy()).pvalue < 1e-6


def test_user_uniform_draws_the_epoch_from_the_given_generator(skewed):
    first = epoch_pairs(skewed, "user-uniform", torch.Generator().manual_seed(3))
    again = epoch_pairs(skewed, "user-uniform", torch.Generator().manual_seed(3))
    assert torch.equal(first, again)


def _one_step_tables(data, grad_clip: float) -> list[torch.Tensor]:
    """The MF tables after one eager step at lr 1 (large gradients), from the same start."""
    config = RunConfig("skewed", negatives=5, batch_size=32, lr=1.0, grad_clip=grad_clip, loss="bpr", score="dot").resolved()
    torch.manual_seed(0)
    model = build.model(config, data)
    sampler = build.make_sampler("uniform", n_items=data.n_items, negatives=5, positive_keys=None, item_counts=None, params={})
    step = TrainStep(Parts(model, build.loss_function("bpr", {}), sampler), data, config, use_graph=False)
    step.batch_index.copy_(torch.arange(32))
    step._eager_step()
    return [table.detach().clone() for table in model.embedding_tables()]


def test_grad_clip_zero_does_not_clip(skewed):
    unclipped = _one_step_tables(skewed, 0.0)
    never_reached = _one_step_tables(skewed, 1e30)
    tight = _one_step_tables(skewed, 1e-9)
    assert all(torch.equal(a, b) for a, b in zip(unclipped, never_reached))
    assert not all(torch.equal(a, b) for a, b in zip(unclipped, tight))


def test_grad_clip_must_not_be_negative():
    with pytest.raises(MMLBenchError, match="--grad-clip must be >= 0, got -1.0"):
        RunConfig("d", grad_clip=-1.0).resolved()


def test_the_default_epoch_keeps_its_hash_and_user_uniform_is_another_setting():
    default = RunConfig("d").resolved()
    assert default.hash("fp") == RunConfig("d", epoch_sampling="pairs").resolved().hash("fp")
    assert default.hash("fp") != RunConfig("d", epoch_sampling="user-uniform").resolved().hash("fp")
    assert default.hash("fp") != RunConfig("d", grad_clip=0.0).resolved().hash("fp")


def test_lightgcn_with_the_official_epoch_trains_from_the_command_line(planted_dir, tmp_path):
    result = runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"),
        "--model", "lightgcn", "--loss", "bpr", "--score", "dot", "--negatives", "1", "--sampler", "uniform-exclude-pos",
        "--epoch-sampling", "user-uniform", "--grad-clip", "0", "--lr", "0.01", "--batch-size", "64",
        "--epochs", "3", "--device", "cpu", "-q",
    ])
    assert result.exit_code == 0, result.output
    row = store.read_run(next(store.iter_run_dirs(tmp_path / "r")))
    assert row["epoch_sampling"] == "user-uniform" and row["grad_clip"] == 0.0 and row["status"] == "completed"


def test_an_unknown_epoch_sampling_is_one_line(planted_dir, tmp_path):
    result = runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"),
        "--epoch-sampling", "user", "--device", "cpu", "-q",
    ])
    assert result.exit_code != 0
    assert "epoch-sampling" in result.output and "Traceback" not in result.output
