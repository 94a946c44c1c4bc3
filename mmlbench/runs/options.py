"""How runs are run and what one run comes to: torch-free, so the api and the CLI can hold them at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmlbench.errors import MMLBenchError
from mmlbench.paths import results_home


@dataclass(frozen=True)
class TrainOptions:
    """How to run, as opposed to what to run: none of this enters the config hash.

    `results_dir` is the run store as given (--results-dir), made the store itself when the
    options are made: else $MMLBENCH_RESULTS_DIR, else ./results (paths.results_home).
    """

    device: str = "auto"
    data_dir: Path | None = None
    results_dir: Path | None = None
    quiet: bool = False
    force: bool = False  # re-run even when a completed run with the same config exists (from scratch)
    resume: bool = True  # continue an interrupted or killed run from its last finished epoch
    checkpoint_every: float = 60.0  # seconds between resume checkpoint writes (0: every epoch); runs.resume
    eval_batch_users: int | None = None
    cuda_graphs: bool = True
    # Run-row columns that are no setting (in no hash), such as a tuner's study, trial and
    # selection: written into the run's row, and onto a completed run that is reused.
    marks: Mapping[str, str | int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.checkpoint_every >= 0:  # NaN too
            raise MMLBenchError(f"--checkpoint-every must be 0 or more seconds, not {self.checkpoint_every:g}")
        object.__setattr__(self, "results_dir", results_home(self.results_dir))


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    row: dict[str, Any]
    skipped: bool = False  # a completed run with this config was already in the store

    @property
    def status(self) -> str:
        return str(self.row.get("status"))
