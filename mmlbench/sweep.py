"""Running many configs: skip completed ones, keep going past failures, report what happened."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType

from mmlbench.config import RunConfig
from mmlbench.data.dataset import require_processed
from mmlbench.data.processed import read_meta
from mmlbench.engine.runner import RunOutcome, TrainOptions, train_run
from mmlbench.errors import MMLBenchError
from mmlbench.paths import results_home
from mmlbench.report import claims, store

CLAIMED = "claimed elsewhere"  # another live process is training it: skipped, not a failure
CANCELLED = "cancelled"  # the sweep was stopped before this run began


@dataclass(frozen=True)
class SweepEntry:
    """What became of one config of a sweep."""

    config: RunConfig
    outcome: RunOutcome | None = None
    error: str = ""
    state: str = ""  # why a config was not trained here, when no outcome says it
    traceback: str = ""  # of a failure, as text (it may come from a worker process): shown by --debug

    @property
    def label(self) -> str:
        """The run id when the run was stored, else the settings that tell the runs of a sweep apart."""
        if self.outcome is not None:
            return str(self.outcome.row.get("run_id"))
        config = self.config
        return f"{config.dataset}-{config.model}-{config.loss}-n{config.negatives}-s{config.seed}"

    @property
    def status(self) -> str:
        if self.state:
            return self.state
        if self.outcome is None:
            return store.STATUS_FAILED
        return "skipped" if self.outcome.skipped else self.outcome.status


def plan(configs: list[RunConfig], options: TrainOptions) -> list[tuple[RunConfig, str, str]]:
    """(config, run id, 'done' | 'claimed elsewhere' | 'to run') per config; reads only meta.json files."""
    results_dir = results_home(options.results_dir)
    completed = store.completed_runs(results_dir)
    rows = []
    for config in configs:
        fingerprint = read_meta(require_processed(config.dataset, options.data_dir)).get("fingerprint", "")
        config_hash = config.hash(fingerprint)
        if config_hash in completed and not options.force:
            state = "done"
        else:
            state = CLAIMED if claims.live_claim(results_dir, config_hash) else "to run"
        rows.append((config, config.run_id(config_hash), state))
    return rows


def run_sweep(configs: list[RunConfig], options: TrainOptions, jobs: int = 1) -> list[SweepEntry]:
    """Train every config; a failing run is recorded and the others go on.

    Ctrl-C or SIGTERM stops the whole sweep: runs in progress are stored as interrupted, the
    others are cancelled, and the entries say so (see `was_interrupted`).
    """
    with _sigterm_as_interrupt():
        if jobs <= 1:
            return _run_sequential(configs, options)
        return _run_parallel(configs, options, jobs)


def was_interrupted(entries: list[SweepEntry]) -> bool:
    return any(entry.status in (store.STATUS_INTERRUPTED, CANCELLED) for entry in entries)


def _run_one(config: RunConfig, options: TrainOptions) -> SweepEntry:
    try:
        outcome = train_run(config, options)
    except claims.ClaimedElsewhere as exc:
        return SweepEntry(config, error=str(exc), state=CLAIMED)
    except KeyboardInterrupt:  # outside the training loop, which stores the run itself
        return SweepEntry(config, error="interrupted before the run was stored", state=store.STATUS_INTERRUPTED)
    except store.StoreUnwritable:
        raise  # every other run would fail the same way
    except MMLBenchError as exc:
        return SweepEntry(config, error=str(exc), traceback=traceback.format_exc())
    except Exception as exc:  # noqa: BLE001 - one broken run must not stop the sweep
        return SweepEntry(config, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    return SweepEntry(config, outcome)


class RunTraceback(Exception):
    """The tracebacks of failed runs as text; the CLI chains it to its error so --debug shows them."""

    @classmethod
    def of(cls, entries: list[SweepEntry]) -> RunTraceback | None:
        texts = [f"{entry.label}:\n{entry.traceback}" for entry in entries if entry.traceback]
        return cls("\n" + "\n".join(texts)) if texts else None


def _run_sequential(configs: list[RunConfig], options: TrainOptions) -> list[SweepEntry]:
    entries: list[SweepEntry] = []
    try:
        for config in configs:
            entries.append(_run_one(config, options))
            if entries[-1].status == store.STATUS_INTERRUPTED:
                break
    except KeyboardInterrupt:  # between two runs
        pass
    return entries + [SweepEntry(config, state=CANCELLED) for config in configs[len(entries):]]


def _run_parallel(configs: list[RunConfig], options: TrainOptions, jobs: int) -> list[SweepEntry]:
    """Several runs at once in worker processes (on one GPU: fills the gaps small runs leave).

    On Ctrl-C (the terminal signals every process; workers ignore SIGINT) or SIGTERM the main
    process stops the sweep: it sets `stop` (queued runs return cancelled), cancels what the pool
    has not handed out and sends each worker SIGTERM, which interrupts the run in progress.
    """
    quiet = dataclasses.replace(options, quiet=True)  # several progress bars would interleave
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    stop = context.Event()
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(stop,))
    futures: dict[Future, RunConfig] = {}
    try:
        with _signals_blocked():  # workers are spawned here; they unblock once their handlers are set
            futures = {pool.submit(_run_in_worker, config, quiet): config for config in configs}
        for future in as_completed(futures):
            if _entry(future, futures[future]).status == store.STATUS_INTERRUPTED:
                raise KeyboardInterrupt  # a worker was stopped on its own: stop the whole sweep
    except KeyboardInterrupt:
        _stop_workers(stop, futures)
    except store.StoreUnwritable:
        _stop_workers(stop, futures)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [_entry(future, config) for future, config in futures.items()]


def _entry(future: Future, config: RunConfig) -> SweepEntry:
    if future.cancelled():
        return SweepEntry(config, state=CANCELLED)
    try:
        return future.result()
    except store.StoreUnwritable:
        raise
    except Exception as exc:  # noqa: BLE001 - a worker that crashed or was killed outright
        return SweepEntry(config, error=f"{type(exc).__name__}: {exc}")


def _stop_workers(stop: EventType, futures: dict[Future, RunConfig]) -> None:
    stop.set()
    for future in futures:
        future.cancel()  # only those the pool has not handed to a worker yet
    for worker in multiprocessing.active_children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)


# In a worker process: the sweep's stop flag, and whether a run is in progress.
_stop: EventType | None = None
_in_run = False
_interrupted = False


def _init_worker(stop: EventType) -> None:
    global _stop
    _stop = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the main process, which stops us
    signal.signal(signal.SIGTERM, _interrupt_run)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _interrupt_run(signum: int, frame: object) -> None:
    """Interrupt the run in progress, once; an idle worker is wound down by the pool instead."""
    global _interrupted
    if _in_run and not _interrupted:
        _interrupted = True
        raise KeyboardInterrupt


def _run_in_worker(config: RunConfig, options: TrainOptions) -> SweepEntry:
    global _in_run
    _in_run = True
    try:
        if _stop is not None and _stop.is_set():
            return SweepEntry(config, state=CANCELLED)
        entry = _run_one(config, options)
        if entry.status == store.STATUS_INTERRUPTED and _stop is not None:
            _stop.set()
        return entry
    except KeyboardInterrupt:  # arrived before the run began
        return SweepEntry(config, state=CANCELLED)
    finally:
        _in_run = False


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM (delivered on leaving); spawned children start with them blocked."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
