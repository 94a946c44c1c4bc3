"""The beyond-accuracy metrics through the real CLI: compare (paired tests where per user),
the gate (gini and arp fail when they rise), plots, --monitor, and `evaluate` adding them to
runs stored before they existed."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app

runner = CliRunner()
NEW = ("coverage@20", "gini@20", "arp@20", "tail@20", "novelty@20")
PER_USER = ("arp@20", "tail@20", "novelty@20")


def _train(planted_dir, results, *options: str):
    return runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results),
        "--negatives", "5", "--batch-size", "64", "--lr", "0.01", "--epochs", "1", "--device", "cpu", "-q", *options,
    ])  # fmt: skip


@pytest.fixture
def two_losses(planted_dir, tmp_path):
    results = tmp_path / "r"
    result = _train(planted_dir, results, "--loss", "ccl,bpr")
    assert result.exit_code == 0, result.output
    return results


def test_compare_tests_the_per_user_metrics_and_says_why_not_the_others(two_losses):
    result = runner.invoke(app, [
        "compare", str(two_losses), "--metric", "tail@20,gini@20,novelty@20", "--baseline", "loss=ccl", "--format", "json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    bpr = next(cell for cell in document["cells"] if cell["row"]["loss"] == "bpr")
    assert set(bpr["metrics"]["tail@20"]["tests"]) == {"t-test", "wilcoxon"}
    assert set(bpr["metrics"]["novelty@20"]["tests"]) == {"t-test", "wilcoxon"}
    assert bpr["metrics"]["gini@20"]["tests"] == {} and bpr["metrics"]["gini@20"]["change_pct"] is not None
    assert any("gini@20: one value per run, not per user: no paired tests" in line for line in document["footer"])


def test_the_gate_fails_a_rise_of_gini_or_arp_and_a_drop_of_the_others(two_losses, tmp_path):
    path = tmp_path / "base.parquet"
    exported = runner.invoke(app, ["compare", str(two_losses), "--metric", ",".join(NEW), "--export-baseline", str(path)])
    assert exported.exit_code == 0, exported.output
    baseline = pd.read_parquet(path)
    assert runner.invoke(app, ["compare", str(two_losses), "--against", str(path)]).exit_code == 0

    def gate(metric: str, shift: float) -> int:
        changed = baseline.assign(**{metric: baseline[metric] + shift})
        changed.to_parquet(tmp_path / "changed.parquet", index=False)
        result = runner.invoke(app, ["compare", str(two_losses), "--against", str(tmp_path / "changed.parquet")])
        return result.exit_code

    assert gate("gini@20", -0.01) == 1  # the runs' gini is 0.01 above the baseline: worse
    assert gate("gini@20", +0.01) == 0
    assert gate("arp@20", -0.001) == 1
    assert gate("arp@20", +0.001) == 0
    assert gate("coverage@20", +0.01) == 1
    assert gate("novelty@20", -0.01) == 0


def test_a_plot_of_a_beyond_accuracy_metric(two_losses, tmp_path):
    result = runner.invoke(app, ["compare", str(two_losses), "--metric", "novelty@20", "--plot", str(tmp_path / "n.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "n.png").stat().st_size > 0


def test_a_metric_better_when_lower_is_refused_as_monitor_in_one_line(planted_dir, tmp_path):
    result = _train(planted_dir, tmp_path / "r", "--monitor", "gini@20")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--monitor gini@20: gini is better when lower" in result.output
    assert not list(store.iter_run_dirs(tmp_path / "r"))
    assert _train(planted_dir, tmp_path / "r", "--monitor", "coverage@20").exit_code == 0


def test_an_unknown_metric_name_suggests_the_closest(planted_dir, two_losses, tmp_path):
    monitor = _train(planted_dir, tmp_path / "other", "--monitor", "covrage@20")
    assert monitor.exit_code == 1 and "Did you mean 'coverage'?" in monitor.output
    compare = runner.invoke(app, ["compare", str(two_losses), "--metric", "novelity@20"])
    assert compare.exit_code == 2 and "Did you mean 'novelty@20'?" in compare.output


def _strip_new_metrics(run_dir) -> None:
    """Make the run look stored before the metrics existed."""
    row = pd.read_parquet(run_dir / store.RUN_FILE)
    new = [c for c in row.columns if c.partition("@")[0] in ("coverage", "gini", "arp", "tail", "novelty")]
    row.drop(columns=new).to_parquet(run_dir / store.RUN_FILE, index=False)
    per_user = pd.read_parquet(run_dir / store.PER_USER_FILE)
    per_user.drop(columns=[c for c in new if c in per_user.columns]).to_parquet(run_dir / store.PER_USER_FILE, index=False)


def _evaluate(planted_dir, results, run_dir, *options: str):
    return runner.invoke(app, [
        "evaluate", run_dir.name, "--results-dir", str(results), "--data-dir", str(planted_dir), "--device", "cpu",
        "--format", "json", *options,
    ])  # fmt: skip


def test_evaluate_adds_the_new_metrics_to_a_run_stored_before_them(planted_dir, two_losses):
    run_dir = next(store.iter_run_dirs(two_losses))
    trained, trained_per_user = store.read_run(run_dir), store.read_per_user(run_dir)
    _strip_new_metrics(run_dir)
    assert "tail@20" not in store.read_run(run_dir)
    result = _evaluate(planted_dir, two_losses, run_dir)
    assert result.exit_code == 0, result.output
    assert set(NEW) <= set(json.loads(result.stdout)["added"])
    row, per_user = store.read_run(run_dir), store.read_per_user(run_dir)
    for name in NEW:
        assert row[name] == pytest.approx(trained[name], abs=1e-12)
    for name in PER_USER:
        assert per_user[name].tolist() == pytest.approx(trained_per_user[name].tolist(), abs=1e-12)
    assert row["recall@20"] == trained["recall@20"] and len(per_user) == len(trained_per_user)
    again = _evaluate(planted_dir, two_losses, run_dir)
    assert again.exit_code == 0 and json.loads(again.stdout)["added"] == []
    shown = runner.invoke(app, ["compare", str(two_losses), "--metric", "tail@20", "--baseline", "loss=ccl"])
    assert shown.exit_code == 0 and "per-user metrics missing" not in shown.output


def test_evaluate_adds_nothing_when_the_checkpoint_does_not_give_the_stored_numbers(planted_dir, two_losses):
    run_dir = next(store.iter_run_dirs(two_losses))
    _strip_new_metrics(run_dir)
    row = pd.read_parquet(run_dir / store.RUN_FILE)
    row.assign(**{"recall@20": row["recall@20"] + 0.01}).to_parquet(run_dir / store.RUN_FILE, index=False)
    result = _evaluate(planted_dir, two_losses, run_dir)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["added"] == [] and "recall@20 re-scored is" in result.output
    assert "tail@20" not in store.read_run(run_dir)
    assert "tail@20" not in store.read_per_user(run_dir).columns
