"""Interrupted (Ctrl-C), failed and killed (kill -9) runs resume from their last finished epoch, exactly.

Checkpoints are written at most every `checkpoint_every` seconds (default 60, longer than
any run here) and at a stop short of completion, from a snapshot of the last epoch: so an
interrupted or failed run loses nothing, a killed one what was not written yet.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.config import RunConfig
from mmlbench.engine.evaluator import Evaluation
from mmlbench.engine.trainer import Trainer
from mmlbench.errors import MMLBenchError
from mmlbench.metrics import is_metric_column
from mmlbench.runs import resume, single
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.progress import TrainingProgress
from mmlbench.runs.single import train_run
from mmlbench.store import ids
from interrupting import interrupt_after

# Dropout, a random permutation and sampled negatives every epoch: the RNG state matters.
CONFIG = RunConfig("planted", negatives=10, batch_size=48, lr=0.01, epochs=6, patience=10, dropout=0.2)
CURVE_COLUMNS = ["epoch", "loss", "violations", "lr", "recall@10", "recall@20", "ndcg@20"]


def _options(planted_dir: Path, results: Path, **kwargs) -> TrainOptions:
    return TrainOptions(device="cpu", data_dir=planted_dir, results_dir=results, quiet=True, **kwargs)


def _resume_file(results: Path, run_id: str) -> Path:
    return ids.resume_folder(results, run_id) / resume.STATE_FILE


def _interrupt_training(monkeypatch, epoch: int) -> None:
    """Ctrl-C once `epoch` is trained, before it is closed: what it changed in place (weights,
    Adam's moments and steps, the generator) belongs to no checkpoint."""
    original = Trainer._train_epoch

    def interrupted(self, number):
        log = original(self, number)
        if number == epoch:
            raise KeyboardInterrupt
        return log

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)


def _count_epochs(monkeypatch) -> list[int]:
    trained: list[int] = []
    original = Trainer._train_epoch

    def counting(self, epoch):
        trained.append(epoch)
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", counting)
    return trained


def _assert_same_run(resumed, reference) -> None:
    curve, expected = store.read_curve(resumed.run_dir), store.read_curve(reference.run_dir)
    assert curve[CURVE_COLUMNS].values.tolist() == expected[CURVE_COLUMNS].values.tolist()
    metrics = [name for name in reference.row if is_metric_column(name)]
    assert [resumed.row[m] for m in metrics] == [reference.row[m] for m in metrics]
    assert resumed.row["best_epoch"] == reference.row["best_epoch"]
    weights = torch.load(resumed.run_dir / store.CHECKPOINT_FILE, weights_only=True)["state_dict"]
    expected_weights = torch.load(reference.run_dir / store.CHECKPOINT_FILE, weights_only=True)["state_dict"]
    assert all(torch.equal(weights[name], expected_weights[name]) for name in expected_weights)


@pytest.fixture
def reference(planted_dir, tmp_path):
    """The same config trained without interruption."""
    return train_run(CONFIG, _options(planted_dir, tmp_path / "reference"))


def test_ctrl_c_then_rerun_resumes_and_equals_the_uninterrupted_run(planted_dir, tmp_path, monkeypatch, reference):
    results = tmp_path / "r"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 3)
        interrupted = train_run(CONFIG, _options(planted_dir, results))
    assert interrupted.status == store.STATUS_INTERRUPTED
    assert _resume_file(results, interrupted.row["run_id"]).is_file()
    assert store.find_completed(results, interrupted.row["config_hash"]) is None  # a sweep still runs it

    trained = _count_epochs(monkeypatch)
    resumed = train_run(CONFIG, _options(planted_dir, results))
    assert trained == [4, 5, 6]  # epochs 1-3 are not trained again
    assert resumed.status == store.STATUS_COMPLETED and resumed.row["resumed_from_epoch"] == 3
    assert reference.row["resumed_from_epoch"] == 0
    _assert_same_run(resumed, reference)
    assert not ids.resume_folder(results, resumed.row["run_id"]).exists()  # removed once the run completed
    assert len(store.read_runs(results)) == 1  # the interrupted folder was replaced


@pytest.mark.parametrize("every, resumed_from", [("0", 2), ("3600", 0)])
def test_killed_run_leaves_only_the_checkpoint_and_resumes(planted_dir, tmp_path, reference, every, resumed_from):
    """A real kill -9 of a `mmlbench train` process, right after epoch 2: it loses what was
    not written yet (with --checkpoint-every 3600, everything)."""
    results = tmp_path / "r"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import torch
        torch.set_num_threads(1)  # as the tests' process: same arithmetic
        from mmlbench.runs.progress import TrainingProgress
        def epoch_done(self, log):
            if log.epoch == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        TrainingProgress.epoch_done = epoch_done
        from mmlbench.cli import app
        sys.argv = ["mmlbench", "train", "--dataset", "planted", "--data-dir", {str(planted_dir)!r},
                    "--results-dir", {str(results)!r}, "--negatives", "10", "--batch-size", "48",
                    "--lr", "0.01", "--epochs", "6", "--patience", "10", "--dropout", "0.2",
                    "--device", "cpu", "-q", "--checkpoint-every", {every!r}]
        app()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == -9, proc.stderr
    assert list(store.iter_run_dirs(results)) == []
    assert _resume_file(results, reference.row["run_id"]).is_file() == bool(resumed_from)

    resumed = train_run(CONFIG, _options(planted_dir, results))
    assert resumed.row["resumed_from_epoch"] == resumed_from
    _assert_same_run(resumed, reference)


@pytest.mark.parametrize("every", [0, 3600])
def test_ctrl_c_during_an_epoch_resumes_from_the_last_one_closed(planted_dir, tmp_path, monkeypatch, reference, every):
    """With 3600 nothing is on disk at the stop: epoch 2's snapshot is written then, as it was
    before epoch 3 changed the weights, the moments and the generator."""
    results = tmp_path / "r"
    with monkeypatch.context() as patch:
        _interrupt_training(patch, 3)
        interrupted = train_run(CONFIG, _options(planted_dir, results, checkpoint_every=every))
    assert interrupted.status == store.STATUS_INTERRUPTED and interrupted.row["epochs_run"] == 2
    assert len(torch.load(_resume_file(results, interrupted.row["run_id"]))["epochs"]) == 2
    resumed = train_run(CONFIG, _options(planted_dir, results))
    assert resumed.row["resumed_from_epoch"] == 2
    _assert_same_run(resumed, reference)


@pytest.mark.parametrize("every, on_disk", [(0, [1, 2, 3]), (3600, [0, 0, 0])])
def test_the_checkpoint_is_written_after_an_epoch_only_when_the_interval_has_passed(planted_dir, tmp_path, monkeypatch, every, on_disk):
    results, seen = tmp_path / "r", []
    original = TrainingProgress.epoch_done

    def epoch_done(self, log):  # the epochs in the file on disk as each epoch is reported
        original(self, log)
        files = list(store.runs_dir(results).glob(f".*.resume/{resume.STATE_FILE}"))
        seen.append(len(torch.load(files[0])["epochs"]) if files else 0)

    monkeypatch.setattr(TrainingProgress, "epoch_done", epoch_done)
    config = RunConfig("planted", negatives=5, batch_size=64, epochs=3, patience=10)
    outcome = train_run(config, _options(planted_dir, results, checkpoint_every=every))
    assert seen == on_disk
    assert outcome.status == store.STATUS_COMPLETED and not ids.resume_folder(results, outcome.row["run_id"]).exists()


def test_checkpoints_write_once_the_interval_has_passed_since_the_last_write(tmp_path, monkeypatch):
    clock, written = [0.0], []
    monkeypatch.setattr(resume.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(resume, "write", lambda folder, state: written.append(state))
    checkpoints = resume.Checkpoints(tmp_path, 60, lambda epoch, snapshot: {"epoch": epoch, "snapshot": snapshot})
    for epoch, seconds in enumerate([30, 59, 61, 100, 120.9, 121], start=1):
        clock[0] = seconds
        checkpoints.epoch_closed(epoch)
    assert written == [{"epoch": 3, "snapshot": False}, {"epoch": 6, "snapshot": False}]  # 61 s from the start, 60 s later
    checkpoints.flush()
    assert len(written) == 2  # nothing left unwritten
    clock[0] = 130
    checkpoints.epoch_closed(7)
    checkpoints.flush()  # a stop: the snapshot (a copy) of epoch 7
    assert written[2:] == [{"epoch": 7, "snapshot": True}]


def test_a_run_that_diverges_keeps_the_checkpoint_of_its_last_finished_epoch(planted_dir, tmp_path, monkeypatch, reference):
    results = tmp_path / "r"
    real = Trainer._train_epoch.__globals__["check_finite"]
    with monkeypatch.context() as patch:
        patch.setattr("mmlbench.engine.trainer.check_finite", lambda loss, epoch: real(math.nan if epoch == 3 else loss, epoch))
        with pytest.raises(MMLBenchError, match="diverged at epoch 3"):
            train_run(CONFIG, _options(planted_dir, results, checkpoint_every=3600))
    assert store.read_runs(results)["status"].tolist() == [store.STATUS_FAILED]
    assert len(torch.load(_resume_file(results, reference.row["run_id"]))["epochs"]) == 2
    resumed = train_run(CONFIG, _options(planted_dir, results))
    assert resumed.row["resumed_from_epoch"] == 2
    _assert_same_run(resumed, reference)


def test_a_negative_checkpoint_interval_is_refused():
    with pytest.raises(MMLBenchError, match=r"--checkpoint-every must be 0 or more seconds, not -1$"):
        TrainOptions(checkpoint_every=-1)
    with pytest.raises(MMLBenchError, match="not nan"):
        TrainOptions(checkpoint_every=math.nan)


def test_killed_after_the_last_epoch_only_redoes_the_test_evaluation(planted_dir, tmp_path, monkeypatch, reference):
    results = tmp_path / "r"
    with monkeypatch.context() as patch:
        interrupt_after(patch, CONFIG.epochs)
        train_run(CONFIG, _options(planted_dir, results))
    trained = _count_epochs(monkeypatch)
    resumed = train_run(CONFIG, _options(planted_dir, results))
    assert trained == [] and resumed.row["resumed_from_epoch"] == CONFIG.epochs
    _assert_same_run(resumed, reference)


def test_a_run_trained_without_its_test_evaluation_is_stored_trained_and_evaluated_once(
    planted_dir, tmp_path, monkeypatch, reference
):
    """train_run(test=False), what a tuner selecting on validation needs: the fit happens and is
    seen epoch by epoch, the run is stored `trained` (curve and weights, no test metric), and
    training the config again with its test evaluation only evaluates the stored weights."""
    results, seen = tmp_path / "r", []
    trained = train_run(CONFIG, _options(planted_dir, results), on_epoch=seen.append, test=False)
    assert trained.status == store.STATUS_TRAINED and [log.epoch for log in seen] == [1, 2, 3, 4, 5, 6]
    assert trained.row["monitor_value"] == reference.row["monitor_value"] == max(log.metrics[CONFIG.monitor] for log in seen)
    assert not any(is_metric_column(name) for name in trained.row) and not (trained.run_dir / store.PER_USER_FILE).exists()
    assert not ids.resume_folder(results, trained.row["run_id"]).exists()
    assert train_run(CONFIG, _options(planted_dir, results), test=False).skipped  # a trained run is reused by a trial

    epochs = _count_epochs(monkeypatch)
    tested = train_run(CONFIG, _options(planted_dir, results, marks={"selection": "tuned"}))
    assert epochs == [] and tested.status == store.STATUS_COMPLETED and tested.row["selection"] == "tuned"
    _assert_same_run(tested, reference)
    assert store.read_runs(results)["status"].tolist() == [store.STATUS_COMPLETED]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError("CUDA out of memory")], ids=["ctrl-c", "error"])
def test_a_stop_at_the_test_evaluation_keeps_the_last_epoch(planted_dir, tmp_path, monkeypatch, reference, stop):
    results = tmp_path / "r"
    with monkeypatch.context() as patch:
        patch.setattr(single, "finish_run", lambda *args, **kwargs: (_ for _ in ()).throw(stop))
        with pytest.raises(type(stop) if isinstance(stop, BaseException) else stop):
            train_run(CONFIG, _options(planted_dir, results, checkpoint_every=3600))
    assert list(store.iter_run_dirs(results)) == []
    trained = _count_epochs(monkeypatch)
    resumed = train_run(CONFIG, _options(planted_dir, results))
    assert trained == [] and resumed.row["resumed_from_epoch"] == CONFIG.epochs
    _assert_same_run(resumed, reference)


def test_early_stopping_state_and_learning_rate_survive_the_restart(planted_dir, tmp_path, monkeypatch):
    # A monitor that never improves: best at epoch 1, then lr decays and training stops at patience.
    flat = Evaluation({"recall@20": 0.5, "recall@10": 0.4}, seconds=0.0, users=1)
    real = Trainer.evaluate
    monkeypatch.setattr(Trainer, "evaluate", lambda self, split, per_user=False: real(self, split, per_user=True) if per_user else flat)
    config = RunConfig("planted", epochs=30, patience=3, lr=0.01, negatives=5, batch_size=64, plateau_lr_factor=0.5)
    results = tmp_path / "r"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        train_run(config, _options(planted_dir, results))
    outcome = train_run(config, _options(planted_dir, results))
    curve = store.read_curve(outcome.run_dir)
    assert curve["lr"].tolist() == [0.01, 0.01, 0.005, 0.0025]  # as uninterrupted: stale count and lr kept
    assert outcome.row["best_epoch"] == 1 and outcome.row["resumed_from_epoch"] == 2


def _interrupted_after_two_of_three(planted_dir, results, monkeypatch):
    """A 3-epoch run stopped by Ctrl-C after epoch 2: (its config, its outcome)."""
    config = RunConfig("planted", negatives=5, batch_size=64, epochs=3)
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        return config, train_run(config, _options(planted_dir, results))


@pytest.mark.parametrize("start_over", [{"resume": False}, {"force": True}])
def test_no_resume_and_force_start_over(planted_dir, tmp_path, monkeypatch, start_over):
    results = tmp_path / "r"
    config, interrupted = _interrupted_after_two_of_three(planted_dir, results, monkeypatch)
    assert _resume_file(results, interrupted.row["run_id"]).is_file()
    trained = _count_epochs(monkeypatch)
    outcome = train_run(config, _options(planted_dir, results, **start_over))
    assert trained == [1, 2, 3] and outcome.row["resumed_from_epoch"] == 0


def test_an_unreadable_checkpoint_is_refused_not_ignored(planted_dir, tmp_path, monkeypatch):
    """Bytes whose sha256 was recorded (as written) but that torch cannot read: not resumed, not
    started over silently (that would drop the progress); --no-resume starts over."""
    results = tmp_path / "r"
    config, interrupted = _interrupted_after_two_of_three(planted_dir, results, monkeypatch)
    folder = ids.resume_folder(results, interrupted.row["run_id"])
    monkeypatch.setattr(resume.torch, "save", lambda state, handle: handle.write(b"not a checkpoint"))
    resume.write(folder, {})
    monkeypatch.undo()
    trained = _count_epochs(monkeypatch)
    with pytest.raises(resume.DamagedCheckpoint, match=r"state.pt cannot be read \(.*\); not resumed: `--no-resume`"):
        train_run(config, _options(planted_dir, results))
    assert trained == [] and store.read_runs(results)["status"].tolist() == [store.STATUS_INTERRUPTED]
    outcome = train_run(config, _options(planted_dir, results, resume=False))
    assert outcome.status == store.STATUS_COMPLETED and outcome.row["resumed_from_epoch"] == 0


@pytest.mark.parametrize("flag, resumed_from", [([], 2), (["--no-resume"], 0)])
def test_train_command_resumes_unless_told_not_to(planted_dir, tmp_path, monkeypatch, flag, resumed_from):
    results = tmp_path / "r"
    args = ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results),
            "--negatives", "5", "--batch-size", "64", "--epochs", "3", "--device", "cpu"]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        CliRunner().invoke(app, args)
    result = CliRunner().invoke(app, [*args, *flag])
    assert result.exit_code == 0, result.output
    assert ("resuming after epoch 2" in result.stderr) == bool(resumed_from)
    assert store.read_runs(results)["resumed_from_epoch"].tolist() == [resumed_from]
