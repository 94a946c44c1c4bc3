"""The runs of a store, one by one: list them, show one, remove some (`mmlbench runs`).

Reads through `store` and filters with `selection`'s `--where`. A run folder whose
run.parquet cannot be read is listed as "damaged" rather than stopping the listing.
Removal goes through `fsutil.remove_dir`: a run disappears from every reader at once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mmlbench import store
from mmlbench.errors import MMLBenchError, closest
from mmlbench.fsutil import remove_dir
from mmlbench.metrics import is_metric_column
from mmlbench.report.selection import apply_where, fail, normalise

STATUS_DAMAGED = "damaged"  # run.parquet present but unreadable
STATUSES = (store.STATUS_COMPLETED, store.STATUS_FAILED, store.STATUS_INTERRUPTED, STATUS_DAMAGED)
PRUNABLE = frozenset(STATUSES) - {store.STATUS_COMPLETED}
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


def read_all(results_dir: Path) -> pd.DataFrame:
    """One row per run folder, sorted by run id; unreadable runs get status 'damaged'.

    The run id is the folder's name: the handle `show` and `rm` take.
    """
    results_dir = Path(results_dir)
    if not results_dir.exists():
        raise fail(f"results folder {results_dir} does not exist (set --results-dir or $MMLBENCH_RESULTS_DIR)")
    if not results_dir.is_dir():
        raise fail(f"results folder {results_dir} is not a folder (set --results-dir or $MMLBENCH_RESULTS_DIR)")
    rows = []
    for run_dir in store.iter_run_dirs(results_dir):
        try:
            row = store.read_run(run_dir)
        except MMLBenchError as exc:
            row = {"status": STATUS_DAMAGED, "error": str(exc)}
        rows.append({**row, "run_id": run_dir.name, "run_dir": str(run_dir)})
    frame = pd.DataFrame(rows, columns=None if rows else ["run_id", "status", "run_dir"])
    return frame.sort_values("run_id", ignore_index=True)


def monitor_of(runs: pd.DataFrame) -> str:
    """The metric the listing shows: the runs' most common `monitor`, else recall@20."""
    if "monitor" in runs.columns and runs["monitor"].notna().any():
        return str(runs["monitor"].dropna().mode().iloc[0])
    return DEFAULT_MONITOR


def list_runs(results_dir: Path, where: dict[str, str], statuses: Collection[str] = ()) -> pd.DataFrame:
    """The listing: run id, status, main settings, best/run epochs, the monitor metric, finish time."""
    runs = select(read_all(results_dir), where, statuses)
    monitor = monitor_of(runs)
    columns = [*LIST_COLUMNS, monitor, "finished_at", "error", "run_dir"]
    # A damaged run's missing values would turn integer columns into floats (5.0 negatives).
    return runs.reindex(columns=columns).convert_dtypes()


def select(runs: pd.DataFrame, where: dict[str, str], statuses: Collection[str]) -> pd.DataFrame:
    """Runs matching every `--where` clause and one of `statuses` (all when empty)."""
    if where and not runs.empty:
        runs = apply_where(runs, where, what="runs")
    if statuses:
        runs = runs[runs["status"].isin(list(statuses))]
    return runs.reset_index(drop=True)


def find_run(results_dir: Path, run_id: str) -> Path:
    """A run's folder by id, or by a prefix of exactly one id."""
    folders = _folders(results_dir)
    if run_id in folders:
        return folders[run_id]
    matches = [name for name in folders if name.startswith(run_id)]
    if len(matches) == 1:
        return folders[matches[0]]
    if matches:
        raise fail(f"'{run_id}' starts {len(matches)} run ids ({_first(matches)}); give more of the id")
    raise _unknown(run_id, folders, results_dir)


def find_exact(results_dir: Path, run_ids: Iterable[str]) -> list[Path]:
    """The folders of these exact run ids; the first unknown id is an error, before anything else."""
    folders = _folders(results_dir)
    for run_id in run_ids:
        if run_id not in folders:
            raise _unknown(run_id, folders, results_dir)
    return [folders[run_id] for run_id in dict.fromkeys(run_ids)]


def _folders(results_dir: Path) -> dict[str, Path]:
    return {Path(d).name: Path(d) for d in read_all(results_dir)["run_dir"]}


def _unknown(run_id: str, folders: dict[str, Path], results_dir: Path) -> MMLBenchError:
    """One line: the closest id, not every id (a store holds hundreds)."""
    hint = closest(run_id, folders)
    suggestion = f" Did you mean '{hint}'?" if hint else ""
    return fail(f"unknown run '{run_id}' in {store.runs_dir(results_dir)}.{suggestion} "
                f"`mmlbench runs` lists its {len(folders)} run(s).")  # fmt: skip


def _first(names: Sequence[str], shown: int = 3) -> str:
    more = f", ... {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def remove(run_dirs: Iterable[Path]) -> list[str]:
    """Remove these run folders (each vanishes at once for readers); their ids, in order."""
    removed = []
    for run_dir in run_dirs:
        remove_dir(run_dir)
        removed.append(Path(run_dir).name)
    return removed


def prune_candidates(results_dir: Path, statuses: Collection[str], where: dict[str, str]) -> pd.DataFrame:
    """The runs `prune` would remove: never a completed one."""
    if not statuses or not set(statuses) <= PRUNABLE:
        raise fail("prune needs --failed, --interrupted and/or --damaged (completed runs are removed with `rm`)")
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
