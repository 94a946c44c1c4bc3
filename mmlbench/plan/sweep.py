"""Running many configs: skip completed ones, keep going past failures, report what happened.

How the runs are carried out (this process, worker processes, later a cluster) is the
executor's job: see `mmlbench.plan.executors`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.plan.executors import BackendOptions, get_executor
from mmlbench.plan.executors.base import CANCELLED, CLAIMED, Executor, SweepEntry, plan
from mmlbench.runs.options import TrainOptions

__all__ = ["CANCELLED", "CLAIMED", "RunTraceback", "SweepEntry", "plan", "run_sweep", "was_interrupted"]


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
    with _sigterm_as_interrupt():
        return executor.run(configs, options)


def was_interrupted(entries: list[SweepEntry]) -> bool:
    return any(entry.status in (store.STATUS_INTERRUPTED, CANCELLED) for entry in entries)


class RunTraceback(Exception):
    """The tracebacks of failed runs as text; the CLI chains it to its error so --debug shows them."""

    @classmethod
    def of(cls, entries: list[SweepEntry]) -> RunTraceback | None:
        texts = [f"{entry.label}:\n{entry.traceback}" for entry in entries if entry.traceback]
        return cls("\n" + "\n".join(texts)) if texts else None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
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
