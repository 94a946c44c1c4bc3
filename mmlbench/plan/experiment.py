"""Experiments: fixed settings, a grid and per-loss parameter sets, from TOML and the CLI.

An experiment file (presets are such files) looks like:

    [settings]            # every run
    dataset = "gowalla"
    batch_size = 256
    [grid]                # every combination is one run
    loss = ["ccl", "mmcl"]
    negatives = [10, 100, 800]
    [losses.mmcl]         # applied to the runs of that loss: its parameters, and run settings
    margins = [0.7, 0.8, 0.9]
    plateau_lr_factor = 1.0
    [[cells]]             # applied to the runs whose settings match `where`
    where = { loss = "mmcl", negatives = 100 }
    patience = 3
    [quick]               # `--quick`: a smaller variant (settings and grid override the above)
    settings = { epochs = 5 }
    grid = { negatives = [10, 100] }
    [report]              # read by `mmlbench compare --preset`
    [search]              # read by `mmlbench tune` (plan/tuning/space.py), as [tune] (plan/tuning/budget.py)

Precedence, lowest first: RunConfig defaults, [settings], [losses.<loss>], the matching [[cells]]
in file order, the grid's values, command-line values. A [losses.<loss>] table or a [[cells]]
entry may not set `loss` or a key the [grid] varies (the grid would win), and a [[cells]] entry
not one of its own `where` keys; a loss parameter in a [[cells]] entry needs the loss in its `where`.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mmlbench.config import PLUGINS, RunConfig
from mmlbench.config_checks import check_setting, option_name
from mmlbench.errors import MMLBenchError, closest, unknown_name
from mmlbench.plan.presets import preset_path
from mmlbench.plan.tuning.budget import parse_tune
from mmlbench.plan.tuning.space import SearchTables, parse_search
from mmlbench.plugins.losses import LOSS_PARAMS, LOSSES

CONFIG_FIELDS = {f.name for f in fields(RunConfig)}
_SECTIONS = {"settings", "grid", "losses", "cells", "quick", "report", "description", "search", "tune"}
QUICK_KEYS = ("settings", "grid", "tune")
# The keys of [report] that `compare --preset` reads (cli/compare.py _preset_spec).
REPORT_KEYS = ("rows", "cols", "metrics", "where", "baseline", "references")
_SETTING_NOTE = "settings are named as train's options, with _ for -: batch_size, and ks for --k"


@dataclass(frozen=True)
class CellSettings:
    """A [[cells]] entry: settings for the runs whose resolved config has every `where` value."""

    where: dict[str, Any]
    settings: dict[str, Any]

    def matches(self, config: RunConfig) -> bool:
        return all(getattr(config, key) == value for key, value in self.where.items())


@dataclass
class Experiment:
    """What to run: settings shared by all runs, a grid, and per-loss parameter sets."""

    settings: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    losses: dict[str, dict[str, Any]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # command-line values: above everything
    report: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    cells: list[CellSettings] = field(default_factory=list)
    search: SearchTables = field(default_factory=SearchTables)  # `tune`'s [search] tables
    tune: dict[str, Any] = field(default_factory=dict)  # `tune`'s [tune] defaults (trials, seeds, pruner)

    def with_command_line(self, settings: dict[str, Any], grid: dict[str, list[Any]]) -> Experiment:
        """A copy with command-line values on top: a single value fixes a key, a list grids it."""
        new_grid = {k: v for k, v in self.grid.items() if k not in settings} | grid
        new_settings = {k: v for k, v in self.settings.items() if k not in grid}
        return dataclasses.replace(self, settings=new_settings, grid=new_grid, overrides=settings)

    def with_seeds(self, count: int) -> Experiment:
        """`--seeds N`: N runs per cell, seeds base .. base + N - 1.

        The base seed is --seed, else the file's `seed`, else RunConfig's default.
        """
        if count < 1:
            raise MMLBenchError(f"--seeds must be >= 1, got {count}")
        if "seed" in self.grid:
            raise MMLBenchError("give either --seeds N or a list of seeds (--seed a,b or [grid] seed), not both")
        base = self.overrides.get("seed", self.settings.get("seed", RunConfig.seed))
        settings = {k: v for k, v in self.settings.items() if k != "seed"}
        overrides = {k: v for k, v in self.overrides.items() if k != "seed"}
        grid = self.grid | {"seed": [base + i for i in range(count)]}
        return dataclasses.replace(self, settings=settings, grid=grid, overrides=overrides)

    def configs(self) -> list[RunConfig]:
        """Every grid combination as a resolved RunConfig, all checked before anything runs."""
        keys = list(self.grid)
        configs: list[RunConfig] = []
        losses: list[str] = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            config = self._config(dict(zip(keys, values)))
            losses += [config.loss] if config.loss not in losses else []
            if config not in configs:  # e.g. a loss parameter gridded for a loss that ignores it
                configs.append(config)
        self._check_loss_params(losses)
        return configs

    def _config(self, cell: dict[str, Any]) -> RunConfig:
        """One grid cell's run: [settings], its loss's table, the [[cells]] its config matches
        (before any of them applies), the cell's own values, the command line."""
        loss = {**self.settings, **cell, **self.overrides}.get("loss", RunConfig.loss)
        below = {**self.settings, **self.losses.get(loss, {})}
        config = make_config({**below, **cell, **self.overrides})
        matched = {key: value for entry in self.cells if entry.matches(config) for key, value in entry.settings.items()}
        return make_config({**below, **matched, **cell, **self.overrides}) if matched else config

    def _check_loss_params(self, losses: list[str]) -> None:
        """A loss parameter given for every run must be taken by at least one loss of the grid.

        In a grid mixing losses it applies to the losses that take it; with one loss, or
        when no loss of the grid takes it, it would be ignored silently: an error instead.
        """
        for name in sorted(set(self.settings) | set(self.grid) | set(self.overrides)):
            if name in LOSS_PARAMS and not any(name in LOSSES[loss].param_names for loss in losses):
                raise MMLBenchError(_ignored_param_message(name, losses))


def make_config(values: dict[str, Any]) -> RunConfig:
    """A resolved RunConfig from plain values (lists become tuples), or a one-line error."""
    unknown = set(values) - CONFIG_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise unknown_name("setting", name, CONFIG_FIELDS)
    if "dataset" not in values:
        raise MMLBenchError("no dataset given: use --dataset NAME (or `dataset` in the experiment file)")
    typed = {k: check_setting(k, v, option_name(k)) for k, v in values.items()}
    try:
        return RunConfig(**typed).resolved()
    except TypeError as exc:
        raise MMLBenchError(f"bad experiment settings: {exc}") from None


def read_experiment(path: Path, *, quick: bool = False) -> Experiment:
    """Parse an experiment file; `quick` applies its [quick] variant."""
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MMLBenchError(f"experiment file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MMLBenchError(f"cannot read experiment file {path}: {exc}") from None
    return parse_experiment(document, source=str(path), quick=quick)


def parse_experiment(document: dict[str, Any], *, source: str, quick: bool = False) -> Experiment:
    """Every key of every table is checked, the [quick] variant's too when `quick` is off."""
    for section in document:
        if section not in _SECTIONS:
            raise unknown_name(f"section in {source}", section, _SECTIONS)
    settings = _settings(_table(document, "settings", source), "settings", source)
    grid = _grid(_table(document, "grid", source), "grid", source)
    variant = _table(document, "quick", source)
    _check_keys(variant, QUICK_KEYS, "quick", source, "it holds settings = {...}, grid = {...} and tune = {...}, as [settings], [grid] and [tune]")
    quick_settings = _settings(_table(variant, "settings", source, "quick.settings"), "quick.settings", source)
    quick_grid = _grid(_table(variant, "grid", source, "quick.grid"), "quick.grid", source)
    tune = parse_tune(_table(document, "tune", source), f"[tune] of {source}")
    quick_tune = parse_tune(_table(variant, "tune", source, "quick.tune"), f"[quick] tune of {source}")
    if quick:
        if "quick" not in document:
            raise MMLBenchError(f"{source} has no [quick] variant")
        settings |= quick_settings
        grid |= quick_grid
        tune |= quick_tune
    tables = _table(document, "losses", source)
    losses = {name: _loss_table(name, _table(tables, name, source, f"losses.{name}"), source) for name in tables}
    cells = _cells(document.get("cells", []), source)
    _check_not_gridded(losses, cells, grid, source)
    report = _table(document, "report", source)
    _check_keys(report, REPORT_KEYS, "report", source, "read by `mmlbench compare --preset`")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise MMLBenchError(f"description in {source} must be a string")
    search = parse_search(_table(document, "search", source), source)
    return Experiment(settings, grid, losses, {}, dict(report), description, cells, search, tune)


def _table(document: dict[str, Any], key: str, source: str, label: str = "") -> dict[str, Any]:
    """document[key] as a table ({} when absent), or a one-line error naming [label]."""
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise MMLBenchError(f"[{label or key}] in {source} must be a table, got {value!r}")
    return value


def _check_keys(table: dict[str, Any], valid: Collection[str], label: str, source: str, note: str = "") -> None:
    for key in table:
        if key not in valid:
            hint = closest(key, valid)
            suggestion = f" Did you mean '{hint}'?" if hint else ""
            valid_text = note or f"valid: {', '.join(sorted(valid))}"
            raise MMLBenchError(f"unknown key '{key}' in [{label}] of {source}.{suggestion} ({valid_text})")


def _settings(table: dict[str, Any], label: str, source: str) -> dict[str, Any]:
    _check_keys(table, CONFIG_FIELDS, label, source, _SETTING_NOTE)
    return {k: check_setting(k, v, f"{k} in [{label}] of {source}") for k, v in table.items()}


def _grid(table: dict[str, Any], label: str, source: str) -> dict[str, list[Any]]:
    _check_keys(table, CONFIG_FIELDS, label, source, _SETTING_NOTE)
    return {
        k: [check_setting(k, v, f"[{label}] {k} in {source}") for v in _as_list(k, values, label, source)]
        for k, values in table.items()
    }


def _as_list(key: str, value: Any, label: str, source: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise MMLBenchError(f"[{label}] {key} in {source} must be a non-empty list")
    return value


def _loss_table(loss: str, params: dict[str, Any], source: str) -> dict[str, Any]:
    """A [losses.<loss>] table checked: a known loss, known settings, and no parameter of another loss."""
    if loss not in LOSSES:
        raise unknown_name(f"loss in the [losses] tables of {source}", loss, LOSSES)
    _check_keys(params, CONFIG_FIELDS, f"losses.{loss}", source, _SETTING_NOTE)
    taken = LOSSES[loss].param_names
    for key in params:
        if key in LOSS_PARAMS and key not in taken:
            raise MMLBenchError(
                f"{key} in [losses.{loss}] of {source}: loss '{loss}' does not take it ({_takes(loss)})"
            )
    return {k: check_setting(k, v, f"{k} in [losses.{loss}] of {source}") for k, v in params.items()}


def _cells(entries: Any, source: str) -> list[CellSettings]:
    """The [[cells]] entries checked: a non-empty `where` of known, typed settings, and typed settings."""
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise MMLBenchError(f"cells in {source} must be an array of tables: write each entry as [[cells]]")
    cells = []
    for number, entry in enumerate(entries, 1):
        label = f"[[cells]] entry {number} of {source}"
        where, settings = entry.get("where"), {k: v for k, v in entry.items() if k != "where"}
        if not isinstance(where, dict) or not where or not settings:
            raise MMLBenchError(f"{label} needs a non-empty where = {{ ... }} and at least one setting")
        for key in [*where, *settings]:
            if key not in CONFIG_FIELDS:
                raise unknown_name(f"setting in {label}", key, CONFIG_FIELDS)
        where = {k: check_setting(k, v, f"where {k} in {label}") for k, v in where.items()}
        _check_names(where)
        taken = LOSSES[where["loss"]].param_names if "loss" in where else ()
        for key in settings:
            if key in where:
                raise MMLBenchError(f"{key} in {label} is also in its where: a cell cannot change what selects it")
            if key in LOSS_PARAMS and key not in taken:
                raise MMLBenchError(f"{key} in {label}: a loss parameter needs the loss that takes it in where (loss = ...)")
        cells.append(CellSettings(where, {k: check_setting(k, v, f"{k} in {label}") for k, v in settings.items()}))
    return cells


def _check_names(where: dict[str, Any]) -> None:
    """A `where` naming a plug-in or a choice that does not exist would match no run, silently: an error."""
    for registry in PLUGINS:
        if registry.kind in where:
            registry.spec(where[registry.kind])
    for f in fields(RunConfig):
        choices = f.metadata["choices"]
        if choices and f.name in where and where[f.name] not in choices:
            raise unknown_name(option_name(f.name).removeprefix("--"), where[f.name], choices)


def _check_not_gridded(
    losses: dict[str, dict[str, Any]], cells: list[CellSettings], grid: dict[str, list[Any]], source: str
) -> None:
    """A per-loss or per-cell setting that the grid would override, or `loss` itself: an error."""
    tables = [(f"[losses.{name}]", params) for name, params in losses.items()]
    tables += [(f"[[cells]] entry {number}", cell.settings) for number, cell in enumerate(cells, 1)]
    for label, keys in tables:
        for key in keys:
            if key == "loss":
                raise MMLBenchError(f"loss in {label} of {source}: a table of settings cannot change the run's loss")
            if key in grid:
                raise MMLBenchError(f"{key} in {label} of {source} is also a [grid] key, whose values would win: keep one")


def _ignored_param_message(name: str, losses: list[str]) -> str:
    if len(losses) == 1:
        return f"{option_name(name)} does not apply to loss '{losses[0]}' ({_takes(losses[0])})"
    return f"{option_name(name)} applies to none of the losses run ({', '.join(losses)})"


def _takes(loss: str) -> str:
    names = LOSSES[loss].param_names
    return f"it takes {', '.join(map(option_name, names))}" if names else "it takes no parameters"



@dataclass(frozen=True)
class Runs:
    """Which runs a command asks for: an experiment file (`config`) or a preset, or neither (its
    [quick] variant with `quick`), the command line's settings on top (one value fixes a setting,
    a list in `grid` makes one run per value), and `seeds` runs per cell."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    config: Path | None = None
    preset: str | None = None
    quick: bool = False
    seeds: int | None = None

    def configs(self) -> list[RunConfig]:
        """Every run, each config resolved (once) and checked before anything runs."""
        return self.experiment().configs()

    def experiment(self) -> Experiment:
        """The experiment file or preset (or none) with the command line on top, and the seeds."""
        if self.config and self.preset:
            raise MMLBenchError("give --config or --preset, not both")
        source = self.config or (preset_path(self.preset) if self.preset else None)
        if source is None and self.quick:
            raise MMLBenchError("--quick needs --config or --preset")
        experiment = read_experiment(source, quick=self.quick) if source is not None else Experiment()
        experiment = experiment.with_command_line(dict(self.settings), {name: list(values) for name, values in self.grid.items()})
        return experiment if self.seeds is None else experiment.with_seeds(self.seeds)
