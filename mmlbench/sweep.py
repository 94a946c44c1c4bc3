"""Running many configs: skip completed ones, keep going past failures, report what happened.

How the runs are carried out (this process, worker processes, later a cluster) is the
executor's job: see `mmlbench.executors`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Collection, Iterator

from mmlbench.config import RunConfig
from mmlbench.data.dataset import require_processed
from mmlbench.data.processed import read_meta
from mmlbench.engine.runner import TrainOptions
from mmlbench.executors import Executor, get_executor
from mmlbench.executors.base import CANCELLED, CLAIMED, SweepEntry
from mmlbench.paths import results_home
from mmlbench import claims, store

__all__ = ["CANCELLED", "CLAIMED", "RunTraceback", "SweepEntry", "plan", "run_sweep", "was_interrupted"]


def plan(
    configs: list[RunConfig], options: TrainOptions, fetching: Collection[str] = ()
) -> list[tuple[RunConfig, str, str]]:
    """(config, run id, 'done' | 'claimed elsewhere' | 'to run') per config; reads only meta.json files.

    A config whose dataset is in `fetching` (not there yet, `train` would fetch it) is 'to run'
    with '?' for the hash in its run id: the hash needs the data's fingerprint.
    """
    results_dir = results_home(options.results_dir)
    completed = store.completed_runs(results_dir)
    rows = []
    for config in configs:
        if config.dataset in fetching:
            rows.append((config, config.run_id("?"), "to run"))
            continue
        fingerprint = read_meta(require_processed(config.dataset, options.data_dir)).get("fingerprint", "")
        config_hash = config.hash(fingerprint)
        if config_hash in completed and not options.force:
            state = "done"
        else:
            state = CLAIMED if claims.live_claim(results_dir, config_hash) else "to run"
        rows.append((config, config.run_id(config_hash), state))
    return rows


def run_sweep(
    configs: list[RunConfig], options: TrainOptions, jobs: int = 1, executor: Executor | None = None
) -> list[SweepEntry]:
    """Train every config through `executor` (default: the local one for `jobs` runs at once).

    A failing run is recorded and the others go on. Ctrl-C or SIGTERM stops the whole sweep:
    runs in progress are stored as interrupted, the others are cancelled, and the entries say
    so (see `was_interrupted`).
    """
    if executor is None:
        executor = get_executor("local", jobs)
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
