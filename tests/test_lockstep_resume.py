"""Runs trained in lockstep save resume checkpoints and resume from them, exactly.

Each member writes on its own clock (`checkpoint_every`, default 60 s: longer than any group
here, so the files below are those written at the stop, from the snapshot of each member's
last closed epoch).

The checkpoint is the one a run alone writes, so a run interrupted in a group resumes alone
and the other way round; every comparison is with the same run trained alone without a
break, bit for bit (==) on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from test_lockstep import _options, _same_run, _three

from mmlbench import store
from mmlbench.engine.group_step import GroupStep
from mmlbench.plan.executors.lockstep import plan_groups
from mmlbench.runs import group, resume
from mmlbench.runs.group import train_group
from mmlbench.runs.progress import TrainingProgress
from mmlbench.runs.single import train_run
from mmlbench.store import ids
from interrupting import interrupt_after


def _checkpoint(results, outcome) -> bool:
    return (ids.resume_folder(results, outcome.row["run_id"]) / resume.STATE_FILE).is_file()


def _interrupt_group_after(monkeypatch, epochs: int) -> list[int]:
    """Ctrl-C at the start of the group's epoch `epochs + 1`; returns the group epochs run (a list that grows)."""
    calls: list[int] = []
    original = GroupStep.run_epoch

    def run_epoch(self):
        calls.append(len(self.members))
        if len(calls) == epochs + 1:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(GroupStep, "run_epoch", run_epoch)
    return calls


def _interrupt_group_training(monkeypatch, epoch: int) -> None:
    """Ctrl-C once the group has trained its epoch `epoch`, before any member closes it: what
    that epoch changed in place (the stacks, Adam's moments and steps, the generators) is lost."""
    original, calls = GroupStep.run_epoch, []

    def run_epoch(self):
        means = original(self)
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return means

    monkeypatch.setattr(GroupStep, "run_epoch", run_epoch)


def _saved_epochs(results, outcome) -> int:
    return len(torch.load(ids.resume_folder(results, outcome.row["run_id"]) / resume.STATE_FILE)["epochs"])


def _count_group_epochs(monkeypatch) -> list[int]:
    """How many members each group epoch trained."""
    return _interrupt_group_after(monkeypatch, -2)  # never interrupts


def _group_again(planted_dir, results, monkeypatch, **options) -> tuple[list, list[int]]:
    """The three runs trained as a group again: (their outcomes, how many members each group epoch trained)."""
    group_epochs = _count_group_epochs(monkeypatch)
    return train_group(_three(), _options(planted_dir, results, **options)), group_epochs


@pytest.fixture
def alone(planted_dir, tmp_path):
    """The three runs of `_three()` trained alone, without a break."""
    return [train_run(config, _options(planted_dir, tmp_path / "alone")) for config in _three()]


def test_a_group_interrupted_after_epoch_two_resumes_and_equals_each_run_alone(planted_dir, tmp_path, monkeypatch, alone):
    results = tmp_path / "group"
    with monkeypatch.context() as patch:
        _interrupt_group_after(patch, 2)
        interrupted = train_group(_three(), _options(planted_dir, results))
    assert [outcome.status for outcome in interrupted] == [store.STATUS_INTERRUPTED] * 3
    assert all(_checkpoint(results, outcome) for outcome in interrupted)  # kept while not completed

    resumed, group_epochs = _group_again(planted_dir, results, monkeypatch)
    assert group_epochs == [3, 3, 3]  # epochs 3-5 only
    for one, together in zip(alone, resumed):
        _same_run(one, together)
        assert together.row["resumed_from_epoch"] == 2 and together.row["execution"] == "lockstep"
        assert together.status == store.STATUS_COMPLETED and not ids.resume_folder(results, together.row["run_id"]).exists()


@pytest.mark.parametrize("every", [0, 3600])
def test_ctrl_c_during_a_group_epoch_resumes_from_the_last_one_closed(planted_dir, tmp_path, monkeypatch, alone, every):
    results = tmp_path / "group"
    with monkeypatch.context() as patch:
        _interrupt_group_training(patch, 3)
        interrupted = train_group(_three(), _options(planted_dir, results, checkpoint_every=every))
    assert [outcome.row["epochs_run"] for outcome in interrupted] == [2, 2, 2]
    assert [_saved_epochs(results, outcome) for outcome in interrupted] == [2, 2, 2]
    resumed = train_group(_three(), _options(planted_dir, results))
    for one, together in zip(alone, resumed):
        assert together.row["resumed_from_epoch"] == 2
        _same_run(one, together)


@pytest.mark.parametrize("every", [0, 3600])
def test_each_member_writes_after_an_epoch_only_when_its_interval_has_passed(planted_dir, tmp_path, monkeypatch, every):
    results, seen = tmp_path / "group", []
    original = TrainingProgress.epoch_done

    def epoch_done(self, log):  # as each member reports an epoch: (the epoch, the epochs in the files on disk)
        original(self, log)
        files = store.runs_dir(results).glob(f".*.resume/{resume.STATE_FILE}")
        seen.append((log.epoch, sorted(len(torch.load(path)["epochs"]) for path in files)))

    monkeypatch.setattr(TrainingProgress, "epoch_done", epoch_done)
    outcomes = train_group(_three(), _options(planted_dir, results, checkpoint_every=every))
    assert len(seen) >= 9 and all(outcome.status == store.STATUS_COMPLETED for outcome in outcomes)
    if every:
        assert all(on_disk == [] for _, on_disk in seen)
    else:  # the member reporting has just written its epoch; the others theirs, up to one epoch before
        assert all(on_disk and max(on_disk) == epoch for epoch, on_disk in seen)
        assert [on_disk for _, on_disk in seen[:3]] == [[1], [1, 1], [1, 1, 1]]


def test_ctrl_c_at_a_leaving_runs_test_evaluation_saves_every_run_not_stored(planted_dir, tmp_path, monkeypatch, alone):
    results = tmp_path / "group"
    with monkeypatch.context() as patch:
        patch.setattr(group, "finish_run", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            train_group(_three(), _options(planted_dir, results, checkpoint_every=3600))
    assert list(store.iter_run_dirs(results)) == []
    resumed, group_epochs = _group_again(planted_dir, results, monkeypatch)
    assert group_epochs == []  # every run resumed after its last epoch: only the test evaluations are left
    for one, together in zip(alone, resumed):
        assert together.row["resumed_from_epoch"] == one.row["epochs_run"]
        _same_run(one, together)


def test_members_resume_from_different_epochs_one_after_its_last(planted_dir, tmp_path, monkeypatch, alone):
    """Ctrl-C as the first run reports its last epoch: it saved epoch 5, the others epoch 4."""
    results = tmp_path / "group"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 5)
        train_group(_three(), _options(planted_dir, results))
    resumed, group_epochs = _group_again(planted_dir, results, monkeypatch)
    assert [outcome.row["resumed_from_epoch"] for outcome in resumed] == [5, 4, 4]
    assert group_epochs == [2]  # the first only re-does its test evaluation
    for one, together in zip(alone, resumed):
        _same_run(one, together)


def test_a_run_interrupted_in_a_group_resumes_alone(planted_dir, tmp_path, monkeypatch, alone):
    results = tmp_path / "group"
    with monkeypatch.context() as patch:
        _interrupt_group_after(patch, 2)
        train_group(_three(), _options(planted_dir, results))
    dropout_run = _three()[1]  # dropout and its own lr: its random stream and Adam's lr matter
    resumed = train_run(dropout_run, _options(planted_dir, results))
    assert resumed.row["resumed_from_epoch"] == 2 and resumed.row["execution"] == "alone"
    _same_run(alone[1], resumed)


def test_a_run_interrupted_alone_resumes_in_a_group(planted_dir, tmp_path, monkeypatch, alone):
    results = tmp_path / "group"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 3)
        assert train_run(_three()[1], _options(planted_dir, results)).status == store.STATUS_INTERRUPTED
    resumed = train_group(_three(), _options(planted_dir, results))
    assert [outcome.row["resumed_from_epoch"] for outcome in resumed] == [0, 3, 0]
    for one, together in zip(alone, resumed):
        _same_run(one, together)
        assert together.row["execution"] == "lockstep"


@pytest.mark.parametrize("start_over", [{"resume": False}, {"force": True}])
def test_no_resume_and_force_start_a_group_over(planted_dir, tmp_path, monkeypatch, alone, start_over):
    results = tmp_path / "group"
    with monkeypatch.context() as patch:
        _interrupt_group_after(patch, 2)
        interrupted = train_group(_three(), _options(planted_dir, results))
    assert all(_checkpoint(results, outcome) for outcome in interrupted)
    again, group_epochs = _group_again(planted_dir, results, monkeypatch, **start_over)
    assert [outcome.row["resumed_from_epoch"] for outcome in again] == [0, 0, 0] and len(group_epochs) == 5
    for one, together in zip(alone, again):
        _same_run(one, together)


def test_a_resumed_group_says_so_unless_quiet(planted_dir, tmp_path, monkeypatch, capsys):
    results = tmp_path / "group"
    with monkeypatch.context() as patch:
        _interrupt_group_after(patch, 2)
        interrupted = train_group(_three(), _options(planted_dir, results))
    capsys.readouterr()
    options = _options(planted_dir, results)
    train_group(_three(), type(options)(**{**options.__dict__, "quiet": False}))
    err = capsys.readouterr().err
    assert all(f"{outcome.row['run_id']}: resuming after epoch 2" in err for outcome in interrupted)


def test_the_executor_keeps_a_resumable_config_in_its_group(planted_dir, tmp_path, monkeypatch):
    results = tmp_path / "results"
    configs = _three()
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        assert train_run(configs[0], _options(planted_dir, results)).status == store.STATUS_INTERRUPTED
    assert plan_groups(configs) == [[0, 1, 2]]


def test_a_members_checkpoint_is_the_one_its_run_alone_writes(planted_dir, tmp_path, monkeypatch):
    config = _three()[1]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        run_id = train_run(config, _options(planted_dir, tmp_path / "alone")).row["run_id"]
    with monkeypatch.context() as patch:
        _interrupt_group_after(patch, 2)
        train_group(_three(), _options(planted_dir, tmp_path / "group"))
    alone, grouped = (torch.load(ids.resume_folder(tmp_path / where, run_id) / resume.STATE_FILE) for where in ("alone", "group"))
    assert alone.keys() == grouped.keys()
    for name, weights in alone["model"].items():
        assert torch.equal(weights, grouped["model"][name])
        assert grouped["model"][name].untyped_storage().nbytes() == weights.nbytes  # its slice, not the group's stack
    assert alone["optimizer"]["state"].keys() == grouped["optimizer"]["state"].keys()
    for index, moments in alone["optimizer"]["state"].items():
        assert all(torch.equal(value, grouped["optimizer"]["state"][index][key]) for key, value in moments.items())
    assert alone["optimizer"]["param_groups"][0]["lr"] == grouped["optimizer"]["param_groups"][0]["lr"] == 0.02
    assert torch.equal(alone["rng"]["cpu"], grouped["rng"]["cpu"])
    assert [log["metrics"] for log in alone["epochs"]] == [log["metrics"] for log in grouped["epochs"]]
    assert (alone["best_epoch"], alone["stale"]) == (grouped["best_epoch"], grouped["stale"])


def test_a_failed_member_keeps_its_checkpoint_the_completed_ones_do_not(planted_dir, tmp_path, monkeypatch):
    results, real, calls = tmp_path / "group", GroupStep.run_epoch, []

    def diverge_at_three(self):
        calls.append(1)
        means = real(self)
        return [(float("nan"), 0.0) if m.config.loss == "mmcl" and len(calls) == 3 else pair for m, pair in zip(self.members, means)]

    with monkeypatch.context() as patch:
        patch.setattr(GroupStep, "run_epoch", diverge_at_three)
        outcomes = train_group(_three(), _options(planted_dir, results, checkpoint_every=3600))
    assert "diverged at epoch 3" in str(outcomes[1])
    assert [ids.resume_folder(results, outcome.row["run_id"]).exists() for outcome in (outcomes[0], outcomes[2])] == [False, False]
    failed = store.read_runs(results).query("status == 'failed'")["run_id"].tolist()
    assert len(failed) == 1
    assert len(torch.load(ids.resume_folder(results, failed[0]) / resume.STATE_FILE)["epochs"]) == 2  # written at the failure
    config = _three()[1]
    resumed = train_run(config, _options(planted_dir, results))  # epoch 2's state, not the one epoch 3 left
    assert resumed.row["resumed_from_epoch"] == 2
    _same_run(train_run(config, _options(planted_dir, tmp_path / "alone")), resumed)


def test_a_group_that_fails_as_a_whole_saves_every_member(planted_dir, tmp_path, monkeypatch):
    results, real, calls = tmp_path / "group", GroupStep.run_epoch, []

    def out_of_memory_at_three(self):
        calls.append(1)
        means = real(self)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory")
        return means

    monkeypatch.setattr(GroupStep, "run_epoch", out_of_memory_at_three)
    outcomes = train_group(_three(), _options(planted_dir, results, checkpoint_every=3600))
    assert all("out of memory" in str(outcome) for outcome in outcomes)
    runs = store.read_runs(results)
    assert runs["status"].tolist() == [store.STATUS_FAILED] * 3
    assert [len(torch.load(ids.resume_folder(results, run_id) / resume.STATE_FILE)["epochs"]) for run_id in runs["run_id"]] == [2, 2, 2]
