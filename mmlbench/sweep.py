"""Running many configs: skip completed ones, keep going past failures, report what happened."""

from __future__ import annotations

import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from mmlbench.config import RunConfig
from mmlbench.data.dataset import require_processed
from mmlbench.data.processed import read_meta
from mmlbench.engine.runner import RunOutcome, TrainOptions, train_run
from mmlbench.errors import MMLBenchError
from mmlbench.paths import results_home
from mmlbench.report import claims, store

CLAIMED = "claimed elsewhere"  # another live process is training it: skipped, not a failure


@dataclass(frozen=True)
class SweepEntry:
    """What became of one config of a sweep."""

    config: RunConfig
    outcome: RunOutcome | None = None
    error: str = ""
    state: str = ""  # why a config was not trained here, when no outcome says it

    @property
    def status(self) -> str:
        if self.state:
            return self.state
        if self.outcome is None:
            return store.STATUS_FAILED
        return "skipped" if self.outcome.skipped else self.outcome.status


def plan(configs: list[RunConfig], options: TrainOptions) -> list[tuple[RunConfig, str, str]]:
    """(config, run id, 'done' | 'claimed elsewhere' | 'to run') per config; reads only meta.json files."""
    results_dir = results_home(options.results_dir)
    completed = store.completed_runs(results_dir)
    rows = []
    for config in configs:
        fingerprint = read_meta(require_processed(config.dataset, options.data_dir)).get("fingerprint", "")
        config_hash = config.hash(fingerprint)
        if config_hash in completed and not options.force:
            state = "done"
        else:
            state = CLAIMED if claims.live_claim(results_dir, config_hash) else "to run"
        rows.append((config, config.run_id(config_hash), state))
    return rows


def run_sweep(configs: list[RunConfig], options: TrainOptions, jobs: int = 1) -> list[SweepEntry]:
    """Train every config; a failing run is recorded and the others go on. Ctrl-C stops the sweep."""
    if jobs <= 1:
        return [_run_one(config, options) for config in configs]
    return _run_parallel(configs, options, jobs)


def _run_one(config: RunConfig, options: TrainOptions) -> SweepEntry:
    try:
        outcome = train_run(config, options)
    except claims.ClaimedElsewhere as exc:
        return SweepEntry(config, error=str(exc), state=CLAIMED)
    except store.StoreUnwritable:
        raise  # every other run would fail the same way
    except MMLBenchError as exc:
        return SweepEntry(config, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken run must not stop the sweep
        return SweepEntry(config, error=f"{type(exc).__name__}: {exc}")
    if outcome.status == store.STATUS_INTERRUPTED:
        raise KeyboardInterrupt
    return SweepEntry(config, outcome)


def _run_parallel(configs: list[RunConfig], options: TrainOptions, jobs: int) -> list[SweepEntry]:
    """Several runs at once in worker processes (on one GPU: fills the gaps small runs leave)."""
    quiet = dataclasses.replace(options, quiet=True)  # several progress bars would interleave
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    entries: dict[int, SweepEntry] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(_run_one, config, quiet): i for i, config in enumerate(configs)}
        for future in as_completed(futures):
            index = futures[future]
            try:
                entries[index] = future.result()
            except (KeyboardInterrupt, store.StoreUnwritable):
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            except Exception as exc:  # a worker that crashed outright
                entries[index] = SweepEntry(configs[index], error=f"{type(exc).__name__}: {exc}")
    return [entries[i] for i in range(len(configs))]
