"""Checkpoints are checked before use: model.pt against the sha256 in its run row. A damaged
or misplaced one is refused in one line naming the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app

runner = CliRunner()
FAST = ["--negatives", "5", "--batch-size", "64", "--lr", "0.01", "--device", "cpu", "-q"]


def _flip_middle(path: Path, size: int = 4096) -> None:
    """XOR 0x5A over `size` bytes in the middle of the file: a damaged disk or copy."""
    data = bytearray(path.read_bytes())
    start = max(0, len(data) // 2 - size // 2)
    for i in range(start, min(len(data), start + size)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _train(planted_dir: Path, results: Path, *args: str):
    return runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(planted_dir),
                               "--results-dir", str(results), *FAST, *args])  # fmt: skip


def _evaluate(planted_dir: Path, run_dir: Path):
    return runner.invoke(app, ["evaluate", str(run_dir), "--data-dir", str(planted_dir), "--device", "cpu"])


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def trained(planted_dir, tmp_path) -> Path:
    assert _train(planted_dir, tmp_path / "r", "--epochs", "1").exit_code == 0
    return next(store.iter_run_dirs(tmp_path / "r"))


def test_the_run_row_records_the_sha256_of_model_pt(trained):
    recorded = store.read_run(trained)[store.CHECKPOINT_SHA256]
    assert recorded == hashlib.sha256((trained / store.CHECKPOINT_FILE).read_bytes()).hexdigest()


def test_evaluate_refuses_a_damaged_model_pt_and_saves_nothing(planted_dir, trained):
    _flip_middle(trained / store.CHECKPOINT_FILE)
    result = _evaluate(planted_dir, trained)
    assert result.exit_code == 1
    line = _one_line(result.stderr)
    assert f"the checkpoint {trained / store.CHECKPOINT_FILE} is corrupt: its sha256" in line
    assert result.stdout == "" and not (trained / "eval-test.parquet").exists()


def test_a_run_stored_before_checksums_still_evaluates(planted_dir, trained):
    row = pd.read_parquet(trained / store.RUN_FILE).drop(columns=[store.CHECKPOINT_SHA256])
    row.to_parquet(trained / store.RUN_FILE, index=False)
    result = _evaluate(planted_dir, trained)
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(trained / "eval-test.parquet")["recall@20"].iloc[0] == pytest.approx(row["recall@20"].iloc[0])


def test_a_model_pt_that_is_a_folder_is_one_line(planted_dir, trained):
    (trained / store.CHECKPOINT_FILE).unlink()
    (trained / store.CHECKPOINT_FILE).mkdir()
    result = _evaluate(planted_dir, trained)
    assert result.exit_code == 1
    assert f"the checkpoint {trained / store.CHECKPOINT_FILE} is not a file" in _one_line(result.stderr)



def test_runs_show_lists_the_checksum_under_provenance_and_compare_ignores_it(planted_dir, trained):
    from mmlbench.report.runs import details
    from mmlbench.report.selection import NOT_CONFIG

    shown = details(trained)
    assert store.CHECKPOINT_SHA256 in shown.provenance and store.CHECKPOINT_SHA256 not in shown.settings
    assert store.CHECKPOINT_SHA256 in NOT_CONFIG  # one per run: never a setting that differs between runs
