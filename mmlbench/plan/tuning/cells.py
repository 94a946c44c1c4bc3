"""The cells of a tune: the grid of `train` (options, --config, --preset), each with its search space and study.

Every check is made here, before any study is opened or run trained: the grid's own (as `train`),
a validation split for every dataset (a tune selects on it and touches test once), every cell's
search space (plan/tuning/space.py), and the budget (plan/tuning/budget.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmlbench.config import RunConfig
from mmlbench.data.dataset import require_processed
from mmlbench.data.processed import read_meta
from mmlbench.errors import MMLBenchError
from mmlbench.plan.experiment import Runs
from mmlbench.plan.tuning.budget import TuneSettings
from mmlbench.plan.tuning.space import cell_space, unused
from mmlbench.plan.tuning.study import Cell, study_name


def tune_settings(runs: Runs, given: Mapping[str, Any]) -> TuneSettings:
    """The budget: the experiment file's [tune] (its [quick] variant's too), then the command line's `given`."""
    return TuneSettings().over(runs.experiment().tune).over(given)


def grid_configs(runs: Runs) -> list[RunConfig]:
    """The grid's configs, one per cell: `--seeds` is the tune's own (its final seeds), not a grid axis."""
    if runs.seeds is not None:
        raise MMLBenchError("tune's --seeds is the number of final seeds of each cell's best setting, not a grid axis")
    configs = runs.configs()
    seeds = sorted({config.seed for config in configs})
    if len(seeds) > 1:
        raise MMLBenchError(f"tune searches one seed per cell and tests --seeds of the best: give one --seed, not {seeds}")
    return configs


def plan_cells(runs: Runs, configs: list[RunConfig], settings: TuneSettings, data_dir: Any) -> list[Cell]:
    """One cell per config, its data checked to have a validation split, its space checked against it."""
    experiment = runs.experiment()
    fingerprints = {name: _validated_fingerprint(name, data_dir) for name in sorted({c.dataset for c in configs})}
    fixed = set(runs.settings)
    gridded = set(experiment.grid) - fixed
    cells = []
    for config in configs:
        space = cell_space(config, experiment.search, fixed=fixed, gridded=gridded)
        if not space:
            raise MMLBenchError(f"nothing to search for {config.loss}: every parameter of its space is fixed or dropped")
        name = study_name(config, fingerprints[config.dataset], space, settings.pruner)
        cells.append(Cell(config, space, name, settings, fingerprints[config.dataset]))
    left = unused(experiment.search, configs)
    if left:
        losses = ", ".join(dict.fromkeys(config.loss for config in configs))
        raise MMLBenchError(f"[search] {', '.join(left)}: no cell takes it (losses {losses}; models {_models(configs)})")
    return cells


def _models(configs: list[RunConfig]) -> str:
    return ", ".join(dict.fromkeys(config.model for config in configs))


def _validated_fingerprint(dataset: str, data_dir: Any) -> str:
    """The processed data's fingerprint, once it is known to have a validation split."""
    meta = read_meta(require_processed(dataset, data_dir))
    valid = (meta.get("interactions") or {}).get("valid", 0)
    if not valid:
        raise MMLBenchError(
            f"dataset '{dataset}' has no validation split: tune selects every setting on validation and touches test "
            f"once; make one with `mmlbench preprocess {dataset} --valid-fraction 0.1 --force` (or tune a registered slice "
            "such as gowalla-u10, which has one)"
        )
    return str(meta.get("fingerprint", ""))
