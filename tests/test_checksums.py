"""Checkpoints are checked before use: model.pt against the sha256 in its run row, a resume
checkpoint against the sha256 recorded beside it. A damaged, incomplete or misplaced one is
refused in one line naming the file, and what the store held before is kept."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.runs import resume
from mmlbench.store import ids
from interrupting import interrupt_after

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
    from mmlbench.report.settings import setting_columns

    shown = details(trained)
    assert store.CHECKPOINT_SHA256 in shown.provenance and store.CHECKPOINT_SHA256 not in shown.settings
    row = pd.DataFrame([store.read_run(trained)])
    assert store.CHECKPOINT_SHA256 not in setting_columns(row)  # one per run: never a setting that differs between runs


# --- resume checkpoints: INT, a run stopped by Ctrl-C after epoch 3, then the same command again

INT = ["--loss", "ccl", "--epochs", "6", "--patience", "50", "--checkpoint-every", "0"]


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every path under `folder` with its bytes ('dir' for a folder), to show nothing changed."""
    if not folder.is_dir():
        return {str(folder): folder.read_bytes()}
    return {str(p): "dir" if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


@pytest.fixture
def interrupted(planted_dir, tmp_path, monkeypatch) -> tuple[Path, Path, Path]:
    """(results folder, the interrupted run's folder, its resume folder) after INT's first command."""
    results = tmp_path / "r"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 3)
        assert _train(planted_dir, results, *INT).exit_code == 130
    [run_dir] = store.iter_run_dirs(results)
    assert store.read_run(run_dir)["status"] == store.STATUS_INTERRUPTED
    return results, run_dir, ids.resume_folder(results, run_dir.name)


def _without_rng(folder: Path) -> None:
    """A checkpoint that verifies and loads but lacks a key (written with its checksum, as the engine does)."""
    state = torch.load(folder / resume.STATE_FILE, weights_only=True)
    del state["rng"]
    resume.write(folder, state)


def _state_is_a_folder(folder: Path) -> None:
    (folder / resume.STATE_FILE).unlink()
    (folder / resume.STATE_FILE).mkdir()


def _resume_folder_is_a_file(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    folder.write_text("")


def _sha256_missing(folder: Path) -> None:
    (folder / resume.CHECKSUM_FILE).unlink()


DAMAGES = {
    "flipped": (lambda folder: _flip_middle(folder / resume.STATE_FILE), "is damaged: its sha256"),
    "lacks-rng": (_without_rng, "lacks rng"),
    "state-is-a-folder": (_state_is_a_folder, "is not a file"),
    "resume-is-a-file": (_resume_folder_is_a_file, "is not a folder"),
    "no-checksum": (_sha256_missing, "has no recorded sha256"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_resume_checkpoint_is_refused_and_the_run_kept_as_it_was(planted_dir, interrupted, damage):
    results, run_dir, folder = interrupted
    spoil, why = DAMAGES[damage]
    spoil(folder)
    before = _snapshot(store.runs_dir(results))
    result = _train(planted_dir, results, *INT)
    assert result.exit_code == 1
    line = _one_line(result.stderr)
    named = folder if damage == "resume-is-a-file" else folder / resume.STATE_FILE
    assert line.startswith(f"error: the resume checkpoint {named} {why}") and "`--no-resume` starts the run over" in line
    assert "resuming" not in result.output
    claims = store.runs_dir(results) / ".claims"
    assert _snapshot(store.runs_dir(results)) == before and list(claims.iterdir()) == []  # row, curve, checkpoint kept

    again = _train(planted_dir, results, *INT, "--no-resume")
    assert again.exit_code == 0, again.output
    assert store.read_run(run_dir)["status"] == store.STATUS_COMPLETED
    assert store.read_run(run_dir)["resumed_from_epoch"] == 0 and not folder.exists()


def test_an_intact_checkpoint_resumes_and_its_sha256_is_recorded(planted_dir, interrupted):
    results, run_dir, folder = interrupted
    state = (folder / resume.STATE_FILE).read_bytes()
    assert (folder / resume.CHECKSUM_FILE).read_text() == hashlib.sha256(state).hexdigest() + "\n"
    result = _train(planted_dir, results, *INT)
    assert result.exit_code == 0, result.output
    assert store.read_run(run_dir)["resumed_from_epoch"] == 3


def test_a_kill_between_the_checksum_and_the_replace_leaves_a_checkpoint_that_verifies(interrupted, monkeypatch):
    """The checksum file names the new and the old sha256 while state.pt is replaced: a kill there resumes
    from the old file (as before checksums), never refuses it."""
    _, run_dir, folder = interrupted
    old = (folder / resume.STATE_FILE).read_bytes()
    state = torch.load(folder / resume.STATE_FILE, weights_only=True)
    state["best_value"] = -1.0  # another checkpoint
    real = os.replace

    def killed_before_the_state_is_replaced(src, dst):
        if Path(dst).name == resume.STATE_FILE:
            raise SystemExit("killed")
        real(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", killed_before_the_state_is_replaced)
        with pytest.raises(SystemExit):
            resume.write(folder, state)
    assert (folder / resume.STATE_FILE).read_bytes() == old
    assert len((folder / resume.CHECKSUM_FILE).read_text().split()) == 2
    assert resume.read(folder, torch.device("cpu"), store.read_run(run_dir)["config_hash"])["best_value"] != -1.0


@pytest.mark.parametrize("damage", ["flipped", "lacks-rng"])
def test_a_lockstep_member_with_a_damaged_checkpoint_is_left_out_and_kept(planted_dir, tmp_path, monkeypatch, damage):
    from test_lockstep import _options, _three

    from mmlbench.engine.group_step import GroupStep
    from mmlbench.runs.group import train_group

    results, real, calls = tmp_path / "group", GroupStep.run_epoch, []

    def ctrl_c_at_epoch_three(self):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self)

    with monkeypatch.context() as patch:
        patch.setattr(GroupStep, "run_epoch", ctrl_c_at_epoch_three)
        interrupted = train_group(_three(), _options(planted_dir, results))
    spoiled = interrupted[1].row["run_id"]
    DAMAGES[damage][0](ids.resume_folder(results, spoiled))
    kept = _snapshot(store.runs_dir(results) / spoiled), _snapshot(ids.resume_folder(results, spoiled))

    outcomes = train_group(_three(), _options(planted_dir, results))
    assert isinstance(outcomes[1], resume.DamagedCheckpoint) and DAMAGES[damage][1] in str(outcomes[1])
    assert [outcomes[i].status for i in (0, 2)] == [store.STATUS_COMPLETED] * 2
    assert [outcomes[i].row["resumed_from_epoch"] for i in (0, 2)] == [2, 2]
    assert (_snapshot(store.runs_dir(results) / spoiled), _snapshot(ids.resume_folder(results, spoiled))) == kept
