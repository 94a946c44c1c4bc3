"""The trial loop of `tune`: each cell's trials, one after another, until the cell's budget is spent.

Whoever runs it (this process, a `--jobs` worker, the driver after Ray) shares nothing with the
others but the journals and the run store: see plan/tuning/search.py.
"""

from __future__ import annotations

from collections.abc import Callable

from mmlbench.console import info
from mmlbench.plan.tuning.study import Cell, CellStudy, new_token
from mmlbench.plan.tuning.trial import TrialOutcome, run_trial
from mmlbench.runs.options import TrainOptions

Show = Callable[[TrialOutcome], None]


def shower(monitor_of: dict[str, str], quiet: bool) -> Show:
    """A line per finished trial on stderr (none when quiet)."""

    def show(outcome: TrialOutcome) -> None:
        if not quiet:
            info(outcome.line(monitor_of[outcome.study]))

    return show


def search_here(cells: list[Cell], options: TrainOptions, show: Show, gone: frozenset[str] = frozenset()) -> None:
    """The loop in this process: each cell's trials until its budget is spent (`gone`: tokens of dead Ray tasks)."""
    token = new_token()
    for cell in cells:
        study = CellStudy(cell, options.results_dir)
        while (outcome := run_trial(study, options, token, gone)) is not None:
            show(outcome)
