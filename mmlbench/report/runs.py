"""The runs of a store, one by one: list them, show one, remove some (`mmlbench runs`).

Reads through `store` and filters with `selection`'s `--where`. A run folder whose
run.parquet cannot be read is listed as "damaged" rather than stopping the listing. A run
claimed by a live process (claims) is "running", whether or not it has a folder yet; a resume
checkpoint (`.<run_id>.resume`) with neither a run folder nor a live claim is "orphaned": a run
killed before its row was stored (the same train command resumes it), or one removed by an
older mmlbench. Removal goes through `fsutil.remove_dir`: a run disappears from every reader
at once, then its resume checkpoint goes, so the same train command starts it over.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mmlbench import store
from mmlbench.errors import MMLBenchError, closest
from mmlbench.fsutil import remove_dir
from mmlbench.metrics import is_metric_column
from mmlbench.report.selection import apply_where, fail, normalise
from mmlbench.store import claims

STATUS_DAMAGED = "damaged"  # run.parquet present but unreadable
STATUS_RUNNING = "running"  # claimed by a live process
STATUS_ORPHANED = "orphaned"  # a resume checkpoint without its run folder or a claim
STATUSES = (
    store.STATUS_COMPLETED, store.STATUS_FAILED, store.STATUS_INTERRUPTED, STATUS_DAMAGED, STATUS_RUNNING, STATUS_ORPHANED,
)  # fmt: skip
PRUNABLE = frozenset(STATUSES) - {store.STATUS_COMPLETED, STATUS_RUNNING}
DEFAULT_MONITOR = "recall@20"
RESUME_SUFFIX = ".resume"  # engine.resume.folder: runs/.<run_id>.resume (the engine imports torch)
ORPHAN_NOTE = "a resume checkpoint without its run: the same train command resumes it"

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
    """One row per run, sorted by run id: its folder's row ('damaged' when unreadable), 'running'
    while a live process holds its claim, and one 'orphaned' row per resume checkpoint left alone.

    The run id is the folder's name: the handle `show` and `rm` take. `resume_dir` is the run's
    resume checkpoint, if it has one; `claimed_by` says who trains a running run.
    """
    results_dir = Path(results_dir)
    if not results_dir.exists():
        raise fail(f"results folder {results_dir} does not exist (set --results-dir or $MMLBENCH_RESULTS_DIR)")
    if not results_dir.is_dir():
        raise fail(f"results folder {results_dir} is not a folder (set --results-dir or $MMLBENCH_RESULTS_DIR)")
    rows = {}
    for run_dir in store.iter_run_dirs(results_dir):
        try:
            row = store.read_run(run_dir)
        except MMLBenchError as exc:
            row = {"status": STATUS_DAMAGED, "error": str(exc)}
        rows[run_dir.name] = {**row, "run_id": run_dir.name, "run_dir": str(run_dir)}
    resumes = _resume_folders(results_dir)
    for claim in claims.live_claims(results_dir):
        _mark_running(rows, claim, resumes)
    for run_id, folder in resumes.items():
        if run_id in rows:
            rows[run_id]["resume_dir"] = str(folder)
        else:
            rows[run_id] = {"run_id": run_id, "status": STATUS_ORPHANED, "error": ORPHAN_NOTE, "resume_dir": str(folder)}
    columns = ["run_id", "status", "run_dir", "resume_dir", "claimed_by"]
    frame = pd.DataFrame(list(rows.values()))
    for column in columns:
        if column not in frame.columns:
            frame[column] = None
    return frame.sort_values("run_id", ignore_index=True)


def _resume_folders(results_dir: Path) -> dict[str, Path]:
    """Run id -> the path of its resume checkpoint (`.<run_id>.resume`, whatever lies there)."""
    runs = store.runs_dir(results_dir)
    if not runs.is_dir():
        return {}
    found = (p for p in runs.iterdir() if p.name.startswith(".") and p.name.endswith(RESUME_SUFFIX))
    return {p.name[1 : -len(RESUME_SUFFIX)]: p for p in sorted(found)}


def _mark_running(rows: dict[str, dict[str, Any]], claim: claims.Claim, resumes: dict[str, Path]) -> None:
    """The run a live claim trains becomes 'running': its stored row if it has one (matched by
    config hash), else a row of what the claim says it trains."""
    config_hash = claim.path.name.removesuffix(claims.SUFFIX)
    stored = [run_id for run_id, row in rows.items() if row.get("config_hash") == config_hash]
    named = str(claim.run.get("run_id") or "")
    by_prefix = [run_id for run_id in resumes if run_id.endswith(f"-{config_hash[:10]}")]
    run_id = [*stored, *([named] if named else []), *by_prefix, f"(config {config_hash[:10]})"][0]
    row = rows.get(run_id) or {**claim.run, "run_id": run_id, "config_hash": config_hash}
    rows[run_id] = {**row, "status": STATUS_RUNNING, "claimed_by": claim.describe(), "claim": str(claim.path)}


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


def find_run(results_dir: Path, run_id: str) -> Path:
    """A run's folder by id, or by a prefix of exactly one id."""
    runs = read_all(results_dir)
    folders = _folders(runs)
    if run_id in folders:
        return folders[run_id]
    if run_id in set(runs["run_id"]):  # running for the first time, or orphaned: no row to show
        status = runs.loc[runs["run_id"] == run_id, "status"].iloc[0]
        raise fail(f"run {run_id} has no stored row to show ({status}); `mmlbench runs` lists it")
    matches = [name for name in folders if name.startswith(run_id)]
    if len(matches) == 1:
        return folders[matches[0]]
    if matches:
        raise fail(f"'{run_id}' starts {len(matches)} run ids ({_first(matches)}); give more of the id")
    raise _unknown(run_id, folders, results_dir)


def find_exact(results_dir: Path, run_ids: Sequence[str]) -> pd.DataFrame:
    """The listing rows of these exact run ids, to remove; an unknown or running id is an error, before anything else."""
    runs = read_all(results_dir)
    known = dict(zip(runs["run_id"], runs.to_dict("records")))
    for run_id in run_ids:
        if run_id not in known:
            raise _unknown(run_id, known, results_dir)
        if known[run_id]["status"] == STATUS_RUNNING:
            raise _running(known[run_id])
    return pd.DataFrame([known[run_id] for run_id in dict.fromkeys(run_ids)])


def _folders(runs: pd.DataFrame) -> dict[str, Path]:
    stored = runs[runs["run_dir"].notna()]
    return {str(run_id): Path(d) for run_id, d in zip(stored["run_id"], stored["run_dir"])}


def _running(row: dict[str, Any]) -> MMLBenchError:
    return fail(f"run {row['run_id']} is being trained ({row['claimed_by']}); not removed. "
                f"Stop it first, or delete its claim {row['claim']} if that process is gone")  # fmt: skip


def _unknown(run_id: str, folders: Collection[str], results_dir: Path) -> MMLBenchError:
    """One line: the closest id, not every id (a store holds hundreds)."""
    hint = closest(run_id, folders)
    suggestion = f" Did you mean '{hint}'?" if hint else ""
    return fail(f"unknown run '{run_id}' in {store.runs_dir(results_dir)}.{suggestion} "
                f"`mmlbench runs` lists its {len(folders)} run(s).")  # fmt: skip


def _first(names: Sequence[str], shown: int = 3) -> str:
    more = f", ... {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def remove(runs: pd.DataFrame) -> list[str]:
    """Remove these runs (listing rows): each run folder vanishes at once for readers, then its
    resume checkpoint goes too. Their ids, in order."""
    removed = []
    for row in runs.to_dict("records"):
        for path in (row.get("run_dir"), row.get("resume_dir")):
            if isinstance(path, str) and path:
                _remove(Path(path))
        removed.append(str(row["run_id"]))
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        remove_dir(path)
    else:  # a file where a resume folder belongs
        path.unlink(missing_ok=True)


def prune_candidates(results_dir: Path, statuses: Collection[str], where: dict[str, str]) -> pd.DataFrame:
    """The runs `prune` would remove: never a completed one."""
    if not statuses or not set(statuses) <= PRUNABLE:
        raise fail(
            "prune needs --failed, --interrupted, --damaged and/or --orphaned (completed runs are removed with `rm`)"
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
