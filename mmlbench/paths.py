"""Where datasets and results live: option, then environment variable, then default."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "MMLBENCH_DATA_DIR"
RESULTS_DIR_ENV = "MMLBENCH_RESULTS_DIR"


def data_home(override: Path | None = None) -> Path:
    """The data home: `--data-dir`, else $MMLBENCH_DATA_DIR, else ./datasets."""
    return Path(override or os.environ.get(DATA_DIR_ENV) or "datasets")


def results_home(override: Path | None = None) -> Path:
    """The run store: `--results-dir`, else $MMLBENCH_RESULTS_DIR, else ./results."""
    return Path(override or os.environ.get(RESULTS_DIR_ENV) or "results")


def raw_dir(name: str, data_dir: Path | None = None) -> Path:
    return data_home(data_dir) / name / "raw"


def processed_dir(name: str, data_dir: Path | None = None) -> Path:
    return data_home(data_dir) / name / "processed"
