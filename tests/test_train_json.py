"""`mmlbench train --format json`: one JSON document on stdout for scripts, everything else on stderr."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app

runner = CliRunner()
# No -q: the per-epoch progress lines must go to stderr, not into the JSON.
FAST = ["--negatives", "5", "--batch-size", "64", "--lr", "0.01", "--epochs", "2", "--device", "cpu", "--format", "json"]


def _train(planted_dir, results, *args: str):
    return runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results), *FAST, *args])


def test_one_run_is_one_json_document_on_stdout(planted_dir, tmp_path):
    result = _train(planted_dir, tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "epoch 1" in result.stderr
    document = json.loads(result.stdout)
    (run,) = document["runs"]
    stored = store.read_runs(tmp_path / "r").iloc[0]
    assert run["run_id"] == stored["run_id"] and run["status"] == "completed"
    assert run["metrics"]["recall@20"] == stored["recall@20"]
    assert set(run["metrics"]) >= {"ndcg@10", "mrr@50"} and run["config"]["negatives"] == 5
    assert document["counts"] == {"completed": 1}


def test_a_sweep_with_a_failed_run_still_prints_json_and_exits_1(planted_dir, tmp_path):
    # --negatives 100 with uniform-exclude-pos is impossible on 60 items; 5 is fine.
    result = _train(planted_dir, tmp_path / "r", "--sampler", "uniform-exclude-pos", "--negatives", "5,100")
    assert result.exit_code == 1
    assert "1 of 2 runs failed" in result.stderr
    runs = {run["config"]["negatives"]: run for run in json.loads(result.stdout)["runs"]}
    assert runs[5]["status"] == "completed" and runs[5]["metrics"]["recall@20"] > 0
    assert runs[100]["status"] == "failed" and runs[100]["error"] and runs[100]["metrics"] == {}


def test_skipped_runs_and_the_dry_run_plan_in_json(planted_dir, tmp_path):
    assert _train(planted_dir, tmp_path / "r").exit_code == 0
    again = json.loads(_train(planted_dir, tmp_path / "r", "--seeds", "2").stdout)
    assert sorted(run["status"] for run in again["runs"]) == ["completed", "skipped"]
    plan = json.loads(_train(planted_dir, tmp_path / "r", "--seeds", "3", "--dry-run").stdout)
    assert [row["state"] for row in plan["plan"]] == ["done", "done", "to run"]
    assert all(row["run_id"].startswith("planted-mf-ccl-n5") for row in plan["plan"])


def test_an_unknown_format_is_one_line(planted_dir, tmp_path):
    result = runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--format", "yaml"])
    assert result.exit_code == 2 and "yaml" in result.stderr
    assert not (tmp_path / "r").exists()
