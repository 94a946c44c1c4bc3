"""What a `--jobs N` worker process does: run the configs its pipe sends, one at a time, until told to stop.

The main process (`executors.local`) starts each worker with `serve` as its target and one end
of a pipe. The worker answers each (config, options) with the run's SweepEntry, or with the
StoreUnwritable that stops the sweep. A None, or the pipe closing, ends it.

Signals: Ctrl-C at a terminal reaches every process of the group; a worker ignores it and the
main process stops the sweep by sending SIGTERM to each busy worker, which interrupts the run
in progress (stored as interrupted). A worker never outlives the main process: on Linux the
kernel sends it SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere a thread
watching the parent pid does. Its run is then stored as interrupted and the worker exits.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

import torch

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.plan.executors.base import CANCELLED, SweepEntry, run_task
from mmlbench.runs.options import TrainOptions

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
PARENT_POLL_SECONDS = 1.0  # the watcher thread's period, where the kernel does not watch the parent
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

_in_run = False  # a run is in progress: SIGTERM interrupts it
_interrupted = False


def serve(conn: Connection, parent_pid: int, jobs: int) -> None:
    """The worker's main loop (started with STOP_SIGNALS blocked, see executors.local), one of `jobs`."""
    take_share_of_cores(jobs)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the main process, which stops us
    signal.signal(signal.SIGTERM, _interrupt_run)
    exit_with_parent(parent_pid)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    while os.getppid() == parent_pid:  # the parent may have died before the kernel was told to watch it
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the main process is gone
            return
        if task is None:
            return
        answer = run_in_worker(*task)
        try:
            conn.send(answer)
        except OSError:  # the main process is gone
            return


def take_share_of_cores(jobs: int) -> None:
    """Give torch this worker's share of the cores (every kind of worker: `train --jobs`, `tune --jobs`),
    unless the user set OMP_NUM_THREADS, which wins."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(share_of_cores(jobs))


def share_of_cores(jobs: int) -> int:
    """Torch's CPU threads for one of `jobs` workers: this machine's cores shared out between them.

    Each process would otherwise start a thread per core, and N workers' threads then outnumber
    the cores N times over and wait on each other (OpenMP threads spin while they wait).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // jobs)


def run_in_worker(config: RunConfig, options: TrainOptions) -> SweepEntry | store.StoreUnwritable:
    """One config through `run_task`, interruptible by SIGTERM while it runs."""
    global _in_run
    try:
        _in_run = True
        return run_task(config, options)
    except store.StoreUnwritable as exc:
        return exc
    except KeyboardInterrupt:  # arrived before the run began
        return SweepEntry(config, state=CANCELLED)
    finally:
        _in_run = False


def _interrupt_run(signum: int, frame: object) -> None:
    """Interrupt the run in progress, once; an idle worker is wound down through its pipe instead."""
    global _interrupted
    if _in_run and not _interrupted:
        _interrupted = True
        raise KeyboardInterrupt


def exit_with_parent(parent_pid: int) -> None:
    """Have SIGTERM sent to this process when `parent_pid` (its parent) dies."""
    if not _kernel_signals_parent_death(signal.SIGTERM):
        threading.Thread(target=watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _kernel_signals_parent_death(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(parent_pid: int, period: float = PARENT_POLL_SECONDS) -> None:
    """Send this process SIGTERM once its parent is gone (it is then adopted: another parent pid)."""
    while os.getppid() == parent_pid:
        time.sleep(period)
    os.kill(os.getpid(), signal.SIGTERM)
