"""One damaged run.parquet is reported once and skipped; it never blocks the rest of the store."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import compare_support as cs
from mmlbench import store
from mmlbench.cli import app

runner = CliRunner()


def truncate(run_dir):
    path = run_dir / store.RUN_FILE
    path.write_bytes(path.read_bytes()[:100])


@pytest.fixture
def damaged_store(tmp_path):
    """ccl and mmcl at 10 negatives, seeds 0-2; the run.parquet of mmcl seed 1 cut short."""
    results = tmp_path / "results"
    for loss in ("ccl", "mmcl"):
        for seed in cs.SEEDS:
            cs.add_run(results, loss, 10, seed)
    truncate(store.runs_dir(results) / "mmcl-10-s1")
    return results


def test_store_readers_skip_the_damaged_run_and_warn_once(damaged_store, capsys):
    completed = store.completed_runs(damaged_store)
    assert sorted(completed) == ["ccl-10-s0", "ccl-10-s1", "ccl-10-s2", "mmcl-10-s0", "mmcl-10-s2"]
    assert store.find_completed(damaged_store, "mmcl-10-s2") == store.runs_dir(damaged_store) / "mmcl-10-s2"
    assert store.find_completed(damaged_store, "mmcl-10-s1") is None  # treated as absent: it can be trained again
    assert len(store.read_runs(damaged_store)) == 5
    warnings = capsys.readouterr().err
    assert warnings.count("warning:") == 1
    assert f"skipping damaged run {store.runs_dir(damaged_store) / 'mmcl-10-s1'}" in " ".join(warnings.split())


def test_an_explicitly_named_damaged_run_is_still_an_error(damaged_store):
    with pytest.raises(store.MMLBenchError, match="cannot read .*mmcl-10-s1/run.parquet"):
        store.read_run(store.runs_dir(damaged_store) / "mmcl-10-s1")


def test_compare_shows_the_other_runs(damaged_store):
    result = runner.invoke(app, ["compare", str(damaged_store), "--format", "json"])
    assert result.exit_code == 0, result.output
    counts = {cell["row"]["loss"]: cell["n"] for cell in json.loads(result.stdout)["cells"]}
    assert counts == {"ccl": 3, "mmcl": 2}
    assert result.stderr.count("skipping damaged run") == 1 and "mmcl-10-s1" in result.stderr


def test_a_store_of_only_damaged_runs_says_there_is_nothing_to_compare(tmp_path):
    cs.add_run(tmp_path, "ccl", 10, 0)
    truncate(store.runs_dir(tmp_path) / "ccl-10-s0")
    result = runner.invoke(app, ["compare", str(tmp_path)])
    assert result.exit_code == 2
    assert "skipping damaged run" in result.stderr and "no runs in" in result.stderr


def test_a_sweep_reuses_completed_runs_beside_a_damaged_one(planted_dir, tmp_path):
    results = tmp_path / "results"
    train = ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results),
             "--loss", "ccl", "--negatives", "5", "--batch-size", "64", "--epochs", "1", "--device", "cpu", "-q"]  # fmt: skip
    assert runner.invoke(app, train).exit_code == 0
    cs.add_run(results, "mmcl", 10, 0)
    truncate(store.runs_dir(results) / "mmcl-10-s0")
    plan = runner.invoke(app, [*train, "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert "done" in plan.stdout and "skipping damaged run" in plan.stderr
    again = runner.invoke(app, train)
    assert again.exit_code == 0, again.output
    assert "already completed" in again.stderr  # reused, not trained again
