"""--precision fp32|tf32: a setting of the run, CUDA only, hash-neutral at fp32."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.config import HASH_NEUTRAL, RunConfig
from mmlbench.engine.device import matmul_precision
from mmlbench.runs.build import group_key

runner = CliRunner()
COMMITTED_RUNS = sorted(Path(__file__).resolve().parent.parent.glob("results/paper/*/runs/*/run.parquet"))


def test_committed_runs_keep_their_hashes():
    """Rows stored before the HASH_NEUTRAL settings existed (every other setting; those, if
    there, at their neutral value) rebuild to their stored hash, so `train` still reuses them."""
    settings = {f.name for f in dataclasses.fields(RunConfig) if f.default is not None} - set(HASH_NEUTRAL)  # all hashed
    rows = [pd.read_parquet(path).iloc[0].to_dict() for path in COMMITTED_RUNS]
    rows = [row for row in rows if settings <= row.keys()]
    assert len(rows) >= 20, "the repository's committed paper runs are the fixture here"
    for row in rows:
        config = RunConfig.from_row(row)
        assert config.precision == "fp32" and config.head_fraction == 0.2
        assert config.hash(row["dataset_sha256"]) == row["config_hash"], row["run_id"]


def test_tf32_is_another_setting_and_another_group():
    fp32, tf32 = RunConfig("planted"), RunConfig("planted", precision="tf32")
    assert fp32.hash("data") != tf32.hash("data")
    assert fp32.hash("data", with_seed=False) != tf32.hash("data", with_seed=False)
    assert group_key(fp32.resolved()) != group_key(tf32.resolved())


def test_rows_stored_before_the_setting_read_as_fp32(planted_dir, tmp_path):
    result = runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"),
        "--device", "cpu", "--epochs", "1", "--negatives", "5", "-q",
    ])
    assert result.exit_code == 0, result.output
    run_dir = next(store.iter_run_dirs(tmp_path / "r"))
    row = store.read_run(run_dir)
    assert row["precision"] == "fp32"
    pd.DataFrame([{k: v for k, v in row.items() if k != "precision"}]).to_parquet(run_dir / store.RUN_FILE, index=False)
    assert store.read_run(run_dir)["precision"] == "fp32"
    shown = runner.invoke(app, ["compare", str(tmp_path / "r"), "--rows", "precision"])
    assert shown.exit_code == 0 and "fp32" in shown.output and "none" not in shown.output


def test_matmul_precision_sets_and_restores_torch_flag():
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with matmul_precision("fp32"):
        assert matmul.fp32_precision == before
    with pytest.raises(RuntimeError), matmul_precision("tf32"):
        assert matmul.fp32_precision == "tf32"
        raise RuntimeError("the run failed")
    assert matmul.fp32_precision == before


def test_tf32_on_the_cpu_is_refused_in_one_line_before_anything_is_written(planted_dir, tmp_path):
    results = tmp_path / "r"
    result = runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results),
        "--device", "cpu", "--epochs", "1", "--precision", "tf32", "-q",
    ])
    assert result.exit_code != 0
    assert "--precision tf32 is a CUDA setting" in result.output and "Traceback" not in result.output
    assert not list(store.iter_run_dirs(results))


def test_a_tf32_sweep_on_the_cpu_is_refused_before_it_starts(planted_dir, tmp_path):
    result = runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"),
        "--device", "cpu", "--loss", "ccl,mmcl", "--precision", "tf32", "--dry-run",
    ])
    assert result.exit_code != 0 and "--precision tf32 is a CUDA setting" in result.output
    assert "failed" not in result.output and "Traceback" not in result.output


def test_an_unknown_precision_is_refused(planted_dir, tmp_path):
    result = runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--precision", "bf16", "--dry-run"])
    assert result.exit_code != 0 and "bf16" in result.output and "fp32" in result.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_a_tf32_run_trains_on_cuda_and_says_so(planted_dir, tmp_path):
    args = ["--dataset", "planted", "--data-dir", str(planted_dir), "--device", "cuda", "--epochs", "3", "-q", "--negatives", "10"]
    for precision in ("fp32", "tf32"):
        result = runner.invoke(app, ["train", *args, "--results-dir", str(tmp_path / precision), "--precision", precision])
        assert result.exit_code == 0, result.output
    rows = {p: store.read_runs(tmp_path / p).iloc[0] for p in ("fp32", "tf32")}
    assert rows["tf32"]["precision"] == "tf32" and rows["fp32"]["precision"] == "fp32"
    assert abs(rows["tf32"]["recall@20"] - rows["fp32"]["recall@20"]) < 0.05
