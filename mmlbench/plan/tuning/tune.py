"""A whole tune: open every cell's study, search every cell, then test each best setting's final seeds.

Every journal is opened (made, the first time) before the first trial, so an unwritable store is
found then. Ctrl-C or SIGTERM during the search gives the trials in flight back and ends the tune
with what it has (`interrupted`): no final run starts, and the same command goes on where it
stopped. With `--backend ray` one connection to the cluster serves the search and the final runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from mmlbench.plan.executors import BackendOptions
from mmlbench.plan.executors.base import Executor
from mmlbench.plan.sweep import sigterm_as_interrupt, was_interrupted
from mmlbench.plan.tuning.final import CellResult, run_finals, summary
from mmlbench.plan.tuning.search import search
from mmlbench.plan.tuning.study import Cell, CellStudy
from mmlbench.runs.options import TrainOptions


@dataclass(frozen=True)
class TuneResult:
    cells: list[CellResult]
    interrupted: bool = False


def run_tune(cells: list[Cell], options: TrainOptions, backend: str, spread: BackendOptions, executor: Executor) -> TuneResult:
    studies = [CellStudy(cell, options.results_dir) for cell in cells]
    with _cluster(backend, spread, options.quiet):
        try:
            with sigterm_as_interrupt():
                search(cells, options, backend, spread)
        except KeyboardInterrupt:
            return TuneResult([summary(study) for study in studies], interrupted=True)
        results, stopped = [], False
        for study in studies:
            result = summary(study) if stopped else run_finals(summary(study), options, executor)
            stopped = stopped or was_interrupted(result.finals)
            results.append(result)
    return TuneResult(results, interrupted=stopped)


@contextlib.contextmanager
def _cluster(backend: str, spread: BackendOptions, quiet: bool) -> Iterator[None]:
    if backend != "ray":
        yield
        return
    from mmlbench.plan.executors.ray_connect import connected

    with connected(spread.address, quiet=quiet, timeout=spread.connect_timeout):
        yield
