"""Every run of a store, one by one: the listing, the one resolver of run ids, removal.

A run folder whose run.parquet cannot be read is listed as "damaged" rather than stopping the
listing. A run claimed by a live process (claims) is "running", whether or not it has a folder
yet; a resume checkpoint (`.<run_id>.resume`) with neither a run folder nor a live claim is
"orphaned": a run killed before its row was stored (the same train command resumes it), or one
removed by an older mmlbench. `find_run` is how every command turns what a user typed (a run
folder, a run id, a unique prefix) into a run folder. Removal goes through `fsutil.remove_dir`:
a run disappears from every reader at once, then its resume checkpoint goes, so the same train
command starts it over.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mmlbench import store
from mmlbench.errors import INPUT_ERROR, MMLBenchError, closest
from mmlbench.fsutil import remove_dir
from mmlbench.store import claims
from mmlbench.store.ids import resumed_run

STATUS_DAMAGED = "damaged"  # run.parquet present but unreadable
STATUS_RUNNING = "running"  # claimed by a live process
STATUS_ORPHANED = "orphaned"  # a resume checkpoint without its run folder or a claim
STATUSES = (
    store.STATUS_COMPLETED, store.STATUS_TRAINED, store.STATUS_PRUNED, store.STATUS_FAILED, store.STATUS_INTERRUPTED,
    STATUS_DAMAGED, STATUS_RUNNING, STATUS_ORPHANED,
)  # fmt: skip
ORPHAN_NOTE = "a resume checkpoint without its run: the same train command resumes it"


def read_all(results_dir: Path) -> pd.DataFrame:
    """One row per run, sorted by run id: its folder's row ('damaged' when unreadable), 'running'
    while a live process holds its claim, and one 'orphaned' row per resume checkpoint left alone.

    The run id is the folder's name: the handle `show` and `rm` take. `resume_dir` is the run's
    resume checkpoint, if it has one; `claimed_by` says who trains a running run.
    """
    results_dir = _existing(results_dir)
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


def _existing(results_dir: Path) -> Path:
    results_dir = Path(results_dir)
    if not results_dir.exists():
        raise _fail(f"results folder {results_dir} does not exist (set --results-dir or $MMLBENCH_RESULTS_DIR)")
    if not results_dir.is_dir():
        raise _fail(f"results folder {results_dir} is not a folder (set --results-dir or $MMLBENCH_RESULTS_DIR)")
    return results_dir


def _resume_folders(results_dir: Path) -> dict[str, Path]:
    """Run id -> the path of its resume checkpoint (`.<run_id>.resume`, whatever lies there)."""
    runs = store.runs_dir(results_dir)
    if not runs.is_dir():
        return {}
    found = {resumed_run(path): path for path in sorted(runs.iterdir())}
    return {run_id: path for run_id, path in found.items() if run_id is not None}


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


def find_run(results_dir: Path, run: str) -> Path:
    """A run's folder: `run` is the folder itself, a run id in the store, or a prefix of exactly one id.

    An exact id is found without reading any run's row; anything else is looked up in the
    listing, so a running or orphaned id (no row yet) is told from an unknown one.
    """
    if (Path(run) / store.RUN_FILE).is_file():
        return Path(run)
    exact = store.runs_dir(results_dir) / run
    if Path(run).name == run and exact in set(store.iter_run_dirs(results_dir)):
        return exact
    runs = read_all(results_dir)
    folders = _folders(runs)
    if run in folders:
        return folders[run]
    if run in set(runs["run_id"]):  # running for the first time, or orphaned: no row to show
        status = runs.loc[runs["run_id"] == run, "status"].iloc[0]
        raise _fail(f"run {run} has no stored row to show ({status}); `mmlbench runs` lists it")
    matches = [name for name in folders if name.startswith(run)]
    if len(matches) == 1:
        return folders[matches[0]]
    if matches:
        raise _fail(f"'{run}' starts {len(matches)} run ids ({_first(matches)}); give more of the id")
    raise _unknown(run, folders, results_dir)


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


def _fail(message: str) -> MMLBenchError:
    return MMLBenchError(message, exit_code=INPUT_ERROR)


def _running(row: dict[str, Any]) -> MMLBenchError:
    return _fail(f"run {row['run_id']} is being trained ({row['claimed_by']}); not removed. "
                 f"Stop it first, or delete its claim {row['claim']} if that process is gone")  # fmt: skip


def _unknown(run_id: str, folders: Collection[str], results_dir: Path) -> MMLBenchError:
    """One line: the closest id, not every id (a store holds hundreds)."""
    hint = closest(run_id, folders)
    suggestion = f" Did you mean '{hint}'?" if hint else ""
    return _fail(f"unknown run '{run_id}' in {store.runs_dir(results_dir)}.{suggestion} "
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
