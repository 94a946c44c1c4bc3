"""The trial loop of `tune`: each cell's trials, one after another, until the cell's budget is spent.

Whoever runs it (this process, a `--jobs` worker, the driver after Ray) shares nothing with the
others but the journals and the run store: see plan/tuning/search.py.
"""

from __future__ import annotations

import time
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


IN_FLIGHT_POLL_SECONDS = 1.0  # how often a finished search reads the journal again while others still train its trials


def search_here(
    cells: list[Cell], options: TrainOptions, show: Show, gone: frozenset[str] = frozenset(), *, settle: bool = False
) -> None:
    """The loop in this process: each cell's trials until its budget is spent (`gone`: tokens of dead Ray tasks).

    `settle`: then also until no trial of the cell is in flight elsewhere (another tune on the same store),
    so that every process picks its best from the whole budget; a trial whose process dies meanwhile is
    given back by `ask` and trained here.
    """
    token = new_token()
    for cell in cells:
        study = CellStudy(cell, options.results_dir)
        waited = False
        while True:
            while (outcome := run_trial(study, options, token, gone)) is not None:
                show(outcome)
            if not settle or not (running := study.in_flight()):
                break
            if not waited and not options.quiet:
                info(f"{cell.name}: waiting for {len(running)} trial(s) in flight in another process")
            waited = True
            time.sleep(IN_FLIGHT_POLL_SECONDS)
