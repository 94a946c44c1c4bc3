"""`tune --backend ray`: one Ray task per trial of every cell's budget, on a cluster or a local instance.

Each task runs one step of the trial loop on its worker (`ray_trial`: ask the cell's study, train
the trial as a run, report its epochs for pruning, tell), against the journal in the store, which
every node must share (as the run store: --ship-results does not apply to tune). A task that finds
the budget spent returns at once. Each task has its own token: when Ray runs a task again after its
worker died, its earlier try's trial is given back first (its run resumes from its checkpoint);
the tokens of tasks that failed for good are handed back to the driver, whose own loop then gives
their trials back and runs them. Ctrl-C cancels the tasks (a running one's trial is given back).
"""

from __future__ import annotations

import contextlib
import dataclasses

import ray
from ray import exceptions as ray_errors

from mmlbench.errors import MMLBenchError
from mmlbench.paths import data_home
from mmlbench.plan.executors import BackendOptions
from mmlbench.plan.executors.ray import POLL_SECONDS, SYSTEM_RETRIES, task_resources, worker_device
from mmlbench.plan.executors.ray_connect import connected
from mmlbench.plan.executors.ray_worker import data_mismatch
from mmlbench.plan.tuning.loop import Show
from mmlbench.plan.tuning.study import Cell, CellStudy, new_token
from mmlbench.plan.tuning.trial import TrialOutcome, run_trial
from mmlbench.runs.options import TrainOptions
from mmlbench.store import StoreUnwritable


def ray_trial(cell: Cell, options: TrainOptions, token: str) -> TrialOutcome | None:
    """One trial of `cell` on this worker, with the data the driver named the study with."""
    mismatch = data_mismatch(cell.config.dataset, options.data_dir, cell.fingerprint)
    if mismatch:
        raise MMLBenchError(mismatch)
    return run_trial(CellStudy(cell, options.results_dir), options, token)


_remote_trial = ray.remote(max_retries=SYSTEM_RETRIES, retry_exceptions=False)(ray_trial)


def search_on_ray(cells: list[Cell], options: TrainOptions, spread: BackendOptions, show: Show) -> frozenset[str]:
    """Every cell's trials as Ray tasks; the tokens of the tasks whose worker died for good."""
    options = dataclasses.replace(
        options, data_dir=data_home(options.data_dir).absolute(), results_dir=options.results_dir.absolute()
    )
    with connected(spread.address, quiet=options.quiet, timeout=spread.connect_timeout):
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        resources = task_resources(spread, options.device, nodes)
        worker = dataclasses.replace(options, quiet=True, device=worker_device(options.device, resources))
        pending = {}
        for cell in cells:
            for _ in range(cell.settings.trials):
                token = new_token()
                pending[_remote_trial.options(**resources, name=f"{cell.name} trial").remote(cell, worker, token)] = token
        try:
            return _collect(pending, show)
        except BaseException:
            _cancel(pending)
            raise


def _collect(pending: dict, show: Show) -> frozenset[str]:
    dead: set[str] = set()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
        for ref in ready:
            token = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray_errors.RayTaskError as exc:  # raised by the trial step itself: every task would meet it
                cause = exc.cause
                if isinstance(cause, StoreUnwritable):
                    raise StoreUnwritable(str(cause)) from None
                if isinstance(cause, KeyboardInterrupt):
                    raise KeyboardInterrupt from None
                raise MMLBenchError(str(cause)) from None
            except ray_errors.RayError:  # its worker or node died, twice
                dead.add(token)
                continue
            if outcome is not None:
                show(outcome)
    return frozenset(dead)


def _cancel(pending: dict) -> None:
    """Cancel the tasks left, and wait for the running ones to give their trials back (a second Ctrl-C stops waiting)."""
    for ref in pending:
        ray.cancel(ref)
    with contextlib.suppress(KeyboardInterrupt):
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                pending.pop(ref)
    for ref in pending:
        ray.cancel(ref, force=True)
