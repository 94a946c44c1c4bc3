"""The local-process executor: several runs at once in worker processes (`--jobs N`, N > 1).

On one GPU this fills the gaps small runs leave. Workers are spawned (CUDA cannot be used in
forked children) and run `run_task` with quiet options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from multiprocessing.synchronize import Event as EventType

from mmlbench.config import RunConfig
from mmlbench.engine.runner import TrainOptions
from mmlbench.executors.base import CANCELLED, SweepEntry, run_task
from mmlbench import store


class LocalProcessExecutor:
    """Runs up to `jobs` configs at once in a pool of spawned worker processes.

    On Ctrl-C (the terminal signals every process; workers ignore SIGINT) or SIGTERM the main
    process stops the sweep: it sets `stop` (queued runs return cancelled), cancels what the pool
    has not handed out and sends each worker SIGTERM, which interrupts the run in progress.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def run(self, configs: list[RunConfig], options: TrainOptions) -> list[SweepEntry]:
        quiet = dataclasses.replace(options, quiet=True)  # several progress bars would interleave
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=context, initializer=_init_worker, initargs=(stop,))
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
        entry = run_task(config, options)
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
