"""Sweep executors by backend name; the contract every backend implements is in `base`.

A backend is one module with a class implementing `base.Executor` plus one entry here: a
factory from the BackendOptions of the command line (`--jobs`, the cluster options) to an
executor. A backend needing an optional package imports it only in its factory, so that
`mmlbench --help` and the other backends never pay for it.
"""

from __future__ import annotations

from collections.abc import Callable

from mmlbench.errors import MMLBenchError, unknown_name
from mmlbench.plan.executors.base import BackendOptions, Executor
from mmlbench.plan.executors.inprocess import InProcessExecutor
from mmlbench.plan.executors.local import LocalProcessExecutor
from mmlbench.plan.executors.lockstep import LockstepExecutor

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
    _check_address(settings)
    try:
        import ray as _  # noqa: F401 - only to say which extra is missing
    except ImportError:
        raise MMLBenchError(RAY_EXTRA) from None
    from mmlbench.plan.executors.ray import RayExecutor

    return RayExecutor(settings)


def _check_address(settings: BackendOptions) -> None:
    """An empty --address would start a local instance, as no --address does: refused as a likely slip."""
    if settings.address is not None and not settings.address.strip():
        raise MMLBenchError("--address is empty: give auto or HOST:PORT, or leave it out to start a local Ray instance")
    timeout = settings.connect_timeout
    if timeout is not None:
        if settings.address is None:
            raise MMLBenchError("--connect-timeout is for joining a cluster with --address")
        if not 0 < timeout < float("inf"):  # NaN too
            raise MMLBenchError(f"--connect-timeout must be a number of seconds above 0, not {timeout:g}")


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
