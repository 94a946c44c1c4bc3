"""Sweep executors by backend name; the contract every backend implements is in `base`.

A backend is one module with a class implementing `base.Executor` plus one entry here: a
factory from the BackendOptions of the command line (`--jobs`, the cluster options) to an
executor.
"""

from __future__ import annotations

from collections.abc import Callable

from mmlbench.errors import MMLBenchError, unknown_name
from mmlbench.executors.base import BackendOptions, Executor
from mmlbench.executors.inprocess import InProcessExecutor
from mmlbench.executors.local import LocalProcessExecutor


def local(settings: BackendOptions) -> Executor:
    """This machine: one run after another in this process, or `jobs` worker processes."""
    if settings.cluster_options:
        raise MMLBenchError(f"{', '.join(settings.cluster_options)} need --backend ray")
    return InProcessExecutor() if settings.jobs <= 1 else LocalProcessExecutor(settings.jobs)


EXECUTORS: dict[str, Callable[[BackendOptions], Executor]] = {"local": local}


def get_executor(backend: str, settings: BackendOptions | None = None) -> Executor:
    """The executor of `backend` for these settings, or an error naming the closest backend."""
    try:
        make = EXECUTORS[backend]
    except KeyError:
        raise unknown_name("backend", backend, EXECUTORS) from None
    return make(settings or BackendOptions())
