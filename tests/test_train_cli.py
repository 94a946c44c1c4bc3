"""`mmlbench train` and `mmlbench evaluate` through the real CLI: runs, sweeps, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app

runner = CliRunner()
FAST = ["--negatives", "5", "--batch-size", "64", "--lr", "0.01", "--epochs", "3", "--device", "cpu", "-q"]


def _train(planted_dir: Path, results: Path, *args: str):
    return runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results), *FAST, *args])


def test_train_one_run_prints_metrics_and_stores_it(planted_dir, tmp_path):
    result = _train(planted_dir, tmp_path / "r", "--loss", "mmcl")
    assert result.exit_code == 0, result.output
    assert "recall" in result.stdout and "protocol: test-as-validation" in result.stdout
    runs = store.read_runs(tmp_path / "r")
    assert runs[["loss", "status", "negatives"]].values.tolist() == [["mmcl", "completed", 5]]


def test_sweep_runs_every_combination_and_resumes(planted_dir, tmp_path):
    results = tmp_path / "r"
    result = _train(planted_dir, results, "--loss", "ccl,bpr", "--seeds", "2")
    assert result.exit_code == 0, result.output
    runs = store.read_runs(results)
    assert sorted(zip(runs["loss"], runs["seed"])) == [("bpr", 2019), ("bpr", 2020), ("ccl", 2019), ("ccl", 2020)]
    # Simulate a kill mid-sweep: one run lost, one left as an unfinished temp folder.
    lost = Path(runs.loc[runs["loss"].eq("bpr") & runs["seed"].eq(2020), "run_dir"].iloc[0])
    lost.rename(lost.with_name(f".{lost.name}.tmp-1-dead"))
    before = {d.name: (d / store.RUN_FILE).stat().st_mtime_ns for d in store.iter_run_dirs(results)}
    plan = _train(planted_dir, results, "--loss", "ccl,bpr", "--seeds", "2", "--dry-run")
    assert "3 runs" not in plan.stdout and plan.stdout.count("done") == 3 and plan.stdout.count("to run") >= 1
    resumed = _train(planted_dir, results, "--loss", "ccl,bpr", "--seeds", "2")
    assert resumed.exit_code == 0
    after = {d.name: (d / store.RUN_FILE).stat().st_mtime_ns for d in store.iter_run_dirs(results)}
    assert len(after) == 4
    assert all(after[name] == stamp for name, stamp in before.items())  # completed runs untouched
    assert "3 skipped" in resumed.stdout and "1 completed" in resumed.stdout


def test_one_failing_run_does_not_stop_the_sweep(planted_dir, tmp_path):
    # --negatives 100 with uniform-exclude-pos is impossible on 60 items; 5 is fine.
    result = _train(planted_dir, tmp_path / "r", "--sampler", "uniform-exclude-pos", "--negatives", "5,100")
    assert result.exit_code == 1
    assert "1 of 2 runs failed" in result.stderr
    assert store.read_runs(tmp_path / "r")["negatives"].tolist() == [5]


def test_experiment_file_with_per_loss_parameters(planted_dir, tmp_path):
    experiment = tmp_path / "exp.toml"
    experiment.write_text(
        '[settings]\ndataset = "planted"\nepochs = 2\nbatch_size = 64\n'
        '[grid]\nloss = ["ccl", "mmcl"]\nnegatives = [5]\n'
        '[losses.mmcl]\nmargins = [0.5, 0.9]\nmargin_weights = [0.5, 0.5]\nnegative_weight = 20.0\n'
    )
    result = runner.invoke(app, ["train", "--config", str(experiment), "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    runs = store.read_runs(tmp_path / "r").set_index("loss")
    assert runs.loc["mmcl", "margins"] == "0.5,0.9" and runs.loc["mmcl", "negative_weight"] == 20.0
    assert runs.loc["ccl", "negative_weight"] == 150.0 and pd.isna(runs.loc["ccl", "margins"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "mmcll"], "Did you mean 'mmcl'"),
        (["--model", "ngcf"], "unknown model 'ngcf'"),
        (["--loss", "mmcl", "--margins", "0.7,0.8", "--margin-weights", "1"], "one weight per margin"),
        (["--loss", "mmcl", "--margins", "0.7,1.2", "--margin-weights", "0.5,0.5"], "[-1, 1]"),
        (["--negatives", "0"], "--negatives must be >= 1"),
        (["--monitor", "recall@30"], "needs 30 among --k"),
        (["--negatives", "ten"], "--negatives expects int"),
        (["--device", "cuda"], "sees no CUDA GPU"),
        (["--seeds", "2", "--seed", "1,2"], "not both"),
        (["--seeds", "0"], "--seeds must be >= 1, got 0"),
        (["--lr", "nan"], "--lr must be a finite number, got nan"),
        (["--plateau-lr-factor", "inf"], "--plateau-lr-factor must be a finite number, got inf"),
        (["--seed", "-1"], "--seed must be >= 0, got -1"),
        (["--sampler", "popularity", "--popularity-alpha", "-1"], "--popularity-alpha must be >= 0 (0: uniform; 1: as popular as in training), got -1"),
        (["--l2", "1e300"], "--l2 must be 0 or a number within float32's range (1.2e-38 to 3.4e+38 in magnitude), got 1e+300"),
        (["--lr", "0.01,1e-50"], "--lr must be 0 or a number within float32's range"),  # would be 0 in float32
        (["--loss", "mmcl", "--margins", "0.7,nan", "--margin-weights", "0.5,0.5"], "--margins must be a list of numbers"),
        (["--loss", "ccl", "--margins", "0.7,0.8"], "--margins does not apply to loss 'ccl'"),
        (["--negatives", "1000000000"], "--negatives 1000000000, --batch-size 64 and --embedding-dim 64 need about"),
        (["--embedding-dim", "2000000000"], "lower one of them"),
        (["--negatives", "5,1000000000"], "--negatives 1000000000"),  # refused before the first cell runs
    ],
)
def test_bad_input_is_one_line_and_leaves_the_store_untouched(planted_dir, tmp_path, args, message):
    result = _train(planted_dir, tmp_path / "r", *args)
    assert result.exit_code == 1
    assert message in _one_line(result.stderr)
    assert result.stdout == ""  # no one-row sweep table: the error line alone
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('epochs = "ten"', "epochs in [settings] of {} must be an integer, got 'ten'"),
        ("epochs = 1.7", "epochs in [settings] of {} must be an integer, got 1.7"),
        ("negatives = true", "negatives in [settings] of {} must be an integer or 'all', got true"),
        ("lr = nan", "lr in [settings] of {} must be a finite number, got nan"),
        ("l2 = 1e300", "l2 in [settings] of {} must be 0 or a number within float32's range (1.2e-38 to 3.4e+38 in magnitude), got 1e+300"),
    ],
)
def test_bad_experiment_value_is_one_line_before_anything_runs(planted_dir, tmp_path, setting, message):
    experiment = tmp_path / "exp.toml"
    experiment.write_text(f'[settings]\ndataset = "planted"\n{setting}\n')
    result = runner.invoke(app, ["train", "--config", str(experiment), "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), "--device", "cpu", "-q"])
    assert result.exit_code == 1
    assert result.stderr == f"error: {message.format(experiment)}\n"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("quick", "message"),
    [
        ("epochs = 1", "unknown key 'epochs' in [quick] of {}"),
        ("setings = { epochs = 1 }", "unknown key 'setings' in [quick] of {}. Did you mean 'settings'?"),
        ("lr = nan", "unknown key 'lr' in [quick] of {}"),
        ("settings = { lr = nan }", "lr in [quick.settings] of {} must be a finite number, got nan"),
    ],
)
def test_a_bad_quick_table_is_one_line_not_the_full_plan(planted_dir, tmp_path, quick, message):
    experiment = tmp_path / "exp.toml"
    experiment.write_text(f'[settings]\ndataset = "planted"\nepochs = 50\n[quick]\n{quick}\n')
    result = runner.invoke(app, ["train", "--config", str(experiment), "--quick", "--dry-run", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert _one_line(result.stderr).startswith(f"error: {message.format(experiment)}")
    assert result.stdout == ""  # no plan


def test_seeds_start_at_the_experiment_files_seed(planted_dir, tmp_path):
    experiment = tmp_path / "exp.toml"
    experiment.write_text('[settings]\ndataset = "planted"\nseed = 7\n')
    args = ["train", "--config", str(experiment), "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), "--seeds", "3", "--dry-run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [f"-s{seed}-" in result.stdout for seed in (7, 8, 9, 2019)] == [True, True, True, False]
    override = runner.invoke(app, [*args, "--seed", "40"])
    assert [f"-s{seed}-" in override.stdout for seed in (40, 41, 42, 7)] == [True, True, True, False]


def test_unknown_loss_table_is_one_line(planted_dir, tmp_path):
    experiment = tmp_path / "exp.toml"
    experiment.write_text('[settings]\ndataset = "planted"\n[losses.cll]\nmargin = 0.5\n')
    result = runner.invoke(app, ["train", "--config", str(experiment), "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), "--device", "cpu", "-q"])
    assert result.exit_code == 1
    assert "unknown loss" in result.stderr and "Did you mean 'ccl'" in result.stderr
    assert not (tmp_path / "r").exists()


def test_unprocessed_dataset_names_the_command_to_run(tmp_path):
    # --no-fetch: otherwise train downloads gowalla itself (tests/test_autofetch.py).
    result = runner.invoke(app, ["train", "--dataset", "gowalla", "--no-fetch", "--data-dir", str(tmp_path), "--results-dir", str(tmp_path / "r"), "--device", "cpu"])
    assert result.exit_code == 1
    assert "mmlbench preprocess gowalla" in _one_line(result.stderr)
    assert result.stdout == ""


def test_an_unregistered_dataset_is_not_told_to_download(tmp_path):
    result = runner.invoke(app, ["train", "--dataset", "gowala", "--data-dir", str(tmp_path), "--results-dir", str(tmp_path / "r"), "--device", "cpu"])
    assert result.exit_code == 1
    line = _one_line(result.stderr)
    assert "is not a registered dataset (did you mean 'gowalla'?" in line and "mmlbench download" not in line
    assert "`mmlbench preprocess --input FILE --name gowala " in line


def test_evaluate_rescores_at_other_k_and_exports_top_k(planted_dir, tmp_path):
    results = tmp_path / "r"
    assert _train(planted_dir, results).exit_code == 0
    run_dir = next(store.iter_run_dirs(results))
    export = tmp_path / "top.parquet"
    result = runner.invoke(app, ["evaluate", run_dir.name[:20], "--k", "3,20", "--export-topk", str(export), "--results-dir", str(results), "--data-dir", str(planted_dir), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    top = pd.read_parquet(export)
    assert len(top) == 120 * 20 and top.groupby("user")["rank"].max().eq(20).all()
    assert top["item"].between(0, 59).all()
    saved = pd.read_parquet(run_dir / "eval-test.parquet").iloc[0]
    stored = store.read_run(run_dir)
    assert saved["recall@20"] == pytest.approx(stored["recall@20"])  # same checkpoint, same numbers


def test_evaluate_rejects_a_corrupt_checkpoint(planted_dir, tmp_path):
    results = tmp_path / "r"
    assert _train(planted_dir, results).exit_code == 0
    run_dir = next(store.iter_run_dirs(results))
    (run_dir / store.CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["evaluate", str(run_dir), "--data-dir", str(planted_dir), "--device", "cpu"])
    assert result.exit_code == 1
    assert "corrupt" in result.stderr and "Traceback" not in result.output


def test_train_runs_as_a_real_subprocess(planted_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "mmlbench", "train", "--dataset", "planted", "--data-dir", str(planted_dir),
         "--results-dir", str(tmp_path / "r"), *FAST],
        capture_output=True, text=True, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ndcg" in proc.stdout
    assert len(list(store.iter_run_dirs(tmp_path / "r"))) == 1


def test_jobs_run_several_runs_in_worker_processes(planted_dir, tmp_path):
    result = _train(planted_dir, tmp_path / "r", "--loss", "ccl,bpr", "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert "2 completed" in result.stdout
    assert sorted(store.read_runs(tmp_path / "r")["loss"]) == ["bpr", "ccl"]


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_unwritable_results_folder_is_found_before_training(planted_dir, tmp_path, monkeypatch):
    # A file in the path; as root, chmod would not stop writes, so no read-only folder here.
    (tmp_path / "file").write_text("")
    results = tmp_path / "file" / "results"
    monkeypatch.setattr("mmlbench.engine.trainer.Trainer.fit", lambda self: pytest.fail("trained anyway"))
    result = _train(planted_dir, results, "--loss", "ccl,bpr")
    assert result.exit_code == 1
    assert f"cannot write to the results folder {results}: Not a directory" in _one_line(result.stderr)
    assert "sweep" not in result.stdout and "Traceback" not in result.output


@pytest.mark.parametrize("writer", ["torch.save", "pandas.DataFrame.to_parquet"])
def test_full_disk_at_the_final_write_is_one_line_and_stops_the_sweep(planted_dir, tmp_path, monkeypatch, writer):
    import pandas
    import torch

    real = torch.save if writer == "torch.save" else pandas.DataFrame.to_parquet
    calls = []

    def write_to_full_disk(obj, target, *args, **kwargs):  # every write to /dev/full fails with ENOSPC
        calls.append(target)
        with open("/dev/full", "wb") as full:
            return real(obj, full, *args, **kwargs)

    monkeypatch.setattr(writer, write_to_full_disk)
    results = tmp_path / "r"
    result = _train(planted_dir, results, "--loss", "ccl,bpr", "--checkpoint-every", "0")
    assert result.exit_code == 1
    # torch.save first writes epoch 1's resume checkpoint (--checkpoint-every 0); to_parquet only the final run folder.
    assert "disk full while writing planted-mf-ccl-n5-s2019-" in _one_line(result.stderr)
    assert len(calls) == 1  # the second run was not trained for nothing
    runs = store.runs_dir(results)
    # Temp folder removed, nothing half-written; a finished run's resume checkpoint stays, so the
    # same command stores it once there is room again.
    assert [p.name for p in runs.iterdir() if not p.name.endswith(".resume")] == [".claims"]
    assert list((runs / ".claims").iterdir()) == []


@pytest.mark.parametrize("every", ["-1", "nan"])
def test_a_negative_checkpoint_interval_is_one_line_and_writes_nothing(planted_dir, tmp_path, every):
    results = tmp_path / "r"
    result = _train(planted_dir, results, "--checkpoint-every", every)
    assert result.exit_code == 1
    assert _one_line(result.stderr) == f"error: --checkpoint-every must be 0 or more seconds, not {every}"
    assert not results.exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_debug_shows_the_traceback_of_the_run_that_failed(planted_dir, tmp_path, jobs):
    # 100 negatives excluding positives cannot be drawn from 60 items: check_against_data raises.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "mmlbench", "--debug", "train", "--dataset", "planted", "--data-dir", str(planted_dir),
         "--results-dir", str(tmp_path / "r"), *FAST, "--sampler", "uniform-exclude-pos", "--negatives", "100,200",
         "--jobs", jobs],
        capture_output=True, text=True, env=env, check=False,
    )
    assert proc.returncode == 1
    assert "in check_against_data" in proc.stderr  # the frame that raised, not only cli/train.py
    assert "more than the" in proc.stderr
