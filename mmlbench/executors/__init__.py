"""Sweep executors by backend name; the contract every backend implements is in `base`.

A backend is one module with a class implementing `base.Executor` plus one entry here: a
factory from the BackendOptions of the command line (`--jobs`, the cluster options) to an
executor. A backend needing an optional package imports it only in its factory, so that
`mmlbench --help` and the other backends never pay for it.
"""

from __future__ import annotations

from collections.abc import Callable

from mmlbench.errors import MMLBenchError, unknown_name
from mmlbench.executors.base import BackendOptions, Executor
from mmlbench.executors.inprocess import InProcessExecutor
from mmlbench.executors.local import LocalProcessExecutor
from mmlbench.executors.lockstep import LockstepExecutor

RAY_EXTRA = "--backend ray needs the ray extra: pip install 'mmlbench[ray]'"


def local(settings: BackendOptions) -> Executor:
    """This machine: one run after another in this process, or `jobs` worker processes."""
    if settings.cluster_options:
        raise MMLBenchError(f"for --backend ray only: {', '.join(settings.cluster_options)}")
    return InProcessExecutor() if settings.jobs <= 1 else LocalProcessExecutor(settings.jobs)


def ray_cluster(settings: BackendOptions) -> Executor:
    """A Ray cluster, or a local Ray instance: one Ray task per run (the `ray` extra)."""
    if settings.jobs > 1:
        raise MMLBenchError("--jobs is for --backend local; on Ray, --gpus-per-run and --cpus-per-run decide how many runs share a node")
    try:
        import ray as _  # noqa: F401 - only to say which extra is missing
    except ImportError:
        raise MMLBenchError(RAY_EXTRA) from None
    from mmlbench.executors.ray import RayExecutor

    return RayExecutor(settings)


def lockstep(settings: BackendOptions) -> Executor:
    """This process: runs of one shape trained together in one batched step (engine.lockstep)."""
    if settings.cluster_options:
        raise MMLBenchError(f"for --backend ray only: {', '.join(settings.cluster_options)}")
    if settings.jobs > 1:
        raise MMLBenchError("--jobs applies to --backend local; --backend lockstep trains its groups in this process")
    return LockstepExecutor()


EXECUTORS: dict[str, Callable[[BackendOptions], Executor]] = {"local": local, "lockstep": lockstep, "ray": ray_cluster}


def get_executor(backend: str, settings: BackendOptions | None = None) -> Executor:
    """The executor of `backend` for these settings, or an error naming the closest backend."""
    try:
        make = EXECUTORS[backend]
    except KeyError:
        raise unknown_name("backend", backend, EXECUTORS) from None
    return make(settings or BackendOptions())
