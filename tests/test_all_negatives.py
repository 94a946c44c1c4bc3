"""--negatives all: every item but the row's positive is a negative. The training step's loss and
gradients equal an explicit enumeration of every item (each loss, cosine and dot, CPU and CUDA);
it learns the planted clusters; it is refused with a sampler, with DirectAU and when its [B, I]
score matrix cannot fit."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.config import RunConfig
from mmlbench.data.dataset import load_dataset
from mmlbench.engine.scoring import others_of
from mmlbench.engine.trainer import Trainer
from mmlbench.plugins.losses import LOSSES
from mmlbench.runs import build, preflight
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.single import train_run

runner = CliRunner()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
SCORE_LOSSES = sorted(name for name, spec in LOSSES.items() if not spec.takes_embeddings)


def test_others_of_is_each_row_but_its_positive_column_in_order():
    values = torch.arange(28.0).view(4, 7)
    positives = torch.tensor([0, 3, 6, 3])
    others = others_of(values, positives)
    assert others.shape == (4, 6)
    for row, (full, positive) in enumerate(zip(values.tolist(), positives.tolist())):
        assert others[row].tolist() == [value for item, value in enumerate(full) if item != positive]


def _explicit_loss(name: str, s_all: torch.Tensor, positives: list[int], params: dict) -> torch.Tensor:
    """The losses' formulas (docs/training.md), every item enumerated one by one: s_all [B, I] in float64."""
    rows = []
    for b, positive in enumerate(positives):
        s_pos = s_all[b, positive]
        s_neg = torch.stack([s_all[b, j] for j in range(s_all.shape[1]) if j != positive])
        if name == "bpr":
            rows.append(-F.logsigmoid(s_pos - s_neg).mean())
        elif name == "bce":
            rows.append(-F.logsigmoid(s_pos) - torch.log(1 - torch.sigmoid(s_neg)).mean())
        elif name == "mse":
            rows.append((1 - s_pos) ** 2 + (s_neg**2).mean())
        elif name == "hinge":
            rows.append(torch.relu(params["margin"] - s_pos + s_neg).mean())
        elif name == "ssm":  # the full categorical cross-entropy over the catalogue
            rows.append(F.cross_entropy(s_all[b] / params["temperature"], torch.tensor(positive, device=s_all.device)))
        elif name == "bsl":
            t1, t2 = params["temperature"], params["negative_power"]
            rows.append(-s_pos / t1 + t2 * torch.log(torch.exp(s_neg / t1).sum()))
        elif name == "ccl":
            rows.append(torch.relu(1 - s_pos) + params["negative_weight"] * torch.relu(s_neg - params["margin"]).mean())
        elif name == "mmcl":
            per_negative = sum(w * torch.relu(s_neg - m) for m, w in zip(params["margins"], params["margin_weights"]))
            rows.append(params["positive_weight"] * torch.relu(1 - s_pos) + params["negative_weight"] * per_negative.mean())
    return torch.stack(rows).mean()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("score", ["cosine", "dot"])
@pytest.mark.parametrize("loss", SCORE_LOSSES)
def test_the_loss_and_gradients_equal_an_explicit_enumeration_of_every_item(planted_dir, loss, score, device):
    device = torch.device(device)
    config = RunConfig("planted", loss=loss, negatives="all", score=score, dropout=0.0, init_std=0.3, seed=7).resolved()
    data = load_dataset("planted", planted_dir, device)
    torch.manual_seed(config.seed)
    model = build.model(config, data, device)
    trainer = Trainer(config, data, build.parts(config, data, model), device, cuda_graphs=False)
    batch = torch.randperm(data.train_items.numel(), device=device)[:16]
    users, positives = data.train_users[batch], data.train_items[batch]

    loss_value, index, squares = trainer.step._score_loss(users, positives)
    loss_value.backward()
    assert index is None and squares.shape == (16, data.n_items)

    user_table, item_table = (t.detach().double().requires_grad_() for t in model.embedding_tables())
    user_vectors, items = user_table[users], item_table
    if score == "cosine":
        user_vectors, items = F.normalize(user_vectors, dim=-1), F.normalize(items, dim=-1)
    s_all = torch.stack([(user_vectors * items[j]).sum(-1) for j in range(data.n_items)], dim=1)  # item by item
    expected = _explicit_loss(loss, s_all, positives.tolist(), LOSSES[loss].params_of(config))
    expected.backward()

    assert float(loss_value.detach()) == pytest.approx(float(expected.detach()), rel=1e-5, abs=1e-6)
    for got, want in zip(model.embedding_tables(), (user_table, item_table)):
        scale = float(want.grad.abs().max())
        assert torch.allclose(got.grad.double(), want.grad, rtol=1e-4, atol=1e-5 * scale), loss


@pytest.mark.parametrize("device", DEVICES)
def test_all_negatives_learn_the_planted_clusters(planted_dir, tmp_path, device):
    for loss in ("ccl", "ssm"):
        config = RunConfig("planted", loss=loss, negatives="all", batch_size=64, lr=0.01, epochs=12, patience=4)
        outcome = train_run(config, TrainOptions(device=device, data_dir=planted_dir, results_dir=tmp_path, quiet=True))
        assert outcome.status == store.STATUS_COMPLETED and outcome.row["recall@10"] > 0.6, loss


def _train(planted_dir, results, *options: str):
    return runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results),
        "--batch-size", "64", "--lr", "0.01", "--epochs", "1", "--device", "cpu", "-q", *options,
    ])  # fmt: skip


def test_train_all_on_the_cli_stores_all_and_the_row_round_trips(planted_dir, tmp_path):
    results = tmp_path / "r"
    result = _train(planted_dir, results, "--negatives", "10,all", "--loss", "ccl")
    assert result.exit_code == 0, result.output
    rows = {row["negatives"]: row for row in (store.read_run(d) for d in store.iter_run_dirs(results))}
    assert set(rows) == {10, "all"}
    row = rows["all"]
    assert "-nall-" in row["run_id"] and row["n_items"] == 60
    config = RunConfig.from_row(row)
    assert config.negatives == "all" and config.hash(row["dataset_sha256"]) == row["config_hash"]
    assert RunConfig.from_row(rows[10]).negatives == 10  # the integer rows read as before
    assert store.read_runs(results)["negatives"].tolist().count("all") == 1
    again = _train(planted_dir, results, "--negatives", "all", "--loss", "ccl")
    assert again.exit_code == 0 and "already completed" in again.output  # the same run: reused, not retrained


def test_compare_sorts_all_after_the_numbers_and_filters_it(planted_dir, tmp_path):
    results = tmp_path / "r"
    assert _train(planted_dir, results, "--negatives", "all,20,5", "--loss", "ccl").exit_code == 0
    table = runner.invoke(app, ["compare", str(results), "--metric", "recall@20", "--format", "csv"])
    assert table.exit_code == 0, table.output
    assert _csv_cells(table.stdout)["negatives"].tolist() == ["5", "20", "all"]
    only = runner.invoke(app, ["compare", str(results), "--where", "negatives=all", "--format", "csv"])
    assert only.exit_code == 0 and set(_csv_cells(only.stdout)["negatives"]) == {"all"}


def _csv_cells(text: str) -> pd.DataFrame:
    """compare's csv rows of our cells (the footer's note rows left out), read as text."""
    frame = pd.read_csv(io.StringIO(text), dtype=str)
    return frame[frame["source"] == "ours"]


def test_the_plot_draws_all_at_the_number_of_items_labelled_all(planted_dir, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    results = tmp_path / "r"
    assert _train(planted_dir, results, "--negatives", "5,all", "--loss", "ccl,ssm").exit_code == 0
    figures = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *args, **kwargs: figures.append(self) or real_savefig(self, *args, **kwargs))
    result = runner.invoke(app, ["compare", str(results), "--metric", "recall@20,gini@20", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    recall, gini = figures[0].axes[:2]
    for axes in (recall, gini):  # a panel per metric, the beyond-accuracy ones too
        assert [label.get_text() for label in axes.get_xticklabels()] == ["5", "all"]
        assert list(axes.get_xticks()) == [5.0, 60.0]
        assert all(list(line.get_xdata()) == [5.0, 60.0] for line in axes.get_lines())
    assert (recall.get_ylabel(), gini.get_ylabel()) == ("recall@20", "gini@20 (lower is better)")


def test_all_is_case_insensitive_as_choices_are(planted_dir, tmp_path):
    """ALL is all (as FP32 is fp32): the same run ids and hashes, on the command line and in files."""
    def planned(*options: str) -> list[str]:
        result = runner.invoke(app, ["train", "--data-dir", str(planted_dir), "--dry-run", "--format", "json", *options])
        assert result.exit_code == 0, result.output
        return [run["run_id"] for run in json.loads(result.stdout)["plan"]]

    expected = planned("--dataset", "planted", "--negatives", "10,all")
    assert planned("--dataset", "planted", "--negatives", "10,ALL") == expected
    experiment = tmp_path / "e.toml"
    experiment.write_text('[settings]\ndataset = "planted"\n[grid]\nnegatives = [10, "All"]\n')
    assert planned("--config", str(experiment)) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--sampler", "popularity"], "--negatives all takes every item but the positive, with no sampling: --sampler popularity does not apply"),
        (["--loss", "directau"], "--loss directau draws no negatives: --negatives all does not apply to it"),
        (["--negatives", "10,al"], "--negatives expects int values or all, got '10,al'"),
    ],
)
def test_all_with_a_sampler_or_directau_is_one_line_and_runs_nothing(planted_dir, tmp_path, options, message):
    result = _train(planted_dir, tmp_path / "r", "--negatives", "all", *options)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in " ".join(result.output.split())
    assert not list(store.iter_run_dirs(tmp_path / "r"))


def test_the_memory_check_counts_a_batch_by_items_score_matrix(planted_dir, tmp_path, monkeypatch):
    every = RunConfig("planted", negatives="all", batch_size=64).resolved()
    sampled = RunConfig("planted", negatives=10, batch_size=64).resolved()
    tables = (120 + 60) * 64 * 4 * 8  # 8 copies of the float32 tables
    assert preflight.training_bytes(every, 120, 60) == tables + 64 * 60 * preflight._DENSE_PER_SCORE
    larger = RunConfig("planted", negatives="all", batch_size=256).resolved()
    assert preflight.training_bytes(larger, 120, 60) - preflight.training_bytes(every, 120, 60) == 192 * 60 * preflight._DENSE_PER_SCORE
    assert preflight.training_bytes(sampled, 120, 60) - tables == 64 * 11 * (64 * 4 * 3 + 6 * 8)  # gathered rows
    # A machine with room for a run at 2 negatives but one byte short of a 64 x 60 score matrix:
    monkeypatch.setattr(preflight, "device_bytes", lambda device: preflight.training_bytes(every, 120, 60) - 1)
    assert _train(planted_dir, tmp_path / "r", "--negatives", "2").exit_code == 0
    result = _train(planted_dir, tmp_path / "r", "--negatives", "2,all")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--negatives all (a 64 x 60 score matrix)" in result.output
    assert [d.name for d in store.iter_run_dirs(tmp_path / "r")] == [next(store.iter_run_dirs(tmp_path / "r")).name]


def test_an_experiment_file_grids_all_beside_numbers(planted_dir, tmp_path):
    experiment = tmp_path / "e.toml"
    experiment.write_text('[settings]\ndataset = "planted"\n[grid]\nloss = ["ccl", "bpr"]\nnegatives = [10, "all"]\n')
    result = runner.invoke(app, ["train", "--config", str(experiment), "--data-dir", str(planted_dir), "--dry-run", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "nall" in result.stdout and result.stdout.count('"negatives": "all"') == 2
    assert not math.isnan(preflight.training_bytes(RunConfig("planted", negatives="all").resolved(), 1, 1))


def test_a_lockstep_group_at_all_negatives_equals_each_run_alone_bit_for_bit(planted_dir, tmp_path):
    from mmlbench.runs.build import group_key
    from mmlbench.runs.group import train_group
    from test_lockstep import _options, _same_run

    base = dict(negatives="all", batch_size=64, lr=0.01, epochs=3)
    groups = [
        [RunConfig("planted", loss="ccl", seed=1, **base), RunConfig("planted", loss="ssm", seed=2, dropout=0.3, **base)],
        [RunConfig("planted", loss=loss, seed=3, l2=1e-3, l2_scope="batch", score="dot", **base) for loss in ("bpr", "mmcl")],
    ]
    sampled = RunConfig("planted", loss="ccl", seed=1, **{**base, "negatives": 59})
    assert group_key(groups[0][0].resolved()) == group_key(groups[0][1].resolved()) != group_key(sampled.resolved())
    for number, configs in enumerate(groups):
        alone = [train_run(config, _options(planted_dir, tmp_path / f"alone{number}")) for config in configs]
        for one, together in zip(alone, train_group(configs, _options(planted_dir, tmp_path / f"group{number}"))):
            _same_run(one, together)
            assert together.row["execution"] == "lockstep" and together.row["negatives"] == "all"


def test_the_batched_group_form_at_all_negatives_stays_within_float_tolerance(planted_dir, monkeypatch):
    """The CUDA form (batched GEMMs over the group's runs) run on the CPU against the per-run form."""
    from test_lockstep import _group_weights

    configs = [RunConfig("planted", loss=loss, seed=seed, negatives="all", batch_size=64, lr=0.01, score=score)
               for loss, seed, score in (("ccl", 1, "cosine"), ("ssm", 2, "cosine"))]  # fmt: skip
    exact_losses, exact_tables = _group_weights(planted_dir, configs, 2)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    from mmlbench.engine import group_step

    tables_scored = []
    real = group_step.every_item_scores
    monkeypatch.setattr(group_step, "every_item_scores", lambda table, *a: tables_scored.append(table.dim()) or real(table, *a))
    losses, tables = _group_weights(planted_dir, configs, 2)
    assert set(tables_scored) == {3}  # [K, I, d]: one batched call per step
    assert torch.tensor(losses).allclose(torch.tensor(exact_losses), rtol=1e-5, atol=1e-7)
    for run, exact_run in zip(tables, exact_tables):
        for table, exact in zip(run, exact_run):
            assert torch.allclose(table, exact, rtol=1e-4, atol=1e-5)


def test_the_logq_correction_is_a_no_op_at_all_negatives(planted_dir):
    data = load_dataset("planted", planted_dir, torch.device("cpu"))
    batch = torch.arange(0, 200, 7)
    losses = []
    for correction in (False, True):
        config = RunConfig("planted", loss="ssm", negatives="all", logq_correction=correction, dropout=0.0).resolved()
        torch.manual_seed(1)
        step = Trainer(config, data, build.parts(config, data, build.model(config, data)), torch.device("cpu"), cuda_graphs=False).step
        assert (step.log_q is not None) == correction
        losses.append(step._score_loss(data.train_users[batch], data.train_items[batch])[0])
    assert torch.equal(losses[0], losses[1])


@pytest.mark.parametrize("model", ["simplex", "lightgcn"])
def test_the_other_encoders_train_at_all_negatives_with_batch_l2(planted_dir, tmp_path, model):
    config = RunConfig("planted", model=model, negatives="all", l2=1e-4, l2_scope="batch", batch_size=64, epochs=2, history_len=8 if model == "simplex" else None)
    outcome = train_run(config, TrainOptions(device="cpu", data_dir=planted_dir, results_dir=tmp_path, quiet=True))
    assert outcome.status == store.STATUS_COMPLETED and math.isfinite(outcome.row["recall@20"])


def test_all_on_a_catalogue_of_one_item_is_one_line(tmp_path):
    import pandas as pd

    from synthetic import write_processed

    frame = pd.DataFrame({"user": [0, 1], "item": [0, 0], "split": ["train", "test"]}).astype({"user": "int32", "item": "int32"})
    write_processed(tmp_path / "d", "one", frame, 2, 1)
    result = runner.invoke(app, ["train", "--dataset", "one", "--data-dir", str(tmp_path / "d"), "--results-dir",
                                 str(tmp_path / "r"), "--negatives", "all", "--k", "1", "--monitor", "recall@1", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 1 and "--negatives all needs at least 2 items; 'one' has 1" in result.output
    assert not list(store.iter_run_dirs(tmp_path / "r"))
