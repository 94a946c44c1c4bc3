"""The local-process executor: several runs at once in worker processes (`--jobs N`, N > 1).

On one GPU this fills the gaps small runs leave. Workers are spawned (CUDA cannot be used in
forked children), live for the whole sweep, and each trains one config at a time, sent to it
through its own pipe (`executors.local_worker`). Unlike a process pool, one worker's death
(kill -9, the out-of-memory killer, a crash in native code) costs only its run: the main
process sees it, starts another worker and runs that config once more, resuming from its
resume checkpoint; a second death makes it a failed entry. The other runs go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.plan.executors import BackendOptions
from mmlbench.plan.executors.base import CANCELLED, SweepEntry
from mmlbench.plan.executors.inprocess import InProcessExecutor
from mmlbench.plan.executors.local_worker import STOP_SIGNALS, serve
from mmlbench.runs.options import TrainOptions

WORKER_RETRIES = 1  # a config whose worker died is run once more, then it is a failed entry


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    task: tuple[int, RunConfig] | None = None  # (index in the sweep, config) while it trains one


def make(settings: BackendOptions) -> InProcessExecutor | LocalProcessExecutor:
    """This machine: one run after another in this process, or `jobs` worker processes."""
    return InProcessExecutor() if settings.jobs <= 1 else LocalProcessExecutor(settings.jobs)


class LocalProcessExecutor:
    """Runs up to `jobs` configs at once in spawned worker processes.

    On Ctrl-C (the terminal signals every process; workers ignore SIGINT) or SIGTERM the main
    process stops the sweep: configs not handed out come back cancelled, and each busy worker
    gets SIGTERM, which interrupts its run (stored as interrupted); the main process waits for
    them, and a second Ctrl-C kills them instead.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def run(self, configs: list[RunConfig], options: TrainOptions) -> list[SweepEntry]:
        quiet = dataclasses.replace(options, quiet=True)  # several progress bars would interleave
        workers = _Workers(self.jobs, quiet)
        entries: dict[int, SweepEntry] = {}
        try:
            _run_all(configs, workers, entries)
        except KeyboardInterrupt:
            workers.stop(entries)
        except store.StoreUnwritable:
            workers.stop(entries)
            raise
        finally:
            workers.close()
        return [entries.get(index) or SweepEntry(config, state=CANCELLED) for index, config in enumerate(configs)]


def _run_all(configs: list[RunConfig], workers: _Workers, entries: dict[int, SweepEntry]) -> None:
    """Hand the configs out, `jobs` at a time, into `entries`; a config whose worker died goes back to the front once."""
    queue = deque(enumerate(configs))
    deaths: dict[int, int] = {}
    while queue or workers.busy:
        while queue and len(workers.busy) < workers.jobs:
            workers.hand_out(*queue.popleft())
        for (index, config), answer in workers.answers():
            if isinstance(answer, store.StoreUnwritable):
                raise answer
            if isinstance(answer, str):  # the worker died: `answer` says how
                deaths[index] = deaths.get(index, 0) + 1
                if deaths[index] <= WORKER_RETRIES:
                    queue.appendleft((index, config))
                    continue
                answer = SweepEntry(config, error=f"the worker process running it died ({deaths[index]} tries): {answer}")
            entries[index] = answer
            if answer.status == store.STATUS_INTERRUPTED:
                raise KeyboardInterrupt  # a worker was stopped on its own: stop the whole sweep


class _Workers:
    """The worker processes of one sweep: `busy` ones train a config each, idle ones wait for the next."""

    def __init__(self, jobs: int, options: TrainOptions) -> None:
        self.jobs, self.options = jobs, options
        self.context = multiprocessing.get_context("spawn")
        self.busy: list[_Worker] = []
        self.idle: list[_Worker] = []

    def hand_out(self, index: int, config: RunConfig) -> None:
        """Send a config to an idle worker, or to a new one (an idle worker may have died since).

        A Ctrl-C meanwhile is held until the worker is registered busy, so `stop` reaches it.
        """
        with signals_blocked():
            while self.idle:
                worker = self.idle.pop()
                if _send(worker, (config, self.options)):
                    self._busy(worker, index, config)
                    return
                _reap(worker)
            worker = self._start()
            _send(worker, (config, self.options))  # if it died already, `answers` says so
            self._busy(worker, index, config)

    def _busy(self, worker: _Worker, index: int, config: RunConfig) -> None:
        worker.task = (index, config)
        self.busy.append(worker)

    def answers(self) -> list[tuple[tuple[int, RunConfig], SweepEntry | store.StoreUnwritable | str]]:
        """Wait until some busy workers answer or die; their tasks with the answer (a str: how the worker died)."""
        ready = set(wait([w.conn for w in self.busy] + [w.process.sentinel for w in self.busy]))
        answers = []
        for worker in [w for w in self.busy if w.conn in ready or w.process.sentinel in ready]:
            task = worker.task
            assert task is not None  # busy
            self.busy.remove(worker)
            worker.task = None
            try:
                answers.append((task, worker.conn.recv()))
            except (EOFError, OSError):  # nothing sent: it died during the run
                answers.append((task, _reap(worker)))
                continue
            self.idle.append(worker)
        return answers

    def stop(self, entries: dict[int, SweepEntry]) -> None:
        """Interrupt the busy workers' runs and keep their entries; a second Ctrl-C kills them instead."""
        for worker in self.busy:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid, signal.SIGTERM)  # type: ignore[arg-type] - started
        try:
            while self.busy:
                for (index, config), answer in self.answers():
                    if isinstance(answer, str):
                        answer = SweepEntry(config, error=f"the worker process running it died: {answer}")
                    if isinstance(answer, SweepEntry):  # a StoreUnwritable: the sweep is stopping already
                        entries[index] = answer
        except KeyboardInterrupt:
            for worker in self.busy:
                worker.process.kill()
                index, config = worker.task  # type: ignore[misc] - busy
                entries[index] = SweepEntry(config, error="killed by a second Ctrl-C before the run was stored", state=store.STATUS_INTERRUPTED)

    def close(self) -> None:
        """Tell every idle worker to exit and wait for them all; a busy one left (a second Ctrl-C, an error here) is killed."""
        for worker in self.idle:
            _send(worker, None)
        for worker in self.busy:
            worker.process.kill()
        for worker in self.idle + self.busy:
            _reap(worker)
        self.idle, self.busy = [], []

    def _start(self) -> _Worker:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=serve, args=(theirs, os.getpid(), self.jobs), name="mmlbench-worker")
        process.start()  # with Ctrl-C and SIGTERM blocked (hand_out): the worker unblocks them once its handlers are set
        theirs.close()  # the worker's end: only the worker holds it now, so its death closes the pipe
        return _Worker(process, ours)


def _send(worker: _Worker, message: object) -> bool:
    """False when the worker is gone."""
    try:
        worker.conn.send(message)
    except OSError:
        return False
    return True


def _reap(worker: _Worker) -> str:
    """Wait for a worker process that exited (or is exiting) and say how it ended."""
    worker.process.join()
    worker.conn.close()
    code = worker.process.exitcode
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM (delivered on leaving); spawned children start with them blocked."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
