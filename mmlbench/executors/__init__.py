"""Sweep executors by backend name; the contract every backend implements is in `base`.

A backend is one module with a class implementing `base.Executor` plus one entry here: a
factory from the number of runs at once (`--jobs`) to an executor.
"""

from __future__ import annotations

from collections.abc import Callable

from mmlbench.errors import unknown_name
from mmlbench.executors.base import Executor
from mmlbench.executors.inprocess import InProcessExecutor
from mmlbench.executors.local import LocalProcessExecutor


def local(jobs: int) -> Executor:
    """This machine: one run after another in this process, or `jobs` worker processes."""
    return InProcessExecutor() if jobs <= 1 else LocalProcessExecutor(jobs)


EXECUTORS: dict[str, Callable[[int], Executor]] = {"local": local}


def get_executor(backend: str, jobs: int = 1) -> Executor:
    """The executor of `backend` for `jobs` runs at once, or an error naming the closest backend."""
    try:
        make = EXECUTORS[backend]
    except KeyError:
        raise unknown_name("backend", backend, EXECUTORS) from None
    return make(jobs)
