"""The trials of every cell: in this process, in `--jobs N` worker processes, or as Ray tasks.

Every way runs the same step, `trial.run_trial` (ask the cell's study under its shared budget,
train the trial as a run, tell), against the journals in the store, so nothing but the journal
and the run store is shared and any number of processes, here or on a cluster, can tune one study
at once. Cells are searched in order: a worker moves to the next cell when a cell's budget is spent
(its last trials may still be in flight elsewhere). `--jobs N` starts N worker processes, each
running that loop (plan/tuning/worker.py); `--backend ray` submits one task per trial of the budget
(plan/tuning/ray_trials.py). Whatever ran elsewhere, this process then runs the loop itself: it
gives back the trials that dead workers or failed tasks left in flight, runs what remains, and waits
for the trials still in flight in other processes (another tune on the same store), so that the best
setting is picked from the whole budget, the same in every process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection, wait

from mmlbench.plan.executors import BackendOptions
from mmlbench.plan.executors.local import signals_blocked
from mmlbench.plan.tuning.loop import search_here, shower
from mmlbench.plan.tuning.study import Cell
from mmlbench.plan.tuning.worker import serve
from mmlbench.runs.options import TrainOptions
from mmlbench.store import StoreUnwritable


def search(cells: list[Cell], options: TrainOptions, backend: str, spread: BackendOptions) -> None:
    """Run every cell's trials until each budget is spent; Ctrl-C (KeyboardInterrupt) gives the trials in flight back."""
    show = shower({cell.name: cell.config.monitor for cell in cells}, options.quiet)
    gone: frozenset[str] = frozenset()
    if backend == "ray":
        from mmlbench.plan.tuning.ray_trials import search_on_ray

        gone = search_on_ray(cells, options, spread, show)
    elif spread.jobs > 1:
        _in_workers(cells, options, spread.jobs)
    search_here(cells, options, show, gone, settle=True)


def _in_workers(cells: list[Cell], options: TrainOptions, jobs: int) -> None:
    """`jobs` worker processes run the loop; Ctrl-C interrupts their trials (SIGTERM), a second one kills them."""
    context = multiprocessing.get_context("spawn")
    workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    with signals_blocked():  # spawned children start with Ctrl-C and SIGTERM blocked, until their handlers are set
        for _ in range(jobs):
            ours, theirs = context.Pipe(duplex=False)
            process = context.Process(target=serve, args=(theirs, os.getpid(), cells, options, jobs), name="mmlbench-tune-worker")
            process.start()
            theirs.close()
            workers.append((process, ours))
    try:
        answers = _answers(workers)
    except KeyboardInterrupt:
        _stop(workers)
        raise
    finally:
        for process, conn in workers:
            process.join()
            conn.close()
    unwritable = [message for kind, message in answers if kind == "unwritable"]
    if unwritable:
        raise StoreUnwritable(unwritable[0])
    if any(kind == "interrupted" for kind, _ in answers):
        raise KeyboardInterrupt  # a worker was stopped on its own (SIGTERM): stop the tune, as train does


def _answers(workers: list[tuple[multiprocessing.process.BaseProcess, Connection]]) -> list[tuple[str, str]]:
    """Each worker's last word (done, interrupted, unwritable), once all have ended; a dead one says nothing."""
    answers: list[tuple[str, str]] = []
    of_sentinel = {process.sentinel: conn for process, conn in workers}
    waiting = {conn for _, conn in workers}
    while waiting:
        for ready in wait([*waiting, *(s for s, c in of_sentinel.items() if c in waiting)]):
            conn = of_sentinel.get(ready, ready)
            if conn in waiting:
                waiting.discard(conn)
                with contextlib.suppress(EOFError, OSError):
                    answers.append(conn.recv())
    return answers


def _stop(workers: list[tuple[multiprocessing.process.BaseProcess, Connection]]) -> None:
    for process, _ in workers:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(process.pid, signal.SIGTERM)  # type: ignore[arg-type] - started
    try:
        for process, _ in workers:
            process.join()
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
        for process, _ in workers:
            process.kill()
