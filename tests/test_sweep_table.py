"""The table `mmlbench train` prints after a sweep: the metrics asked for, and rows that differ."""

from __future__ import annotations

from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app

runner = CliRunner()
FAST = ["--negatives", "5", "--batch-size", "64", "--epochs", "1", "--device", "cpu", "-q"]


def _train(planted_dir, results, *args: str):
    return runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results), *FAST, *args])


def _rows(stdout: str) -> list[list[str]]:
    """The table's cells, row by row (rich's box lines split on │)."""
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in stdout.splitlines() if line.startswith("│")]


def _header(stdout: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in line.strip("┃").split("┃")]


def test_the_columns_are_the_monitor_and_the_k_asked_for(planted_dir, tmp_path):
    result = _train(planted_dir, tmp_path / "r", "--loss", "ccl,bpr", "--k", "5,10", "--monitor", "ndcg@10")
    assert result.exit_code == 0, result.output
    header = _header(result.stdout)
    assert header[2:4] == ["ndcg@10", "recall@10"] and not any("@20" in column for column in header)
    stored = store.read_runs(tmp_path / "r").set_index("run_id")
    for row in _rows(result.stdout):
        assert row[2:4] == [f"{stored.loc[row[0], 'ndcg@10']:.4f}", f"{stored.loc[row[0], 'recall@10']:.4f}"]


def test_failed_runs_differing_only_in_a_setting_read_differently(planted_dir, tmp_path):
    # Dot scores at these learning rates diverge in the first epoch: both runs fail.
    result = _train(planted_dir, tmp_path / "r", "--score", "dot", "--lr", "1e30,1e31")
    assert result.exit_code == 1 and "2 of 2 runs failed" in result.stderr
    assert _header(result.stdout)[:3] == ["run", "status", "lr"]
    rows = [row for row in _rows(result.stdout) if row[0]]  # a wrapped note continues on a blank-labelled line
    assert [row[1:3] for row in rows] == [["failed", "1e+30"], ["failed", "1e+31"]]
    stored = set(store.read_runs(tmp_path / "r")["run_id"])
    assert rows[0][0] != rows[1][0] and {rows[0][0], rows[1][0]} == stored  # the failed rows' ids


def test_runs_told_apart_by_their_labels_get_no_extra_column(planted_dir, tmp_path):
    result = _train(planted_dir, tmp_path / "r", "--loss", "ccl,mmcl")  # their loss parameters differ, but so do their labels
    assert result.exit_code == 0, result.output
    assert _header(result.stdout) == ["run", "status", "recall@20", "ndcg@20", "epoch s", "note"]
