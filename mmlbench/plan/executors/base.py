"""The executor contract: how the runs of a sweep are carried out, whatever the backend.

`mmlbench.plan.sweep.run_sweep` hands an executor the configs of a sweep and the TrainOptions they
share; `Executor.run` returns one SweepEntry per config, in the order given. A backend (in
this process, local worker processes, a Ray cluster) is one module implementing `run`:

- **A task** is one config through `run_task(config, options)`: the single-run path
  (`runs.single.train_run`: load the data, reuse a completed run, claim, train, store) with
  its failures turned into an entry. A backend runs `run_task` wherever its workers are; it
  never re-implements training. Several progress bars would interleave: a backend running
  tasks at once passes `options` with `quiet=True`.
- **Results** go to the run store (`options.results_dir`), written by `train_run` itself:
  atomic run folders, and a claim while a run trains, so two executors or sweeps sharing a
  store never train one config twice. Every worker must see that store (same machine or a
  shared filesystem), unless its backend carries the run folders back itself (Ray's
  --ship-results). The entry that comes back is only the summary the CLI prints.
- **Failures** are entries: a failing run has `error` (and its traceback as text, for
  --debug) and the others go on. A worker that crashes or is killed outright costs only its
  run: the backend runs it once more (resuming from its checkpoint), then it is a failed entry. Once runs have started, the only exception `run` raises is
  `store.StoreUnwritable`, after stopping the other runs, since every run would fail the same way.
- **Interruption**: a KeyboardInterrupt in the calling thread (Ctrl-C; `run_sweep` turns
  SIGTERM into one) or a task that comes back interrupted stops the whole sweep. Runs in
  progress are interrupted (`train_run` stores them with status interrupted), runs not begun
  come back CANCELLED, and `run` returns normally, so the caller prints the summary and
  exits 130.
- **Planning**: `plan` says which configs are done, claimed elsewhere or to run; a backend
  that ships configs elsewhere consults it, so a completed run is never sent out again.
- **Setup**: a backend that cannot start (its package missing, a cluster it cannot reach,
  resources no node has) raises MMLBenchError from `run` before any run is handed out.
"""

from __future__ import annotations

import traceback
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.data.dataset import require_processed
from mmlbench.data.processed import read_meta
from mmlbench.errors import MMLBenchError
from mmlbench.runs.options import RunOutcome, TrainOptions
from mmlbench.runs.single import train_run
from mmlbench.store import claims
from mmlbench.store.ids import run_id, run_label

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
        return run_label(self.config)

    @property
    def claimed_elsewhere(self) -> bool:
        return self.state == CLAIMED

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


def plan(
    configs: list[RunConfig], options: TrainOptions, fetching: Collection[str] = ()
) -> list[tuple[RunConfig, str, str]]:
    """(config, run id, 'done' | 'claimed elsewhere' | 'to run') per config; reads only meta.json files.

    A config whose dataset is in `fetching` (not there yet, `train` would fetch it) is 'to run'
    with '?' for the hash in its run id: the hash needs the data's fingerprint.
    """
    results_dir = options.results_dir
    completed = store.completed_runs(results_dir)
    rows = []
    for config in configs:
        if config.dataset in fetching:
            rows.append((config, run_id(config, "?"), "to run"))
            continue
        config_hash = config.hash(fingerprint_of(config.dataset, options.data_dir))
        if config_hash in completed and not options.force:
            state = "done"
        else:
            state = CLAIMED if claims.live_claim(results_dir, config_hash) else "to run"
        rows.append((config, run_id(config, config_hash), state))
    return rows


def fingerprint_of(dataset: str, data_dir: Path | None) -> str:
    """The fingerprint of a processed dataset, from its meta.json (part of every run's config hash)."""
    return str(read_meta(require_processed(dataset, data_dir)).get("fingerprint", ""))
