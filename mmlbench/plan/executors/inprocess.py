"""The in-process executor: one run after another in this process (`--jobs 1`)."""

from __future__ import annotations

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.plan.executors.base import CANCELLED, SweepEntry, run_task
from mmlbench.runs.options import TrainOptions


class InProcessExecutor:
    """Runs the configs in order; Ctrl-C interrupts the run in progress and cancels the rest."""

    def run(self, configs: list[RunConfig], options: TrainOptions) -> list[SweepEntry]:
        entries: list[SweepEntry] = []
        try:
            for config in configs:
                entries.append(run_task(config, options))
                if entries[-1].status == store.STATUS_INTERRUPTED:
                    break
        except KeyboardInterrupt:  # between two runs
            pass
        return entries + [SweepEntry(config, state=CANCELLED) for config in configs[len(entries):]]
