"""What a `tune --jobs N` worker process does: the trial loop of every cell, until each budget is spent.

Its last word goes through its pipe: ("done", ""), ("interrupted", "") or ("unwritable", message).
Signals as `train --jobs` workers (plan/executors/local_worker.py): Ctrl-C reaches the main process,
which sends SIGTERM; that interrupts the trial in progress (its run stored interrupted, the trial
given back), and the worker never outlives the main process.
"""

from __future__ import annotations

import dataclasses
import signal
from multiprocessing.connection import Connection

from mmlbench.plan.executors.local_worker import STOP_SIGNALS, exit_with_parent, take_share_of_cores
from mmlbench.plan.tuning.loop import search_here, shower
from mmlbench.plan.tuning.study import Cell
from mmlbench.runs.options import TrainOptions
from mmlbench.store import StoreUnwritable

_interrupted = False


def serve(conn: Connection, parent_pid: int, cells: list[Cell], options: TrainOptions, jobs: int) -> None:
    take_share_of_cores(jobs)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt)
    exit_with_parent(parent_pid)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    show = shower({cell.name: cell.config.monitor for cell in cells}, options.quiet)
    try:
        search_here(cells, dataclasses.replace(options, quiet=True), show)  # one progress bar per worker would interleave
        answer = ("done", "")
    except KeyboardInterrupt:
        answer = ("interrupted", "")
    except StoreUnwritable as exc:
        answer = ("unwritable", str(exc))
    conn.send(answer)


def _interrupt(signum: int, frame: object) -> None:
    """Interrupt the trial in progress, once."""
    global _interrupted
    if not _interrupted:
        _interrupted = True
        raise KeyboardInterrupt
