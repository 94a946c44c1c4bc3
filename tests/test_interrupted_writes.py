"""Ctrl-C (or SIGTERM, or a Ray cancel) landing in the middle of a write never fails the run.

torch.save writing to a file object calls back into Python for every chunk; a KeyboardInterrupt
raised there used to come out as RuntimeError('unexpected pos'), so an interrupted run was
stored as failed (the flaky Ray Ctrl-C test, issue 21). The signal is raised here from inside
that callback, deterministically.
"""

from __future__ import annotations

import signal

import pytest
import torch

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.fsutil import atomic_file, interrupts_held
from mmlbench.plan.sweep import run_sweep
from mmlbench.runs import resume
from mmlbench.runs.options import TrainOptions
from mmlbench.store import ids


class _SignalMidWrite:
    """A file object that raises `signum` as torch.save hands it its second chunk."""

    def __init__(self, handle, signum: int) -> None:
        self.handle, self.signum, self.chunks = handle, signum, 0

    def write(self, data) -> int:
        self.chunks += 1
        if self.chunks == 2:
            signal.raise_signal(self.signum)  # its Python handler runs here, inside torch's writer
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def _interrupt_first_save(monkeypatch, signum: int = signal.SIGINT) -> list[int]:
    """The next torch.save gets the signal midway; returns the list of saves it was sent in."""
    real_save, interrupted = torch.save, []

    def save(obj, f, *args, **kwargs):
        if not interrupted and hasattr(f, "write"):
            interrupted.append(1)
            f = _SignalMidWrite(f, signum)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    return interrupted


def test_an_interrupt_inside_torch_save_is_a_runtime_error_without_the_hold(tmp_path):
    """Why the hold exists: what torch makes of a KeyboardInterrupt in its writer."""
    with open(tmp_path / "x.pt", "wb") as handle, pytest.raises(RuntimeError, match="unexpected pos"):
        torch.save({"weights": torch.zeros(1000)}, _SignalMidWrite(handle, signal.SIGINT))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt  # what SIGTERM does in a sweep (sweep.run_sweep, a --jobs worker)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_an_atomic_write_lands_after_it_whole(tmp_path, signum):
    path = tmp_path / "state.pt"
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            with atomic_file(path) as tmp, open(tmp, "wb") as handle:
                torch.save({"weights": torch.arange(1000.0)}, _SignalMidWrite(handle, signum))
        assert signal.getsignal(signal.SIGTERM) is _raise_interrupt  # the handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert torch.equal(torch.load(path, weights_only=True)["weights"], torch.arange(1000.0))  # written whole
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temporary file left


def test_the_hold_delivers_a_signal_once_and_restores_the_handlers():
    calls: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with interrupts_held():
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)
            assert calls == []  # held
        assert calls == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_ctrl_c_during_a_resume_checkpoint_write_stores_the_run_as_interrupted(planted_dir, tmp_path, monkeypatch):
    """Before the fix: stored 'failed' with RuntimeError: ... unexpected pos."""
    results = tmp_path / "r"
    config = RunConfig("planted", negatives=5, batch_size=64, epochs=50, patience=50, eval_every=50)
    options = TrainOptions(device="cpu", data_dir=planted_dir, results_dir=results, quiet=True, checkpoint_every=0)
    interrupted = _interrupt_first_save(monkeypatch)  # the first save of the run: epoch 1's checkpoint
    [entry] = run_sweep([config], options)
    assert interrupted
    assert entry.status == store.STATUS_INTERRUPTED, entry.error
    [row] = store.read_runs(results).to_dict("records")
    assert (row["status"], row["epochs_run"]) == (store.STATUS_INTERRUPTED, 1)
    state = torch.load(ids.resume_folder(results, row["run_id"]) / resume.STATE_FILE, weights_only=True)
    assert len(state["epochs"]) == 1  # the checkpoint the interrupt landed in is whole


def test_a_hold_left_in_place_by_a_cut_short_restore_acts_as_the_handler_it_stands_for():
    """A signal may cut the restore of the handlers short: the hold still installed then passes signals on."""
    calls: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with interrupts_held():
            left_in_place = signal.getsignal(signal.SIGTERM)
        left_in_place(signal.SIGTERM, None)
        assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
