"""Runs trained in lockstep equal the same runs alone: bit for bit on the CPU.

Each run in a group draws from its own generator continuing the stream it would have drawn
from alone, and the group step does per run what TrainStep does, so the comparisons below
are exact (==), not approximate.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.engine.group_step import GroupStep
from mmlbench.plan.executors import get_executor
from mmlbench.plan.executors.lockstep import plan_groups
from mmlbench.plan.sweep import run_sweep
from mmlbench.runs.build import group_key
from mmlbench.runs.group import train_group
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.single import train_run
from mmlbench.store import claims

BASE = dict(negatives=10, batch_size=64, lr=0.01, epochs=5, patience=3)
CURVE = ["epoch", "loss", "violations", "lr", "recall@10", "recall@20", "ndcg@20"]


def _options(planted_dir, results_dir, **kwargs) -> TrainOptions:
    return TrainOptions(device="cpu", data_dir=planted_dir, results_dir=results_dir, quiet=True, **kwargs)


def _three() -> list[RunConfig]:
    return [
        RunConfig("planted", loss="ccl", seed=1, **BASE),
        RunConfig("planted", loss="mmcl", seed=2, dropout=0.3, **{**BASE, "lr": 0.02}),
        RunConfig("planted", loss="bpr", seed=3, l2=1e-3, grad_clip=0.05, **BASE),  # clipping active
    ]


def _same_run(alone, grouped) -> None:
    curve_alone, curve_group = store.read_curve(alone.run_dir), store.read_curve(grouped.run_dir)
    pd.testing.assert_frame_equal(curve_alone[CURVE], curve_group[CURVE], check_exact=True)
    for column in ("best_epoch", "epochs_run", "monitor_value", "recall@20", "ndcg@20", "recall@10"):
        assert alone.row[column] == grouped.row[column], column
    per_user = store.read_per_user(alone.run_dir), store.read_per_user(grouped.run_dir)
    pd.testing.assert_frame_equal(*per_user, check_exact=True)
    weights = [torch.load(run.run_dir / store.CHECKPOINT_FILE)["state_dict"] for run in (alone, grouped)]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_a_group_of_three_losses_equals_each_run_alone_bit_for_bit(planted_dir, tmp_path):
    configs = _three()
    alone = [train_run(config, _options(planted_dir, tmp_path / "alone")) for config in configs]
    grouped = train_group(configs, _options(planted_dir, tmp_path / "group"))
    for one, together in zip(alone, grouped):
        _same_run(one, together)
        assert together.row["execution"] == "lockstep" and together.row["lockstep_group"] == 3
        assert together.row["precision"] == "fp32"
        assert one.row["execution"] == "alone" and one.row["lockstep_group"] == 1


def test_runs_sharing_a_loss_with_mixed_l2_scopes_and_dot_scores_equal_alone(planted_dir, tmp_path):
    """Two runs of one loss, apart in the group (one batched loss call on CUDA), batch- and table-scope L2."""
    for score in ("cosine", "dot"):
        base = {**BASE, "score": score}
        configs = [
            RunConfig("planted", loss="bpr", seed=1, l2=1e-3, l2_scope="batch", **base),
            RunConfig("planted", loss="ccl", seed=2, **base),
            RunConfig("planted", loss="bpr", seed=3, l2=1e-2, grad_clip=0.05, **base),
        ]
        alone = [train_run(config, _options(planted_dir, tmp_path / f"alone-{score}")) for config in configs]
        for one, together in zip(alone, train_group(configs, _options(planted_dir, tmp_path / f"group-{score}"))):
            _same_run(one, together)


def test_runs_without_clipping_and_with_the_user_uniform_epoch_equal_alone(planted_dir, tmp_path):
    """--grad-clip 0 (an infinite norm in the group's clipping) and --epoch-sampling user-uniform
    (each run's epoch drawn from its own generator) beside a run of the default epoch."""
    configs = [
        RunConfig("planted", loss="bpr", seed=1, grad_clip=0.0, **{**BASE, "lr": 0.05}),
        RunConfig("planted", loss="ccl", seed=2, epoch_sampling="user-uniform", **BASE),
        RunConfig("planted", loss="mmcl", seed=3, epoch_sampling="user-uniform", grad_clip=0.0, **BASE),
    ]
    alone = [train_run(config, _options(planted_dir, tmp_path / "alone")) for config in configs]
    for one, together in zip(alone, train_group(configs, _options(planted_dir, tmp_path / "group"))):
        _same_run(one, together)


def _group_weights(planted_dir, configs, epochs, **step_options):
    """Train `configs` as one GroupStep for `epochs` epochs: each run's losses and final tables."""
    from mmlbench.data.dataset import load_dataset
    from mmlbench.runs.group import make_member

    device = torch.device("cpu")
    data = load_dataset("planted", planted_dir, device)
    members = [make_member(config.resolved(), data, device) for config in configs]
    step = GroupStep(members, data, device, use_graph=False, **step_options)
    losses = [step.run_epoch() for _ in range(epochs)]
    return losses, [[t.detach().clone() for t in m.tables] for m in members]


MIXED_LOSSES = [
    RunConfig("planted", loss="mmcl", seed=1, **BASE),
    RunConfig("planted", loss="ccl", seed=2, dropout=0.3, **BASE),
    RunConfig("planted", loss="mmcl", seed=3, **{**BASE, "lr": 0.02}),
    RunConfig("planted", loss="ssm", seed=4, **BASE),
]
ONE_LOSS = [RunConfig("planted", loss="ccl", seed=seed, **BASE) for seed in (5, 6)]


@pytest.mark.parametrize("configs", [MIXED_LOSSES, ONE_LOSS], ids=["mixed-losses", "one-loss"])
def test_batched_losses_and_the_dense_scores_keep_each_run_within_float_tolerance(planted_dir, monkeypatch, configs):
    """The CUDA forms run on the CPU: one vmapped loss call per loss, and the batched dense cosine."""
    exact_losses, exact_tables = _group_weights(planted_dir, configs, 3, batched_losses=False)
    calls = []
    monkeypatch.setattr("mmlbench.engine.group_step.dense_is_cheaper", lambda table, index: calls.append("dense") or True)
    real_vmap = torch.vmap
    monkeypatch.setattr(torch, "vmap", lambda fn: calls.append(fn) or real_vmap(fn))
    losses, tables = _group_weights(planted_dir, configs, 3, batched_losses=True)
    assert {"dense"} < set(calls)  # both CUDA forms ran: the dense scores and vmapped losses
    assert torch.tensor(losses).allclose(torch.tensor(exact_losses), rtol=1e-5, atol=1e-7)
    for run, exact_run in zip(tables, exact_tables):
        for table, exact in zip(run, exact_run):
            assert torch.allclose(table, exact, rtol=1e-4, atol=1e-5)  # measured: at most 1.5e-6 apart


def test_a_run_that_stops_early_leaves_the_group_with_its_alone_result(planted_dir, tmp_path):
    # lr so small nothing improves after the first evaluation: it stops after `patience` more,
    # with a plateau decay and a best-weights reload on the way; the others go on.
    stopper = RunConfig("planted", loss="ccl", seed=4, **{**BASE, "lr": 1e-9, "patience": 2, "epochs": 8})
    configs = [stopper, *_three()[:2]]
    alone = train_run(stopper, _options(planted_dir, tmp_path / "alone"))
    grouped = train_group(configs, _options(planted_dir, tmp_path / "group"))
    assert alone.row["epochs_run"] < 5 == grouped[1].row["epochs_run"]
    _same_run(alone, grouped[0])
    _same_run(train_run(configs[2], _options(planted_dir, tmp_path / "alone")), grouped[2])  # after the restack


def test_incompatible_configs_train_alone(planted_dir, tmp_path):
    configs = [
        RunConfig("planted", loss="ccl", **BASE),
        RunConfig("planted", loss="ccl", **{**BASE, "negatives": 5}),  # another shape
        RunConfig("planted", loss="ccl", sampler="in-batch", **BASE),  # draws nothing: needs the batch
        RunConfig("planted", loss="ccl", seed=5, **BASE),
    ]
    options = _options(planted_dir, tmp_path / "results")
    assert plan_groups(configs) == [[0, 3], [1], [2]]
    assert group_key(configs[2].resolved()) is None
    assert group_key(RunConfig("planted", loss="directau", **BASE).resolved()) is None  # vectors, not scores
    entries = run_sweep(configs, options, executor=get_executor("lockstep"))
    assert [entry.status for entry in entries] == ["completed"] * 4
    assert [entry.outcome.row["execution"] for entry in entries] == ["lockstep", "alone", "alone", "lockstep"]


def test_a_group_larger_than_the_memory_allows_is_cut_into_groups_that_fit(planted_dir, tmp_path, monkeypatch):
    from mmlbench.runs import preflight

    configs = [RunConfig("planted", loss="ccl", seed=seed, **BASE) for seed in (1, 2, 3)]
    one_run = preflight.training_bytes(configs[0].resolved(), 120, 60)
    monkeypatch.setattr(preflight, "device_bytes", lambda device: int(2.5 * one_run))  # room for two
    options = _options(planted_dir, tmp_path / "results")
    entries = run_sweep(configs, options, executor=get_executor("lockstep"))
    assert [entry.status for entry in entries] == ["completed"] * 3
    assert [entry.outcome.row["lockstep_group"] for entry in entries] == [2, 2, 1]
    assert [entry.outcome.row["execution"] for entry in entries] == ["lockstep", "lockstep", "alone"]
    monkeypatch.setattr(preflight, "device_bytes", lambda device: 100 * one_run)
    assert plan_groups(configs, lambda c: preflight.lockstep_size_limit(c, "cpu", planted_dir)) == [[0, 1, 2]]


def test_group_adam_equals_torch_adam_on_a_slice(planted_dir, tmp_path):
    """The group's optimiser (torch's functional Adam on slices, one call per lr) against torch.optim.Adam."""
    from mmlbench.data.dataset import load_dataset
    from mmlbench.runs.group import make_member

    data = load_dataset("planted", planted_dir, torch.device("cpu"))
    configs = [RunConfig("planted", lr=0.01, seed=1).resolved(), RunConfig("planted", lr=0.003, seed=2).resolved()]
    members = [make_member(config, data, torch.device("cpu")) for config in configs]
    step = GroupStep(members, data, torch.device("cpu"), use_graph=False)
    reference = members[1].trainer.model.item_embedding.weight.detach().clone().requires_grad_()
    optimizer = torch.optim.Adam([reference], lr=0.003, fused=True)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        grads = [torch.randn(t.shape, generator=generator) for t in step.tables]
        for table, grad in zip(step.tables, grads):
            table.grad = grad
        reference.grad = grads[1][1].clone()
        step._adam()
        optimizer.step()
    assert torch.equal(step.tables[1][1].detach(), reference.detach())
    assert not torch.equal(step.tables[1][0].detach(), reference.detach())


def test_claims_every_run_of_the_group_and_skips_one_claimed_elsewhere(planted_dir, tmp_path, monkeypatch):
    results = tmp_path / "results"
    configs = _three()
    from mmlbench.data.dataset import load_dataset

    fingerprint = load_dataset("planted", planted_dir, torch.device("cpu")).fingerprint
    busy = configs[1].resolved().hash(fingerprint)
    held: list[str] = []
    real = claims.claimed

    def claimed(results_dir, config_hash, *run):
        if config_hash == busy:
            raise claims.ClaimedElsewhere("claimed by another sweep")
        held.append(config_hash)
        return real(results_dir, config_hash, *run)

    monkeypatch.setattr(claims, "claimed", claimed)
    outcomes = train_group(configs, _options(planted_dir, results))
    assert isinstance(outcomes[1], claims.ClaimedElsewhere)
    assert len(held) == 2 and all(outcome.row["execution"] == "lockstep" for outcome in (outcomes[0], outcomes[2]))
    assert outcomes[0].row["lockstep_group"] == 2


def test_ctrl_c_stores_every_run_of_the_group_as_interrupted(planted_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = GroupStep.run_epoch

    def interrupt_on_third(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(GroupStep, "run_epoch", interrupt_on_third)
    entries = run_sweep(_three(), _options(planted_dir, tmp_path / "results"), executor=get_executor("lockstep"))
    assert [entry.status for entry in entries] == [store.STATUS_INTERRUPTED] * 3
    assert all(entry.outcome.row["epochs_run"] == 2 and entry.outcome.row["recall@10"] > 0 for entry in entries)
    again = run_sweep(_three(), _options(planted_dir, tmp_path / "results"), executor=get_executor("lockstep"))
    assert [entry.status for entry in again] == ["completed"] * 3
    assert [entry.outcome.row["resumed_from_epoch"] for entry in again] == [2, 2, 2]  # in their group again
    assert [entry.outcome.row["execution"] for entry in again] == ["lockstep"] * 3


def test_a_diverging_run_fails_alone_and_the_others_finish(planted_dir, tmp_path, monkeypatch):
    real = GroupStep.run_epoch
    monkeypatch.setattr(GroupStep, "run_epoch", lambda self: [(float("nan"), 0.0) if m.config.loss == "mmcl" else pair for m, pair in zip(self.members, real(self))])
    entries = run_sweep(_three(), _options(planted_dir, tmp_path / "results"), executor=get_executor("lockstep"))
    assert [entry.status for entry in entries] == ["completed", store.STATUS_FAILED, "completed"]
    assert "diverged at epoch 1" in entries[1].error


def test_rows_without_the_execution_columns_still_compare(planted_dir, tmp_path):
    """An older run (no execution/precision columns) and a lockstep one sit in one compare cell."""
    from typer.testing import CliRunner

    from mmlbench.cli import app

    results = tmp_path / "results"
    old = train_run(RunConfig("planted", loss="ccl", seed=1, **BASE), _options(planted_dir, results))
    row = store.read_run(old.run_dir)
    for column in ("execution", "lockstep_group", "precision"):
        row.pop(column)
    pd.DataFrame([row]).to_parquet(old.run_dir / store.RUN_FILE, index=False)
    grouped = train_group([RunConfig("planted", loss="ccl", seed=seed, **BASE) for seed in (9, 10)], _options(planted_dir, results))
    assert [outcome.row["execution"] for outcome in grouped] == ["lockstep", "lockstep"]
    result = CliRunner().invoke(app, ["compare", str(results), "--rows", "loss", "--metric", "recall@20"])
    assert result.exit_code == 0, result.output
    assert "mixes" not in result.output and "ccl" in result.output


def test_train_backend_lockstep_on_the_command_line(planted_dir, tmp_path):
    from typer.testing import CliRunner

    from mmlbench.cli import app

    results = tmp_path / "results"
    common = ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results), "--device", "cpu"]
    small = ["--negatives", "5", "--batch-size", "64", "--epochs", "2", "-q"]
    result = CliRunner().invoke(app, [*common, *small, "--loss", "ccl,bpr", "--backend", "lockstep"])
    assert result.exit_code == 0, result.output
    assert store.read_runs(results)["execution"].tolist() == ["lockstep", "lockstep"]
    refused = CliRunner().invoke(app, [*common, *small, "--backend", "lockstep", "--jobs", "2"])
    assert refused.exit_code == 1 and "--jobs applies to --backend local" in refused.output
