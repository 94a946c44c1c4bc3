"""Sweep executors by backend name (`--backend`): the registry, and the options every backend is given.

A backend is one module with a class implementing `base.Executor` (the contract every backend
implements) and a factory `make(BackendOptions) -> Executor`, plus one entry in EXECUTORS: where
the factory lies ("module:attribute", imported only when that backend is chosen, so `mmlbench
--help` and the other backends never pay for its packages), what `--backend`'s help says of it,
the options it refuses (checked before anything is imported) and the extra whose package it
needs. `--backend`'s help and its "unknown backend" error come from the registry, and
tests/test_executor_contract.py holds every entry to the contract.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmlbench.errors import MMLBenchError
from mmlbench.plugins import PluginSpec, Registry

if TYPE_CHECKING:
    from mmlbench.plan.executors.base import Executor


@dataclass(frozen=True)
class BackendOptions:
    """How a backend spreads the runs (none of it changes a result): `--jobs` for local, the rest for ray."""

    jobs: int = 1  # runs at once on this machine
    address: str | None = None  # the Ray cluster to join; None starts a local instance
    gpus_per_run: float | None = None  # None: 1 where the cluster has GPUs and the device is not cpu, else 0
    cpus_per_run: float | None = None  # None: 1
    ship_results: bool = False  # workers return the run folders and this process writes them
    connect_timeout: float | None = None  # seconds to wait for the cluster at `address`; None: ray_connect's default

    @property
    def cluster_options(self) -> list[str]:
        """The cluster-only options that were given, as their command-line names."""
        given = {
            "--address": self.address is not None, "--gpus-per-run": self.gpus_per_run is not None,
            "--cpus-per-run": self.cpus_per_run is not None, "--ship-results": self.ship_results,
            "--connect-timeout": self.connect_timeout is not None,
        }
        return [name for name, is_given in given.items() if is_given]


@dataclass(frozen=True)
class ExecutorSpec(PluginSpec):
    """A registered backend: `target` is its factory (BackendOptions -> Executor), `help` what
    `--backend` says of it, `refuse` raises for options it does not take, `extra` names the
    optional package (and pip extra) it imports."""

    help: str = ""
    refuse: Callable[[BackendOptions], None] | None = None
    extra: str | None = None


def _no_cluster_options(settings: BackendOptions) -> None:
    if settings.cluster_options:
        raise MMLBenchError(f"for --backend ray only: {', '.join(settings.cluster_options)}")


def _in_this_process(settings: BackendOptions) -> None:
    _no_cluster_options(settings)
    if settings.jobs > 1:
        raise MMLBenchError("--jobs applies to --backend local; --backend lockstep trains its groups in this process")


def _on_ray(settings: BackendOptions) -> None:
    """--jobs is local; an empty --address would start a local instance, as no --address does: refused as a likely slip."""
    if settings.jobs > 1:
        raise MMLBenchError("--jobs is for --backend local; on Ray, --gpus-per-run and --cpus-per-run decide how many runs share a node")
    if settings.address is not None and not settings.address.strip():
        raise MMLBenchError("--address is empty: give auto or HOST:PORT, or leave it out to start a local Ray instance")
    timeout = settings.connect_timeout
    if timeout is not None:
        if settings.address is None:
            raise MMLBenchError("--connect-timeout is for joining a cluster with --address")
        if not 0 < timeout < float("inf"):  # NaN too
            raise MMLBenchError(f"--connect-timeout must be a number of seconds above 0, not {timeout:g}")


EXECUTORS: Registry[ExecutorSpec] = Registry("backend", {
    "local": ExecutorSpec("mmlbench.plan.executors.local:make", help="this machine, --jobs", refuse=_no_cluster_options),
    "lockstep": ExecutorSpec(
        "mmlbench.plan.executors.lockstep:make",
        help="this process; runs differing only in loss, seed, lr, l2, dropout or clipping train together in one batched step",
        refuse=_in_this_process,
    ),
    "ray": ExecutorSpec(
        "mmlbench.plan.executors.ray:make", help="a Ray cluster, or a local Ray instance; the ray extra", refuse=_on_ray,
        extra="ray",
    ),
})


def extra_missing(backend: str, extra: str) -> str:
    return f"--backend {backend} needs the {extra} extra: pip install 'mmlbench[{extra}]'"


RAY_EXTRA = extra_missing("ray", "ray")


def backend_help() -> str:
    """`--backend`'s help, from the registry: 'Where the runs go: local (...), lockstep (...) or ray (...).'"""
    entries = [f"{name} ({spec.help})" for name, spec in EXECUTORS.items()]
    listed = f"{', '.join(entries[:-1])} or {entries[-1]}" if len(entries) > 1 else entries[0]
    return f"Where the runs go: {listed}."


def get_executor(backend: str, settings: BackendOptions | None = None) -> Executor:
    """The executor of `backend` for these settings, or an error naming the closest backend."""
    spec = EXECUTORS.spec(backend)
    settings = settings or BackendOptions()
    if spec.refuse is not None:
        spec.refuse(settings)
    if spec.extra is not None:
        try:
            importlib.import_module(spec.extra)  # only to say which extra is missing
        except ImportError:
            raise MMLBenchError(extra_missing(backend, spec.extra)) from None
    return spec.load()(settings)
