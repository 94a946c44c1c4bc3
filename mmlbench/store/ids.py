"""How the store names a run: its label, its run id, what its claim says it trains, its resume folder.

One function each, for everything that names a run: the run row and folder, the progress lines,
a sweep's table, claims, and `mmlbench runs` reading resume folders back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmlbench.config import RunConfig
from mmlbench.store import runs_dir

# The settings a run's label shows, in order: dataset-model-loss-nNEGATIVES-sSEED.
LABEL_FIELDS = ("dataset", "model", "loss", "negatives", "seed")
RESUME_SUFFIX = ".resume"


def run_label(config: RunConfig) -> str:
    """The settings that tell the runs of a sweep apart, for a person: 'gowalla-mf-ccl-n100-s2019'."""
    return f"{config.dataset}-{config.model}-{config.loss}-n{config.negatives}-s{config.seed}"


def run_id(config: RunConfig, config_hash: str) -> str:
    """The run's folder name: its label and the first 10 hex digits of its config hash."""
    return f"{run_label(config)}-{config_hash[:10]}"


def claimed_run(config: RunConfig, config_hash: str) -> dict[str, Any]:
    """What a claim says it trains, for `mmlbench runs` to list before the run has a folder."""
    return {"run_id": run_id(config, config_hash), **{name: getattr(config, name) for name in LABEL_FIELDS}}


def resume_folder(results_dir: Path, run: str) -> Path:
    """The hidden folder of run `run`'s resume checkpoint in the store (never read as a run)."""
    return runs_dir(results_dir) / f".{run}{RESUME_SUFFIX}"


def resumed_run(folder: Path) -> str | None:
    """The run id a resume folder belongs to; None for any other name."""
    name = Path(folder).name
    if not (name.startswith(".") and name.endswith(RESUME_SUFFIX)):
        return None
    return name[1 : -len(RESUME_SUFFIX)]
