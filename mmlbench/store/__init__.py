"""The run store: one folder per run, written atomically, read back as DataFrames.

Layout: <results>/runs/<run_id>/{run.parquet, curve.parquet, per_user.parquet, model.pt}.
`run.parquet` is one wide row: config fields, provenance, status, costs, the sha256 of
`model.pt` and one column per test metric (`recall@20`, ...). Folders whose names start
with '.' are unfinished writes and are never read. A run folder whose `run.parquet` cannot be read (a damaged disk,
a copy cut short) is warned about once and skipped by every reader of the whole store, so
it never blocks the other runs; `read_run` on that one folder still raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.markup import escape

from mmlbench.config import HASH_NEUTRAL, read_stored_names
from mmlbench.console import warn
from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import atomic_dir, atomic_file, sha256_file, write_hashed

SCHEMA_VERSION = 1
RUN_FILE = "run.parquet"
CURVE_FILE = "curve.parquet"
PER_USER_FILE = "per_user.parquet"
CHECKPOINT_FILE = "model.pt"
CHECKPOINT_SHA256 = "checkpoint_sha256"  # run-row column: model.pt's sha256 (absent in rows stored before it)

STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"
# A tuner's trial run: trained and selected on the validation split, never evaluated on test (no
# test metric, no per-user file); training its config with the test evaluation evaluates it once.
STATUS_TRAINED = "trained"
STATUS_PRUNED = "pruned"  # a trial run stopped early by the tuner's pruner: its curve so far, no checkpoint

# Damaged run folders already warned about: a sweep looks up the store once per run.
_reported_damaged: set[Path] = set()


class StoreUnwritable(MMLBenchError):
    """The results folder cannot take a run (a file in its path, read-only, disk full).

    Not a property of one run: a sweep stops at the first one instead of training runs it cannot keep.
    """


def runs_dir(results_dir: Path) -> Path:
    return Path(results_dir) / "runs"


@dataclass
class RunRecord:
    """Everything a finished (or failed) run leaves behind."""

    row: dict[str, Any]
    curve: pd.DataFrame | None = None
    per_user: pd.DataFrame | None = None
    checkpoint: dict[str, Any] | None = None
    extra_files: dict[str, bytes] = field(default_factory=dict)


def write_run(results_dir: Path, record: RunRecord) -> Path:
    """Write a run folder atomically, replacing an earlier folder of the same run id."""
    import torch

    run_id = record.row["run_id"]
    final = runs_dir(results_dir) / run_id
    with atomic_dir(final) as tmp:
        row = {"schema_version": SCHEMA_VERSION, **record.row}
        if record.checkpoint is not None:
            # Hashed as written, checked before use (runs.rescore): torch.load verifies nothing.
            row[CHECKPOINT_SHA256] = write_hashed(tmp / CHECKPOINT_FILE, lambda handle: torch.save(record.checkpoint, handle))
        pd.DataFrame([row]).to_parquet(tmp / RUN_FILE, index=False)
        if record.curve is not None:
            record.curve.to_parquet(tmp / CURVE_FILE, index=False)
        if record.per_user is not None:
            record.per_user.to_parquet(tmp / PER_USER_FILE, index=False)
        for name, payload in record.extra_files.items():
            (tmp / name).write_bytes(payload)
    return final


def verified_checkpoint(run_dir: Path, row: dict[str, Any]) -> Path:
    """The run's model.pt, once its bytes are those written (the sha256 in its row); a run
    stored before checksums were recorded has none, and its file is taken as it is."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        raise MMLBenchError(f"run {Path(run_dir).name} has no checkpoint ({path} is missing)")
    if not path.is_file():
        raise MMLBenchError(f"the checkpoint {path} is not a file")
    recorded = row.get(CHECKPOINT_SHA256)
    if isinstance(recorded, str) and recorded and sha256_file(path) != recorded:
        raise MMLBenchError(
            f"the checkpoint {path} is corrupt: its sha256 is not the one recorded when it was written; nothing was scored"
        )
    return path


def run_files(run_dir: Path) -> dict[str, bytes]:
    """The files of a run folder by name, to send it elsewhere (a cluster worker to the driver)."""
    return {path.name: path.read_bytes() for path in sorted(Path(run_dir).iterdir()) if path.is_file()}


def write_run_files(results_dir: Path, run_id: str, files: dict[str, bytes]) -> Path:
    """Write a run folder received as files (see `run_files`) atomically, as `write_run` does."""
    final = runs_dir(results_dir) / run_id
    if final.parent != runs_dir(results_dir) or any(Path(name).name != name or name.startswith(".") for name in files):
        raise MMLBenchError(f"refusing run folder '{run_id}' with files {sorted(files)}: not plain names")
    try:
        with atomic_dir(final) as tmp:
            for name, payload in files.items():
                (tmp / name).write_bytes(payload)
    except OSError as exc:
        raise StoreUnwritable(f"cannot write {run_id} to {runs_dir(results_dir)}: {exc.strerror or exc}") from exc
    return final


def iter_run_dirs(results_dir: Path) -> Iterator[Path]:
    """Complete run folders, in name order; unfinished (hidden) folders are skipped."""
    root = runs_dir(results_dir)
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        if path.is_dir() and not path.name.startswith(".") and (path / RUN_FILE).is_file():
            yield path


def read_run(run_dir: Path) -> dict[str, Any]:
    """The one row of a run folder as a dict."""
    try:
        frame = pd.read_parquet(Path(run_dir) / RUN_FILE)
    except FileNotFoundError:
        raise MMLBenchError(f"no run at {run_dir} (missing {RUN_FILE})") from None
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise MMLBenchError(f"cannot read {Path(run_dir) / RUN_FILE}: {exc}") from None
    if len(frame) != 1:
        raise MMLBenchError(f"{Path(run_dir) / RUN_FILE} should hold one row, found {len(frame)}")
    # A row stored before a HASH_NEUTRAL setting existed had that setting's neutral value.
    return read_stored_names({**HASH_NEUTRAL, **frame.iloc[0].to_dict()})


def readable_runs(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(folder, row) of every run whose row can be read; a damaged one is warned about once and skipped."""
    for run_dir in iter_run_dirs(results_dir):
        try:
            row = read_run(run_dir)
        except MMLBenchError:  # the reader's own message repeats the path and adds pyarrow's detail
            if run_dir not in _reported_damaged:
                _reported_damaged.add(run_dir)
                unreadable = f"its {RUN_FILE} cannot be read"
                warn(escape(f"skipping damaged run {run_dir} ({unreadable}); training it again replaces it"))
            continue
        yield run_dir, row


def read_runs(results_dir: Path) -> pd.DataFrame:
    """All readable runs in the store as one DataFrame (one row per run), with a `run_dir` column."""
    rows = []
    for run_dir, row in readable_runs(results_dir):
        row["run_dir"] = str(run_dir)
        rows.append(row)
    return pd.DataFrame(rows)


def completed_runs(results_dir: Path) -> dict[str, Path]:
    """Config hash -> folder of every completed (and readable) run in the store."""
    completed = {}
    for run_dir, row in readable_runs(results_dir):
        if row.get("status") == STATUS_COMPLETED:
            completed[row.get("config_hash")] = run_dir
    return completed


def find_completed(results_dir: Path, config_hash: str) -> Path | None:
    """The folder of a completed run with this config hash, if the store has one."""
    return completed_runs(results_dir).get(config_hash)


def find_stored(results_dir: Path, run_id: str, config_hash: str, status: str) -> Path | None:
    """The folder `run_id` when it holds a readable run of this config hash and status (one folder read, not the store)."""
    run_dir = runs_dir(results_dir) / run_id
    if not (run_dir / RUN_FILE).is_file():
        return None
    try:
        row = read_run(run_dir)
    except MMLBenchError:  # damaged: training it again replaces it
        return None
    return run_dir if row.get("config_hash") == config_hash and row.get("status") == status else None


def read_curve(run_dir: Path) -> pd.DataFrame:
    return _read_optional(Path(run_dir) / CURVE_FILE)


def read_per_user(run_dir: Path) -> pd.DataFrame:
    return _read_optional(Path(run_dir) / PER_USER_FILE)


def _read_optional(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise MMLBenchError(f"{path} is missing")
    try:
        return pd.read_parquet(path)
    except Exception as exc:
        raise MMLBenchError(f"cannot read {path}: {exc}") from None


def set_columns(run_dir: Path, values: dict[str, Any]) -> None:
    """Set columns of a stored run's row (marks that are in no hash, such as a tuner's `selection`), replaced atomically."""
    frame = pd.read_parquet(Path(run_dir) / RUN_FILE)
    with atomic_file(Path(run_dir) / RUN_FILE) as tmp:
        frame.assign(**values).to_parquet(tmp, index=False)


def add_columns(run_dir: Path, values: dict[str, Any], per_user: pd.DataFrame | None) -> None:
    """Add columns to a stored run (metrics computed later, by `evaluate`): `per_user`'s columns
    (keyed by its `user` column) to per_user.parquet, then `values` to run.parquet, each file
    replaced atomically. Existing columns are never changed."""
    run_dir = Path(run_dir)
    if per_user is not None:
        stored = read_per_user(run_dir)
        added = per_user[["user", *(c for c in per_user.columns if c not in stored.columns)]]
        with atomic_file(run_dir / PER_USER_FILE) as tmp:
            stored.merge(added, on="user", how="left", validate="one_to_one").to_parquet(tmp, index=False)
    frame = pd.read_parquet(run_dir / RUN_FILE)
    with atomic_file(run_dir / RUN_FILE) as tmp:
        frame.assign(**{k: v for k, v in values.items() if k not in frame.columns}).to_parquet(tmp, index=False)

