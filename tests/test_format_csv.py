"""One output vocabulary: `--format table|json|csv` for train, evaluate and runs (compare: the same
names, and markdown). csv is one header and one line per run (train, its dry run), per run
re-scored (evaluate) or per listed run (runs), on stdout; messages stay on stderr."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app

runner = CliRunner()
FAST = ["--negatives", "5", "--batch-size", "64", "--lr", "0.01", "--epochs", "2", "--device", "cpu"]


def _train(planted_dir, results, *args: str):
    return runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results), *FAST, *args])


def _csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text))


@pytest.mark.parametrize("command", [["train"], ["evaluate"], ["runs"], ["compare"]])
def test_every_command_names_its_formats_alike(command):
    shown = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).stdout
    assert all(name in shown for name in ("table", "json", "csv"))


def test_train_as_csv_is_one_row_per_run_with_its_settings_and_metrics(planted_dir, tmp_path):
    results = tmp_path / "r"
    result = _train(planted_dir, results, "--loss", "ccl,bpr", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = _csv(result.stdout)
    stored = store.read_runs(results).set_index("run_id")
    assert sorted(rows["run_id"]) == sorted(stored.index) and set(rows["status"]) == {"completed"}
    assert rows.set_index("run_id")["recall@20"].to_dict() == stored["recall@20"].to_dict()
    assert sorted(rows["loss"]) == ["bpr", "ccl"] and set(rows["negatives"]) == {5}
    plan = _csv(_train(planted_dir, results, "--loss", "ccl,mmcl", "--dry-run", "--format", "csv").stdout)
    assert plan[["loss", "state"]].values.tolist() == [["ccl", "done"], ["mmcl", "to run"]]


def test_evaluate_as_csv_is_one_row_with_the_metrics_json_has(planted_dir, tmp_path):
    results = tmp_path / "r"
    assert _train(planted_dir, results, "-q").exit_code == 0
    run_id = store.read_runs(results)["run_id"].item()
    evaluate = ["evaluate", run_id, "--k", "5,10", "--results-dir", str(results), "--data-dir", str(planted_dir), "--device", "cpu"]
    as_json = json.loads(runner.invoke(app, [*evaluate, "--format", "json"]).stdout)
    (row,) = _csv(runner.invoke(app, [*evaluate, "--format", "csv"]).stdout).to_dict("records")
    assert row["run_id"] == run_id and row["ks"] == "5,10" and row["users"] == as_json["users"]
    assert {name: row[name] for name in as_json["metrics"]} == pytest.approx(as_json["metrics"])
