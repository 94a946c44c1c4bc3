"""The executor contract: how the runs of a sweep are carried out, whatever the backend.

`mmlbench.sweep.run_sweep` hands an executor the configs of a sweep and the TrainOptions they
share; `Executor.run` returns one SweepEntry per config, in the order given. A backend (in
this process, local worker processes, later a cluster) is one module implementing `run`:

- **A task** is one config through `run_task(config, options)`: the single-run path
  (`engine.runner.train_run`: load the data, reuse a completed run, claim, train, store) with
  its failures turned into an entry. A backend runs `run_task` wherever its workers are; it
  never re-implements training. Several progress bars would interleave: a backend running
  tasks at once passes `options` with `quiet=True`.
- **Results** go to the run store (`options.results_dir`), written by `train_run` itself:
  atomic run folders, and a claim while a run trains, so two executors or sweeps sharing a
  store never train one config twice. Every worker must see that store (same machine or a
  shared filesystem). The entry that comes back is only the summary the CLI prints.
- **Failures** are entries: a failing run has `error` (and its traceback as text, for
  --debug) and the others go on; a worker that crashes or is killed outright is a failed
  entry too. The only exception `run` raises is `store.StoreUnwritable`, after stopping the
  other runs, since every run would fail the same way.
- **Interruption**: a KeyboardInterrupt in the calling thread (Ctrl-C; `run_sweep` turns
  SIGTERM into one) or a task that comes back interrupted stops the whole sweep. Runs in
  progress are interrupted (`train_run` stores them with status interrupted), runs not begun
  come back CANCELLED, and `run` returns normally, so the caller prints the summary and
  exits 130.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Protocol

from mmlbench.config import RunConfig
from mmlbench.engine.runner import RunOutcome, TrainOptions, train_run
from mmlbench.errors import MMLBenchError
from mmlbench import claims, store

CLAIMED = "claimed elsewhere"  # another live process is training it: skipped, not a failure
CANCELLED = "cancelled"  # the sweep was stopped before this run began


@dataclass(frozen=True)
class SweepEntry:
    """What became of one config of a sweep."""

    config: RunConfig
    outcome: RunOutcome | None = None
    error: str = ""
    state: str = ""  # why a config was not trained here, when no outcome says it
    traceback: str = ""  # of a failure, as text (it may come from a worker process): shown by --debug

    @property
    def label(self) -> str:
        """The run id when the run was stored, else the settings that tell the runs of a sweep apart."""
        if self.outcome is not None:
            return str(self.outcome.row.get("run_id"))
        config = self.config
        return f"{config.dataset}-{config.model}-{config.loss}-n{config.negatives}-s{config.seed}"

    @property
    def status(self) -> str:
        if self.state:
            return self.state
        if self.outcome is None:
            return store.STATUS_FAILED
        return "skipped" if self.outcome.skipped else self.outcome.status


class Executor(Protocol):
    """Carries out the runs of a sweep; see the module docstring for the contract."""

    def run(self, configs: list[RunConfig], options: TrainOptions) -> list[SweepEntry]: ...


def run_task(config: RunConfig, options: TrainOptions) -> SweepEntry:
    """One config through the single-run path; every failure but an unwritable store becomes the entry."""
    try:
        outcome = train_run(config, options)
    except claims.ClaimedElsewhere as exc:
        return SweepEntry(config, error=str(exc), state=CLAIMED)
    except KeyboardInterrupt:  # outside the training loop, which stores the run itself
        return SweepEntry(config, error="interrupted before the run was stored", state=store.STATUS_INTERRUPTED)
    except store.StoreUnwritable:
        raise  # every other run would fail the same way
    except MMLBenchError as exc:
        return SweepEntry(config, error=str(exc), traceback=traceback.format_exc())
    except Exception as exc:  # noqa: BLE001 - one broken run must not stop the sweep
        return SweepEntry(config, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    return SweepEntry(config, outcome)
