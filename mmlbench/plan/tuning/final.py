"""After the search: each cell's best setting trained with its final seeds and tested once, and the cell's summary.

The best trial is the completed trial with the highest validation value (pruned and failed trials
never are). Its setting is trained at seeds base .. base + N - 1 through the sweep's executor (local,
--jobs or Ray), each run marked `selection = tuned` with the study and the trial; the base seed's
run is the best trial's own run (the same settings and seed: the same hash), so it is not trained
again but evaluated on test, once (runs.trained). Test metrics exist only for these runs.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from mmlbench.config import RunConfig
from mmlbench.metrics import is_metric_column
from mmlbench.plan.executors.base import Executor, SweepEntry
from mmlbench.plan.sweep import run_sweep
from mmlbench.plan.tuning.space import with_value
from mmlbench.plan.tuning.study import GIVEN_BACK, Cell, CellStudy, decode
from mmlbench.plan.tuning.trial import REUSED
from mmlbench.runs.options import TrainOptions

TUNED = "tuned"


@dataclass(frozen=True)
class Best:
    number: int
    value: float
    params: dict[str, Any]


@dataclass(frozen=True)
class CellResult:
    """A cell's search and final runs: what `tune` prints per cell."""

    cell: Cell
    counts: dict[str, int]  # finished (the budget's), completed, pruned, failed, reused
    best: Best | None
    history: list[tuple[int, str, float]]  # (trial number, state, validation value) of every finished trial
    journal: str
    finals: list[SweepEntry] = field(default_factory=list)

    @property
    def final_metrics(self) -> dict[str, tuple[float, float, int]]:
        """Test metric -> (mean, sample std, n) over the final seeds that completed."""
        rows = [entry.outcome.row for entry in self.finals if entry.outcome is not None and entry.status in ("completed", "skipped")]
        names = [name for name in (rows[0] if rows else {}) if is_metric_column(name)]
        found = {}
        for name in names:
            values = [float(row[name]) for row in rows if name in row and row[name] == row[name]]
            if values:
                spread = statistics.stdev(values) if len(values) > 1 else math.nan
                found[name] = (statistics.fmean(values), spread, len(values))
        return found


def summary(study: CellStudy) -> CellResult:
    """The state of a cell's study, read from its journal."""
    trials = [trial for trial in study.trials() if trial.state.is_finished() and not trial.user_attrs.get(GIVEN_BACK)]
    states = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
    counts = {"finished": len(trials), **{name: sum(t.state == state for t in trials) for state, name in states.items()}}
    counts["reused"] = sum(bool(t.user_attrs.get(REUSED)) for t in trials)
    history = [(t.number, states[t.state], _value(t)) for t in trials]
    return CellResult(study.cell, counts, _best(study.cell, trials), history, str(study.path))


def _value(trial: FrozenTrial) -> float:
    if trial.value is not None:
        return float(trial.value)
    return max(trial.intermediate_values.values(), default=math.nan)  # a pruned trial's best epoch so far


def _best(cell: Cell, trials: list[FrozenTrial]) -> Best | None:
    completed = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not completed:
        return None
    best = max(completed, key=lambda t: (t.value, -t.number))  # the first of equal values
    return Best(best.number, float(best.value), decode(cell.space, best.params))


def final_configs(cell: Cell, best: Best) -> list[RunConfig]:
    base = cell.config.seed
    return [with_value(cell.config, {**best.params, "seed": base + i}) for i in range(cell.settings.seeds)]


def run_finals(result: CellResult, options: TrainOptions, executor: Executor) -> CellResult:
    """The cell's best setting at its final seeds, marked tuned; the result with their entries."""
    if result.best is None:
        return result
    marks = {"study": result.cell.name, "trial": result.best.number, "selection": TUNED}
    entries = run_sweep(final_configs(result.cell, result.best), dataclasses.replace(options, marks=marks), executor=executor)
    return dataclasses.replace(result, finals=entries)
