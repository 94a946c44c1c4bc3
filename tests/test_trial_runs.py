"""A tuner's trial runs in the store: `trained` (no test metric) and `pruned` (stopped by a callback).

Pruned runs are listed by `mmlbench runs`, removed by `runs prune --pruned`, never reused and
never averaged by `compare`; neither are trained runs (they hold no test metric).
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.config import RunConfig
from mmlbench.engine.trainer import StopFit
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.single import train_run
from mmlbench.store import ids

CONFIG = RunConfig("planted", negatives=5, batch_size=64, epochs=4, patience=10, lr=0.01)
runner = CliRunner()


def _options(planted_dir, results, **kwargs) -> TrainOptions:
    return TrainOptions(device="cpu", data_dir=planted_dir, results_dir=results, quiet=True, **kwargs)


def _stop_after(epoch: int):
    def on_epoch(log):
        if log.epoch == epoch:
            raise StopFit

    return on_epoch


def test_a_run_stopped_by_its_callback_is_stored_pruned_listed_and_pruned_away(planted_dir, tmp_path):
    results = tmp_path / "r"
    options = _options(planted_dir, results, checkpoint_every=0, marks={"study": "s", "trial": 3, "selection": "trial"})
    pruned = train_run(CONFIG, options, on_epoch=_stop_after(2), test=False)
    assert pruned.status == store.STATUS_PRUNED and pruned.row["epochs_run"] == 2
    assert (pruned.row["study"], pruned.row["trial"], pruned.row["selection"]) == ("s", 3, "trial")
    assert store.read_curve(pruned.run_dir)["epoch"].tolist() == [1, 2]
    assert not (pruned.run_dir / store.CHECKPOINT_FILE).exists()  # nothing to resume or evaluate
    assert not ids.resume_folder(results, pruned.row["run_id"]).exists()

    listed = json.loads(runner.invoke(app, ["runs", "--results-dir", str(results), "--format", "json"]).stdout)
    assert [run["status"] for run in listed] == ["pruned"]
    again = train_run(CONFIG, _options(planted_dir, results), test=False)  # never reused: trained over
    assert not again.skipped and again.status == store.STATUS_TRAINED and again.row["epochs_run"] == 4

    assert train_run(CONFIG, _options(planted_dir, results), on_epoch=_stop_after(1), test=False).skipped  # reused
    assert store.read_runs(results)["status"].tolist() == [store.STATUS_TRAINED]
    compared = runner.invoke(app, ["compare", str(results)])
    assert compared.exit_code == 2 and "no completed runs" in compared.stderr and "1 trained" in compared.stderr


def test_runs_prune_pruned_removes_only_the_pruned_trials(planted_dir, tmp_path):
    results = tmp_path / "r"
    train_run(CONFIG, _options(planted_dir, results), on_epoch=_stop_after(1), test=False)
    train_run(RunConfig("planted", negatives=5, batch_size=64, epochs=1), _options(planted_dir, results), test=False)
    pruned = runner.invoke(app, ["runs", "prune", "--pruned", "--results-dir", str(results)])
    assert pruned.exit_code == 0, pruned.output
    assert store.read_runs(results)["status"].tolist() == [store.STATUS_TRAINED]


def test_a_trial_reuses_a_completed_run_without_marking_it_and_a_final_seed_marks_it(planted_dir, tmp_path):
    results = tmp_path / "r"
    completed = train_run(CONFIG, _options(planted_dir, results))
    trial = train_run(CONFIG, _options(planted_dir, results, marks={"study": "s", "trial": 0, "selection": "trial"}), test=False)
    assert trial.skipped and trial.run_dir == completed.run_dir and "selection" not in store.read_run(completed.run_dir)
    final = train_run(CONFIG, _options(planted_dir, results, marks={"study": "s", "trial": 0, "selection": "tuned"}))
    assert final.skipped and (final.row["selection"], final.row["study"]) == ("tuned", "s")
