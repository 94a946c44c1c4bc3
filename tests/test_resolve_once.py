"""Each run's config is resolved once, by the experiment; every layer below receives it resolved.

Resolving fills in a plug-in's defaults and checks every value (a warning, such as MMCL's margin
weights not summing to 1, each time). Counted here on the command line's paths: one run after
another, a lockstep group, a dry run; a `--jobs` or Ray worker gets its config pickled, and a
config resolved once is still resolved on the other side.
"""

from __future__ import annotations

import pickle

import pytest
from typer.testing import CliRunner

from mmlbench.cli import app
from mmlbench.config import RunConfig
from mmlbench.plan.executors.base import fingerprint_of
from mmlbench.plan.executors.local_worker import run_in_worker
from mmlbench.plan.executors.ray_worker import run_cell
from mmlbench.runs.options import TrainOptions

runner = CliRunner()
FAST = ["--negatives", "5", "--batch-size", "64", "--epochs", "2", "--device", "cpu", "-q"]


@pytest.fixture
def resolutions(monkeypatch) -> list[RunConfig]:
    """The configs resolved (the work, not the calls that find a config resolved already)."""
    seen: list[RunConfig] = []
    original = RunConfig._resolve

    def counting(self):
        seen.append(self)
        return original(self)

    monkeypatch.setattr(RunConfig, "_resolve", counting)
    return seen


@pytest.mark.parametrize("args", [[], ["--backend", "lockstep"], ["--dry-run"]], ids=["alone", "lockstep", "dry-run"])
def test_the_command_line_resolves_each_run_once(resolutions, planted_dir, tmp_path, args):
    result = runner.invoke(app, [
        "train", "--dataset", "planted", "--loss", "ccl,mmcl", "--data-dir", str(planted_dir),
        "--results-dir", str(tmp_path / "r"), *FAST, *args,
    ])
    assert result.exit_code == 0, result.output
    assert sorted(config.loss for config in resolutions) == ["ccl", "mmcl"]


@pytest.mark.parametrize("worker", ["jobs", "ray"])
def test_a_worker_gets_the_config_resolved(resolutions, planted_dir, tmp_path, worker):
    config = RunConfig("planted", negatives=5, batch_size=64, epochs=1).resolved()
    shipped = pickle.loads(pickle.dumps(config))  # what crosses the pipe, or Ray's object store
    assert shipped.resolved() is shipped and len(resolutions) == 1
    options = TrainOptions(device="cpu", data_dir=planted_dir, results_dir=tmp_path / "r", quiet=True)
    if worker == "jobs":
        entry = run_in_worker(shipped, options)
    else:
        entry = run_cell(shipped, options, fingerprint_of("planted", planted_dir), False).entry
    assert entry.status == "completed" and len(resolutions) == 1
