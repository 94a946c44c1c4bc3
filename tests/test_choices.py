"""Choices are case-insensitive everywhere (a setting, a --format, a --status, --device), and a
misspelt one is matched to the nearest choice case aside: FP32 is fp32, not tf32."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmlbench.cli import app
from mmlbench.errors import closest

runner = CliRunner()


def _plan(planted_dir, tmp_path, *args: str) -> list[dict]:
    result = runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), "--dry-run", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["plan"]


def test_settings_in_capitals_are_the_same_runs(planted_dir, tmp_path):
    shouted = _plan(planted_dir, tmp_path, "--precision", "FP32", "--loss", "MMCL,Bpr", "--score", "DOT", "--l2-scope", "Batch",
                    "--device", "CPU", "--backend", "LOCAL", "--format", "JSON")  # fmt: skip
    plain = _plan(planted_dir, tmp_path, "--precision", "fp32", "--loss", "mmcl,bpr", "--score", "dot", "--l2-scope", "batch", "--format", "json")
    assert [row["run_id"] for row in shouted] == [row["run_id"] for row in plain]  # same hashes
    assert shouted[0]["config"]["loss"] == "mmcl" and shouted[0]["config"]["precision"] == "fp32"


def test_an_experiment_file_value_in_capitals_too(planted_dir, tmp_path):
    experiment = tmp_path / "exp.toml"
    experiment.write_text('[settings]\ndataset = "planted"\nsampler = "Uniform"\n[grid]\nloss = ["CCL", "bpr"]\n')
    result = runner.invoke(app, ["train", "--config", str(experiment), "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), "--dry-run", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [row["config"]["loss"] for row in json.loads(result.stdout)["plan"]] == ["ccl", "bpr"]


def test_a_misspelt_choice_suggests_the_nearest_case_aside(planted_dir, tmp_path):
    result = runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--precision", "FP33", "--dry-run"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: unknown precision 'FP33'. Did you mean 'fp32'? Valid: fp32, tf32."
    assert closest("FP32", ["tf32", "fp32"]) == "fp32"


def test_listing_options_take_capitals(tmp_path):
    (tmp_path / "r" / "runs").mkdir(parents=True)
    result = runner.invoke(app, ["runs", "--results-dir", str(tmp_path / "r"), "--status", "COMPLETED", "--format", "Json"])
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
