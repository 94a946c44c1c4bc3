"""Sweep executors by backend name; the contract every backend implements is in `base`.

A backend is one module with a class implementing `base.Executor` plus one entry here: a
factory from the number of runs at once (`--jobs`) to an executor.
"""

from __future__ import annotations

from collections.abc import Callable

from mmlbench.errors import MMLBenchError, unknown_name
from mmlbench.executors.base import Executor
from mmlbench.executors.inprocess import InProcessExecutor
from mmlbench.executors.local import LocalProcessExecutor
from mmlbench.executors.lockstep import LockstepExecutor


def local(jobs: int) -> Executor:
    """This machine: one run after another in this process, or `jobs` worker processes."""
    return InProcessExecutor() if jobs <= 1 else LocalProcessExecutor(jobs)


def lockstep(jobs: int) -> Executor:
    """This process: runs of one shape trained together in one batched step (engine.lockstep)."""
    if jobs > 1:
        raise MMLBenchError("--jobs applies to --backend local; --backend lockstep trains its groups in this process")
    return LockstepExecutor()


EXECUTORS: dict[str, Callable[[int], Executor]] = {"local": local, "lockstep": lockstep}


def get_executor(backend: str, jobs: int = 1) -> Executor:
    """The executor of `backend` for `jobs` runs at once, or an error naming the closest backend."""
    try:
        make = EXECUTORS[backend]
    except KeyError:
        raise unknown_name("backend", backend, EXECUTORS) from None
    return make(jobs)
