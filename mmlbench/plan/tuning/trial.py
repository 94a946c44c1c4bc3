"""One trial: ask the cell's study, train the setting as a run on validation only, report, tell.

A trial is a run of the single-run path (`runs.single.train_run` with its test evaluation left
out: claims, resume checkpoints, atomic folders): its run row carries the study, the trial number
and `selection = trial`. Each evaluated epoch's validation monitor is reported to the trial, and
the pruner's verdict stops the run (stored `pruned`). A trial whose setting equals a stored run
(completed, or trained by a trial before) reuses it and reports its stored validation curve. A run
another process is training (a claim) is waited for, then reused. A run that fails (diverges) is
a failed trial and the study goes on; Ctrl-C gives the trial back (its parameters enqueued again,
its run stored interrupted: the same command resumes it from its checkpoint).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import Trial, TrialState

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.console import info
from mmlbench.errors import MMLBenchError
from mmlbench.plan.tuning.space import with_value
from mmlbench.plan.tuning.study import CellStudy, decode
from mmlbench.runs.options import RunOutcome, TrainOptions
from mmlbench.runs.single import EpochLog, StopFit, train_run
from mmlbench.store import claims

CLAIM_POLL_SECONDS = 1.0
CLAIM_WAIT_SECONDS = 24 * 3600.0  # a run claimed elsewhere is waited for this long at most, then the trial fails
REUSED, RUN_ID, ERROR = "reused", "run_id", "error"  # the trial's user attributes


@dataclass(frozen=True)
class TrialOutcome:
    """What became of one trial: its state (completed, pruned, failed), value, settings, run."""

    study: str
    number: int
    state: str
    params: dict[str, Any] = field(default_factory=dict)
    value: float = math.nan
    reused: bool = False
    run_id: str = ""
    error: str = ""

    def line(self, monitor: str) -> str:
        settings = ", ".join(f"{name}={_shown(value)}" for name, value in self.params.items())
        value = f"{monitor} {self.value:.4f}" if math.isfinite(self.value) else self.error or "no value"
        how = " (reused)" if self.reused else ""
        return f"{self.study} trial {self.number}: {self.state}{how}, {value}; {settings}"


def run_trial(study: CellStudy, options: TrainOptions, token: str, gone: frozenset[str] = frozenset()) -> TrialOutcome | None:
    """Ask the study for a trial and run it; None when the study's budget is spent."""
    trial = study.ask(token, gone)
    if trial is None:
        return None
    cell = study.cell
    params = decode(cell.space, trial.params)
    marks = {"study": cell.name, "trial": trial.number, "selection": "trial"}
    outcome = TrialOutcome(cell.name, trial.number, "", params)
    try:
        config = with_value(cell.config, params)
        run = _train(config, dataclasses.replace(options, marks=marks), trial, quiet=options.quiet)
    except (KeyboardInterrupt, store.StoreUnwritable):
        study.give_back(trial)
        raise
    except Exception as exc:  # noqa: BLE001 - a failing trial (divergence, out of memory) is the study's, not the tune's
        message = str(exc) if isinstance(exc, MMLBenchError) else f"{type(exc).__name__}: {exc}"
        trial.set_user_attr(ERROR, message)
        study.study.tell(trial, state=TrialState.FAIL)
        return dataclasses.replace(outcome, state="failed", error=message)
    if run.status == store.STATUS_INTERRUPTED:
        study.give_back(trial)
        raise KeyboardInterrupt
    trial.set_user_attr(RUN_ID, str(run.row.get("run_id")))
    trial.set_user_attr(REUSED, run.skipped)
    outcome = dataclasses.replace(outcome, run_id=str(run.row.get("run_id")), reused=run.skipped, value=float(run.row["monitor_value"]))
    if run.status == store.STATUS_PRUNED:
        study.study.tell(trial, state=TrialState.PRUNED)
        return dataclasses.replace(outcome, state="pruned")
    study.study.tell(trial, outcome.value)
    return dataclasses.replace(outcome, state="completed")


def _train(config: RunConfig, options: TrainOptions, trial: Trial, *, quiet: bool) -> RunOutcome:
    """The trial's run, validation only; a run claimed elsewhere waited for, then reused."""
    monitor = config.monitor

    def report(log: EpochLog) -> None:
        if monitor in log.metrics:
            trial.report(log.metrics[monitor], log.epoch)
            if trial.should_prune():
                raise StopFit

    waited_since = None
    while True:
        try:
            run = train_run(config, options, on_epoch=report, test=False)
            break
        except claims.ClaimedElsewhere as exc:
            waited_since = _wait(exc, waited_since, quiet=quiet)
    if run.skipped:
        _report_curve(trial, run, monitor)
    return run


def _wait(exc: claims.ClaimedElsewhere, since: float | None, *, quiet: bool) -> float:
    now = time.monotonic()
    if since is None:
        since = now
        if not quiet:
            info(f"waiting for a trial's run {exc} to finish, to reuse it")
    if now - since > CLAIM_WAIT_SECONDS:
        raise MMLBenchError(f"waited {CLAIM_WAIT_SECONDS / 3600:g} h for a run {exc}")
    time.sleep(CLAIM_POLL_SECONDS)
    return since


def _report_curve(trial: Trial, run: RunOutcome, monitor: str) -> None:
    """A reused run's stored validation curve, epoch by epoch, as its trial would have reported it."""
    try:
        curve = store.read_curve(run.run_dir)
    except MMLBenchError:
        return
    if monitor not in curve.columns:
        return
    for epoch, value in zip(curve["epoch"], curve[monitor]):
        if value == value:  # evaluated epochs only
            trial.report(float(value), int(epoch))


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(_shown, value))
    return f"{value:.3g}" if isinstance(value, float) else str(value)
