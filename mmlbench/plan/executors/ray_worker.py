"""What one Ray task does on its worker: check the data, run the single-run path, maybe ship the folders.

Kept free of Ray itself: the task is a plain function that `executors.ray` wraps in `ray.remote`.
"""

from __future__ import annotations

import dataclasses
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.errors import MMLBenchError
from mmlbench.plan.executors.base import SweepEntry, fingerprint_of, run_task
from mmlbench.runs.options import TrainOptions


@dataclass(frozen=True)
class CellResult:
    """A task's answer: the run's entry, the folders it wrote when shipping them, a StoreUnwritable message."""

    entry: SweepEntry
    folders: dict[str, dict[str, bytes]] = field(default_factory=dict)  # run id -> file name -> bytes
    unwritable: str = ""  # the store cannot take runs: the driver stops the sweep with this line


def run_cell(config: RunConfig, options: TrainOptions, fingerprint: str, ship: bool) -> CellResult:
    """One run on this worker, with the data the driver planned with (`fingerprint`).

    With `ship` the run goes into a scratch store, and every run folder written there (completed,
    failed or interrupted) comes back as files for the driver to write into its own store.
    """
    mismatch = data_mismatch(config.dataset, options.data_dir, fingerprint)
    if mismatch:
        return CellResult(SweepEntry(config, error=mismatch))
    try:
        if not ship:
            return CellResult(run_task(config, options))
        with tempfile.TemporaryDirectory(prefix="mmlbench-ship-") as scratch:
            entry = run_task(config, dataclasses.replace(options, results_dir=Path(scratch)))
            folders = {run_dir.name: store.run_files(run_dir) for run_dir in store.iter_run_dirs(Path(scratch))}
            return CellResult(entry, folders)
    except store.StoreUnwritable as exc:
        return CellResult(SweepEntry(config, error=str(exc)), unwritable=str(exc))


def data_mismatch(dataset: str, data_dir: Path | None, planned: str) -> str:
    """Why this worker's processed `dataset` is not the one the sweep was planned with; '' when it is."""
    host = socket.gethostname()
    try:
        found = fingerprint_of(dataset, data_dir)
    except MMLBenchError as exc:
        return f"on {host}: {exc}"
    if found == planned:
        return ""
    return (
        f"the processed '{dataset}' on {host} has fingerprint {found[:12]}, not {planned[:12]} as where the sweep "
        "was planned: preprocess the same data on every node, or share --data-dir"
    )
