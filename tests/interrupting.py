"""Ctrl-C at a chosen point of training, for the resume tests."""

from __future__ import annotations

from mmlbench.runs.progress import TrainingProgress


def interrupt_after(monkeypatch, epoch: int, times: int = 1) -> None:  # noqa: ANN001 - pytest's MonkeyPatch
    """Ctrl-C as the `times`-th run reports `epoch` to the progress display: after that epoch's checkpoint."""
    original, seen = TrainingProgress.epoch_done, []

    def epoch_done(self, log):  # noqa: ANN001, ANN202
        original(self, log)
        if log.epoch == epoch:
            seen.append(log)
            if len(seen) == times:
                raise KeyboardInterrupt

    monkeypatch.setattr(TrainingProgress, "epoch_done", epoch_done)
