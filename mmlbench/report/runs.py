"""The runs of a store for `mmlbench runs`: the listing as shown (settings, the monitor metric), one run's details.

Reads the store's listing (`store.listing`: damaged, running and orphaned runs included) and
filters it with `selection`'s `--where`; removing runs is the store's (`store.listing.remove`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mmlbench import store
from mmlbench.errors import MMLBenchError
from mmlbench.metrics import is_metric_column
from mmlbench.report.selection import apply_where, fail, normalise
from mmlbench.store.listing import STATUS_RUNNING, STATUSES, read_all

PRUNABLE = frozenset(STATUSES) - {store.STATUS_COMPLETED, store.STATUS_TRAINED, STATUS_RUNNING}
DEFAULT_MONITOR = "recall@20"

LIST_COLUMNS = ("run_id", "status", "dataset", "model", "loss", "negatives", "seed", "best_epoch", "epochs_run")
PROVENANCE_COLUMNS = (
    "git_commit", "mmlbench_version", "torch_version", "python_version", "host", "device", "device_name",
    "dataset_sha256", "config_hash", "setting_hash", "schema_version", "started_at", "finished_at",
    store.CHECKPOINT_SHA256,
)  # fmt: skip
COST_COLUMNS = (
    "epochs_run", "best_epoch", "epoch_seconds_median", "eval_seconds_median", "train_seconds_total",
    "wall_seconds", "test_eval_seconds", "samples_per_second", "peak_memory_bytes", "cuda_graphs",
    "execution", "lockstep_group",
)  # fmt: skip
OUTCOME_COLUMNS = ("run_id", "status", "error", "run_dir", "monitor_value")
CURVE_COLUMNS = ("epoch", "loss", "violations", "lr")  # before the metrics at the monitor's cut-off


def monitor_of(runs: pd.DataFrame) -> str:
    """The metric the listing shows: the runs' most common `monitor`, else recall@20."""
    if "monitor" in runs.columns and runs["monitor"].notna().any():
        return str(runs["monitor"].dropna().mode().iloc[0])
    return DEFAULT_MONITOR


def list_runs(results_dir: Path, where: dict[str, str], statuses: Collection[str] = ()) -> pd.DataFrame:
    """The listing: run id, status, main settings, best/run epochs, the monitor metric, finish time."""
    runs = select(read_all(results_dir), where, statuses)
    monitor = monitor_of(runs)
    columns = [*LIST_COLUMNS, monitor, "finished_at", "claimed_by", "error", "run_dir", "resume_dir"]
    # A damaged run's missing values would turn integer columns into floats (5.0 negatives).
    return runs.reindex(columns=columns).convert_dtypes()


def select(runs: pd.DataFrame, where: dict[str, str], statuses: Collection[str]) -> pd.DataFrame:
    """Runs matching every `--where` clause and one of `statuses` (all when empty)."""
    if where and not runs.empty:
        runs = apply_where(runs, where, what="runs")
    if statuses:
        runs = runs[runs["status"].isin(list(statuses))]
    return runs.reset_index(drop=True)


def prune_candidates(results_dir: Path, statuses: Collection[str], where: dict[str, str]) -> pd.DataFrame:
    """The runs `prune` would remove: never a completed or trained one."""
    if not statuses or not set(statuses) <= PRUNABLE:
        raise fail(
            "prune needs --failed, --interrupted, --damaged, --pruned and/or --orphaned "
            "(completed and trained runs are removed with `rm`)"
        )
    return list_runs(results_dir, where, statuses)


@dataclass
class RunDetails:
    """One run, split the way `runs show` prints it."""

    run_id: str
    run_dir: Path
    status: str
    error: str
    monitor: str
    best_epoch: Any
    settings: dict[str, Any]
    provenance: dict[str, Any]
    costs: dict[str, Any]
    metrics: dict[str, Any]
    ks: list[int]
    curve: pd.DataFrame | None = None
    curve_note: str = ""  # why there is no curve


def details(run_dir: Path) -> RunDetails:
    """Read one run folder (an unreadable run.parquet is an error naming the file)."""
    row = store.read_run(run_dir)
    metrics = {c: v for c, v in row.items() if is_metric_column(c)}
    grouped = {*PROVENANCE_COLUMNS, *COST_COLUMNS, *OUTCOME_COLUMNS, *metrics}
    settings = {c: v for c, v in row.items() if c not in grouped and normalise(v) != "none"}
    monitor = str(row.get("monitor") or DEFAULT_MONITOR)
    result = RunDetails(
        run_id=Path(run_dir).name, run_dir=Path(run_dir), status=str(row.get("status")),
        error=_text(row.get("error")), monitor=monitor, best_epoch=row.get("best_epoch"), settings=settings,
        provenance=_present(row, PROVENANCE_COLUMNS), costs=_present(row, COST_COLUMNS),
        metrics=metrics, ks=sorted({int(c.partition("@")[2]) for c in metrics}),
    )  # fmt: skip
    _attach_curve(result)
    return result


def _attach_curve(result: RunDetails) -> None:
    """The curve's epoch, loss, diagnostics and the metrics at the monitor's cut-off."""
    if not (result.run_dir / store.CURVE_FILE).is_file():
        result.curve_note = "no curve recorded (a failed run stores none)"
        return
    try:
        curve = store.read_curve(result.run_dir)
    except MMLBenchError as exc:
        result.curve_note = str(exc)
        return
    k = result.monitor.partition("@")[2]
    at_k = [c for c in curve.columns if is_metric_column(c) and c.partition("@")[2] == k]
    result.curve = curve[[c for c in CURVE_COLUMNS if c in curve.columns] + at_k]


def _present(row: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    return {c: row[c] for c in columns if c in row and normalise(row[c]) != "none"}


def _text(value: Any) -> str:
    return "" if normalise(value) == "none" else str(value)
