"""`mmlbench runs`: list, filter, show, rm and prune the runs of a store, through the real CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from compare_support import add_run, per_user_values, run_row
from mmlbench import fsutil, store
from mmlbench.cli import app
from waiting import wait_until

runner = CliRunner()
COMPLETED = ["ccl-10-s0", "ccl-10-s1", "mmcl-10-s0"]
ALL = ["bpr-failed", "broken", "ccl-10-s0", "ccl-10-s1", "mmcl-10-s0", "mmcl-stopped"]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Three completed runs, one failed, one interrupted and one damaged (unreadable run.parquet)."""
    results = tmp_path / "results"
    add_run(results, "ccl", 10, 0)
    add_run(results, "ccl", 10, 1)
    add_run(results, "mmcl", 10, 0)
    add_run(results, "mmcl", 100, 2, run_id="mmcl-stopped", status="interrupted")
    failed = run_row("bpr-failed", loss="bpr", negatives=100, status="failed", error="loss is NaN at epoch 2")
    store.write_run(results, store.RunRecord(row=failed))
    broken = store.runs_dir(results) / "broken"
    broken.mkdir()
    (broken / store.RUN_FILE).write_bytes(b"PAR1 truncated")
    return results


def _runs(results: Path, *args: str):
    return runner.invoke(app, ["runs", *args, "--results-dir", str(results)])


def _listed(results: Path, *args: str, code: int = 0) -> list[dict]:
    """The JSON listing; `code` 1 where a damaged run is listed (printed all the same)."""
    result = _runs(results, *args, "--format", "json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def _folders(results: Path) -> list[str]:
    return sorted(os.listdir(store.runs_dir(results)))


def _one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)  # not a traceback
    assert result.stderr.count("error:") == 1
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_list_table_shows_every_run_sorted_with_its_status(results):
    result = _runs(results)
    assert result.exit_code == 1, result.output  # a damaged run listed, as docs/runs.md says
    positions = [result.stdout.index(run_id) for run_id in ALL]
    assert positions == sorted(positions)
    lines = {run_id: next(line for line in result.stdout.splitlines() if f" {run_id} " in line) for run_id in ALL}
    assert "failed" in lines["bpr-failed"] and "interrupted" in lines["mmcl-stopped"]
    assert "damaged" in lines["broken"] and "completed" in lines["ccl-10-s0"]
    assert f"{per_user_values('ccl', 10, 0, 'recall@20').mean():.4f}" in lines["ccl-10-s0"]
    assert "2/3" in lines["ccl-10-s0"]  # best epoch / epochs run
    assert "warning:" in result.stderr and "broken" in result.stderr  # the damaged run is named
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 damaged run(s) listed")


def test_list_json_has_one_record_per_run_with_typed_values(results):
    records = {record["run_id"]: record for record in _listed(results, code=1)}
    assert sorted(records) == ALL
    ccl = records["ccl-10-s0"]
    assert ccl["negatives"] == 10 and isinstance(ccl["negatives"], int) and ccl["seed"] == 0
    assert ccl["recall@20"] == pytest.approx(per_user_values("ccl", 10, 0, "recall@20").mean())
    assert records["bpr-failed"]["status"] == "failed" and records["bpr-failed"]["recall@20"] is None
    assert records["broken"]["status"] == "damaged" and "cannot read" in records["broken"]["error"]


def test_where_and_status_filter_the_listing(results):
    assert [r["run_id"] for r in _listed(results, "--where", "loss=mmcl")] == ["mmcl-10-s0", "mmcl-stopped"]
    assert [r["run_id"] for r in _listed(results, "--status", "failed", "--status", "interrupted")] == [
        "bpr-failed", "mmcl-stopped"]  # fmt: skip
    both = _listed(results, "--where", "negatives=10", "--where", "seed=0", "--status", "completed")
    assert [r["run_id"] for r in both] == ["ccl-10-s0", "mmcl-10-s0"]
    csv = _runs(results, "--where", "loss=ccl", "--format", "csv")
    assert csv.exit_code == 0, csv.output
    assert pd.read_csv(io.StringIO(csv.stdout))["run_id"].tolist() == ["ccl-10-s0", "ccl-10-s1"]


def test_status_filter_with_no_match_is_an_empty_listing(results):
    assert _listed(results, "--status", "completed", "--where", "loss=bpr") == []
    result = _runs(results, "--status", "completed", "--where", "loss=bpr")
    assert result.exit_code == 0 and "no runs" in result.stderr


@pytest.mark.parametrize(
    ("where", "fragments"),
    [
        ("loss", ["bad --where 'loss'", "COLUMN=VALUE"]),
        ("los=ccl", ["unknown column 'los'", "Did you mean 'loss'"]),
        ("loss=ccll", ["no runs with loss=ccll", "values here: bpr, ccl, mmcl"]),
    ],
)
def test_bad_where_is_one_line(results, where, fragments):
    _one_line_error(_runs(results, "--where", where), 2, *fragments)


def test_missing_and_empty_stores(tmp_path):
    _one_line_error(_runs(tmp_path / "nowhere"), 2, "results folder", "does not exist")
    (tmp_path / "empty").mkdir()
    assert _listed(tmp_path / "empty") == []
    result = _runs(tmp_path / "empty")
    assert result.exit_code == 0 and "no runs in" in result.stderr


def test_show_prints_settings_provenance_costs_metrics_and_curve(results):
    result = _runs(results, "show", "ccl-10-s0")
    assert result.exit_code == 0, result.output
    text = result.stdout
    expected = ("ccl-10-s0", "completed", "negative_weight", "embedding_dim", "deadbeef", "512 MiB",
                "epoch_seconds_median", "test metrics at epoch 2", "ndcg")  # fmt: skip
    for fragment in expected:
        assert fragment in text, fragment
    cells = [line.split("│") for line in text.splitlines() if line.startswith("│")]
    curve_rows = [row for row in cells if row[1].strip() in ("1", "2", "3")]
    assert [row[2].strip() for row in curve_rows[-3:]] == ["0.9000", "0.6000", "0.5000"]
    assert "config_hash" in text and "setting" in text and "provenance" in text


def test_bracketed_values_are_printed_not_taken_for_markup(tmp_path):
    add_run(tmp_path, "ccl", 10, 0, run_id="shop", dataset="shop[eu]")
    assert "shop[eu]" in _runs(tmp_path).stdout
    assert "shop[eu]" in _runs(tmp_path, "show", "shop").stdout


def test_show_accepts_a_unique_prefix_and_the_store_given_before_it(results):
    result = runner.invoke(app, ["runs", "--results-dir", str(results), "show", "mmcl-10"])
    assert result.exit_code == 0, result.output
    assert "mmcl-10-s0" in result.stdout
    _one_line_error(_runs(results, "show", "ccl-10"), 2, "'ccl-10' starts 2 run ids", "ccl-10-s0, ccl-10-s1")


def test_show_a_failed_and_a_damaged_run(results):
    failed = _runs(results, "show", "bpr-failed")
    assert failed.exit_code == 0, failed.output
    assert "loss is NaN at epoch 2" in failed.stdout and "no curve recorded" in failed.stdout
    _one_line_error(_runs(results, "show", "broken"), 1, "cannot read", "broken")


def test_show_unknown_run_suggests_the_closest(results):
    _one_line_error(_runs(results, "show", "mmcl-10-s9"), 2, "unknown run 'mmcl-10-s9'", "Did you mean 'mmcl-10-s0'?")


def test_listing_options_before_a_subcommand_are_refused(results):
    result = runner.invoke(app, ["runs", "--status", "failed", "show", "ccl-10-s0", "--results-dir", str(results)])
    _one_line_error(result, 2, "--status", "runs show")


def test_rm_removes_exactly_the_given_runs(results):
    result = _runs(results, "rm", "ccl-10-s1", "bpr-failed")
    assert result.exit_code == 0, result.output
    assert "removed ccl-10-s1" in result.stdout and "removed bpr-failed" in result.stdout
    assert _folders(results) == ["broken", "ccl-10-s0", "mmcl-10-s0", "mmcl-stopped"]  # no hidden leftovers


def test_rm_refuses_an_unknown_id_before_removing_anything(results):
    _one_line_error(_runs(results, "rm", "ccl-10-s0", "ccl-10-s7"), 2, "unknown run 'ccl-10-s7'", "Did you mean")
    assert _folders(results) == ALL


def test_prune_dry_run_lists_and_removes_nothing(results):
    result = _runs(results, "prune", "--failed", "--interrupted", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["would remove bpr-failed (failed)", "would remove mmcl-stopped (interrupted)"]
    assert _folders(results) == ALL


def test_prune_removes_only_the_chosen_statuses(results):
    assert _runs(results, "prune", "--failed").exit_code == 0
    assert _folders(results) == ["broken", "ccl-10-s0", "ccl-10-s1", "mmcl-10-s0", "mmcl-stopped"]
    assert _runs(results, "prune", "--interrupted", "--where", "loss=ccl").stderr.startswith("nothing to prune")
    assert _runs(results, "prune", "--interrupted", "--damaged").exit_code == 0
    assert _folders(results) == COMPLETED


def test_prune_without_a_status_is_refused(results):
    _one_line_error(_runs(results, "prune"), 2, "prune needs --failed")
    assert _folders(results) == ALL


def test_a_crash_while_removing_never_leaves_a_readable_half_run(results, monkeypatch):
    """remove_dir hides the folder before deleting it: a crash mid-delete leaves no run behind."""

    def crash_midway(path, *args, **kwargs):
        (Path(path) / store.CURVE_FILE).unlink()
        raise OSError("simulated crash")

    monkeypatch.setattr(fsutil.shutil, "rmtree", crash_midway)
    result = _runs(results, "rm", "ccl-10-s0")
    assert result.exit_code == 1 and "simulated crash" in result.stderr
    assert [d.name for d in store.iter_run_dirs(results)] == [r for r in ALL if r != "ccl-10-s0"]
    assert "ccl-10-s0" not in {r["run_id"] for r in _listed(results, code=1)}


FAST = ["--negatives", "5", "--batch-size", "64", "--lr", "0.01", "--epochs", "2", "--device", "cpu", "-q"]


def test_a_trained_run_is_listed_and_shown(planted_dir, tmp_path):
    results = tmp_path / "r"
    trained = runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(planted_dir),
                                  "--results-dir", str(results), "--loss", "mmcl", *FAST])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    row = store.read_runs(results).iloc[0]
    [record] = _listed(results)
    assert record["run_id"] == row["run_id"] and record["status"] == "completed" and record["loss"] == "mmcl"
    assert record["recall@20"] == pytest.approx(row["recall@20"]) and record["epochs_run"] == 2
    assert record["finished_at"] == row["finished_at"]
    shown = _runs(results, "show", row["run_id"])
    assert shown.exit_code == 0, shown.output
    assert row["git_commit"] in shown.stdout and "curve" in shown.stdout and "violations" in shown.stdout


def test_a_file_given_as_the_results_folder_is_said_to_be_one(tmp_path):
    (tmp_path / "file").write_text("")
    _one_line_error(_runs(tmp_path / "file"), 2, f"results folder {tmp_path / 'file'} is not a folder")


# --- resume checkpoints and runs in progress, on runs trained through the real CLI

def _train_args(planted_dir: Path, results: Path) -> list[str]:
    return ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results),
            "--loss", "ccl", "--negatives", "5", "--batch-size", "64", "--lr", "0.01", "--epochs", "6",
            "--patience", "50", "--checkpoint-every", "0", "--device", "cpu"]  # fmt: skip


@pytest.fixture
def interrupted(planted_dir, tmp_path, monkeypatch) -> tuple[Path, str]:
    """(results folder, run id) of a run stopped by Ctrl-C after epoch 3: its row and its resume checkpoint."""
    from mmlbench.runs.progress import TrainingProgress

    results, original = tmp_path / "r", TrainingProgress.epoch_done

    def ctrl_c_after_three(self, log):
        original(self, log)
        if log.epoch == 3:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(TrainingProgress, "epoch_done", ctrl_c_after_three)
        assert runner.invoke(app, _train_args(planted_dir, results)).exit_code == 130
    [run_dir] = store.iter_run_dirs(results)
    assert (store.runs_dir(results) / f".{run_dir.name}.resume").is_dir()
    return results, run_dir.name


@pytest.mark.parametrize("removal", [["rm", "RUN"], ["prune", "--interrupted"]], ids=["rm", "prune"])
def test_a_removed_run_takes_its_resume_checkpoint_with_it(planted_dir, interrupted, removal):
    results, run_id = interrupted
    result = _runs(results, *[run_id if word == "RUN" else word for word in removal])
    assert result.exit_code == 0, result.output
    assert _folders(results) == [".claims"]
    again = runner.invoke(app, _train_args(planted_dir, results))
    assert again.exit_code == 0, again.output
    assert "resuming" not in again.stderr and store.read_run(store.runs_dir(results) / run_id)["resumed_from_epoch"] == 0


def test_an_orphaned_resume_checkpoint_is_listed_and_pruned(interrupted):
    results, run_id = interrupted
    fsutil.remove_dir(store.runs_dir(results) / run_id)  # as `runs rm` left it before
    [record] = _listed(results)
    assert (record["run_id"], record["status"]) == (run_id, "orphaned") and "resumes it" in record["error"]
    assert _runs(results, "prune", "--failed").stderr.startswith("nothing to prune")
    _one_line_error(_runs(results, "show", run_id), 2, f"run {run_id} has no stored row to show (orphaned)")
    dry = _runs(results, "prune", "--orphaned", "--dry-run")
    assert dry.stdout.splitlines() == [f"would remove {run_id} (orphaned)"]
    assert _runs(results, "prune", "--orphaned").exit_code == 0
    assert _folders(results) == [".claims"] and _listed(results) == []


@pytest.fixture
def training(planted_dir, tmp_path):
    """A real `mmlbench train` process held after its epoch 2 until the test lets it go: (results, its pid)."""
    results, ready, go = tmp_path / "r", tmp_path / "ready", tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import pathlib, sys, time
        from mmlbench.runs.progress import TrainingProgress
        def epoch_done(self, log):
            if log.epoch == 2:
                pathlib.Path({str(ready)!r}).touch()
                while not pathlib.Path({str(go)!r}).exists():
                    time.sleep(0.05)
        TrainingProgress.epoch_done = epoch_done
        from mmlbench.cli import app
        sys.argv = ["mmlbench", *{_train_args(planted_dir, results)!r}, "-q"]
        app()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(ready.exists, "the training process to finish epoch 2", proc)
        yield results, proc.pid
    finally:
        go.touch()
        proc.communicate(timeout=300)


def test_a_run_being_trained_is_listed_as_running_and_not_removed(training):
    results, pid = training
    [record] = _listed(results)
    assert record["status"] == "running" and record["run_id"].startswith("planted-mf-ccl-n5-s2019-")
    assert record["loss"] == "ccl" and record["claimed_by"].startswith(f"pid {pid} on ")
    table = _runs(results)
    assert "running" in table.stdout and f"pid {pid}" in table.stdout
    before = _folders(results)
    _one_line_error(_runs(results, "rm", record["run_id"]), 2, f"run {record['run_id']} is being trained (pid {pid}")
    assert _runs(results, "prune", "--orphaned", "--interrupted").stderr.startswith("nothing to prune")
    assert _folders(results) == before and any(name.endswith(".resume") for name in before)
