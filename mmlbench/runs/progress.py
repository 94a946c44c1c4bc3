"""What a person sees while a run trains: a rich bar at a terminal, one line per epoch in logs."""

from __future__ import annotations

import math

from mmlbench.config import RunConfig
from mmlbench.console import ProgressBar, err
from mmlbench.engine.trainer import EpochLog
from mmlbench.store.ids import run_label


class TrainingProgress(ProgressBar):
    """Context manager fed by the trainer's callbacks; host-side only (never syncs the device)."""

    def __init__(self, config: RunConfig, *, quiet: bool) -> None:
        super().__init__(quiet, transient=True)
        self.config, self.quiet = config, quiet
        self.task = None
        self.batches = 0
        self.label = run_label(config)

    def start(self, batches: int, first_epoch: int = 1) -> None:
        self.batches = batches
        if self.bar is not None:
            self.task = self.bar.add_task(f"{self.label} · epoch {first_epoch}/{self.config.epochs}", total=batches)

    def batch_done(self, batch: int) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=batch)

    def epoch_done(self, log: EpochLog) -> None:
        line = self._line(log)
        if self.bar is not None and self.task is not None:
            self.bar.console.print(line, highlight=False)
            self.bar.update(self.task, completed=0, description=f"{self.label} · epoch {log.epoch + 1}/{self.config.epochs}")
        elif not self.quiet:
            err.print(line, highlight=False)

    def _line(self, log: EpochLog) -> str:
        pairs_per_second = self.batches * self.config.batch_size / max(log.epoch_seconds, 1e-9)
        text = f"{self.label} · epoch {log.epoch}: loss {log.loss:.4f}"
        if not math.isnan(log.violations):  # NaN: a loss without negatives
            text += f" · violations {log.violations:.3f}"
        text += f" · {log.epoch_seconds:.1f}s ({pairs_per_second:,.0f} pairs/s)"
        if log.metrics:
            text += f" · {self.config.monitor} {log.metrics[self.config.monitor]:.4f} · eval {log.eval_seconds:.1f}s"
        return text
