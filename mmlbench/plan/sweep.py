"""Running many configs: skip completed ones, keep going past failures, report what happened.

How the runs are carried out (this process, worker processes, later a cluster) is the
executor's job: see `mmlbench.plan.executors`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.errors import MMLBenchError
from mmlbench.plan.executors import BackendOptions, get_executor
from mmlbench.plan.executors.base import CANCELLED, CLAIMED, Executor, SweepEntry, fingerprint_of, plan
from mmlbench.runs.options import TrainOptions
from mmlbench.store.ids import LABEL_FIELDS, run_id

__all__ = ["CANCELLED", "CLAIMED", "RunTraceback", "SweepEntry", "SweepResult", "plan", "run_sweep", "was_interrupted"]


def run_sweep(
    configs: list[RunConfig], options: TrainOptions, jobs: int = 1, executor: Executor | None = None
) -> list[SweepEntry]:
    """Train every config through `executor` (default: the local one for `jobs` runs at once).

    A failing run is recorded and the others go on. Ctrl-C or SIGTERM stops the whole sweep:
    runs in progress are stored as interrupted, the others are cancelled, and the entries say
    so (see `was_interrupted`).
    """
    if executor is None:
        executor = get_executor("local", BackendOptions(jobs=jobs))
    with sigterm_as_interrupt():
        return executor.run(configs, options)


def was_interrupted(entries: list[SweepEntry]) -> bool:
    return any(entry.status in (store.STATUS_INTERRUPTED, CANCELLED) for entry in entries)


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did: one entry per config, in order, and each run's id (for a run that failed
    before it was stored, from its data's fingerprint; its label where the data cannot be read)."""

    entries: list[SweepEntry]
    run_ids: list[str]

    @classmethod
    def of(cls, entries: list[SweepEntry], data_dir: Path | None = None) -> SweepResult:
        return cls(entries, [_run_id(entry, data_dir) for entry in entries])

    @property
    def counts(self) -> dict[str, int]:
        """How many runs ended in each status, in the order the statuses first occur."""
        return dict(Counter(entry.status for entry in self.entries))

    @property
    def failed(self) -> list[SweepEntry]:
        return [entry for entry in self.entries if entry.status == store.STATUS_FAILED]

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl-C or SIGTERM: runs stopped (`stopped`) or not begun (`cancelled`)."""
        return was_interrupted(self.entries)

    @property
    def stopped(self) -> int:
        return sum(entry.status == store.STATUS_INTERRUPTED for entry in self.entries)

    @property
    def cancelled(self) -> int:
        return sum(entry.status == CANCELLED for entry in self.entries)

    @property
    def unlabelled_settings(self) -> list[str]:
        """The settings that tell apart runs whose labels are the same (e.g. --lr 0.01,1e30)."""
        groups: dict[tuple[object, ...], list[RunConfig]] = {}
        for entry in self.entries:
            groups.setdefault(tuple(getattr(entry.config, name) for name in LABEL_FIELDS), []).append(entry.config)
        return [
            f.name for f in dataclasses.fields(RunConfig)
            if f.name not in LABEL_FIELDS and any(len({getattr(c, f.name) for c in group}) > 1 for group in groups.values())
        ]

    def traceback(self) -> RunTraceback | None:
        """The failed runs' tracebacks, to chain to the error that reports them (--debug shows them)."""
        return RunTraceback.of(self.failed)


def _run_id(entry: SweepEntry, data_dir: Path | None) -> str:
    if entry.outcome is not None:
        return entry.label
    try:
        return run_id(entry.config, entry.config.hash(fingerprint_of(entry.config.dataset, data_dir)))
    except (MMLBenchError, OSError, ValueError):  # no readable data: the settings alone
        return entry.label


class RunTraceback(Exception):
    """The tracebacks of failed runs as text; the CLI chains it to its error so --debug shows them."""

    @classmethod
    def of(cls, entries: list[SweepEntry]) -> RunTraceback | None:
        texts = [f"{entry.label}:\n{entry.traceback}" for entry in entries if entry.traceback]
        return cls("\n" + "\n".join(texts)) if texts else None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (from `kill` or a job scheduler) stops the sweep as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
