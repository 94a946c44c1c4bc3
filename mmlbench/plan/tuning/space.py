"""Search spaces: the plug-ins' defaults, an experiment file's [search] tables, the command line.

    [search]                                  # every cell
    lr = { low = 1e-4, high = 1e-2, log = true }
    dropout = false                           # not searched: the run's own setting
    [search.ccl]                              # the cells of one loss, above [search]
    margin = [0.5, 0.7, 0.9]                  # choices

A dimension is a table {low, high, log} (an integer setting samples whole numbers) or a non-empty
list of choices (a list setting, MMCL's margins, takes a list of lists); `false` drops a default.
A cell's space: its loss's defaults (plugins.losses: LossSpec.search_space), then [search], then
[search.<loss>], less what the cell does not use (another loss's or model's parameter) and what the
command line fixes (`--lr 0.01` is not searched). Checked when read: a known, searchable setting (a
cell's own dataset, model, loss, negatives, sampler and seed are not), a loss that takes it, low <
high, log over positive numbers, every bound and choice a valid value of its setting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from mmlbench.config import RunConfig
from mmlbench.config_checks import check_setting, value_type
from mmlbench.errors import MMLBenchError, unknown_name
from mmlbench.plugins.losses import LOSS_PARAMS, LOSSES
from mmlbench.plugins.search import Choices, Dimension, Range

CELL_KEYS = ("dataset", "model", "loss", "negatives", "sampler", "seed")  # what a cell is: never searched
SEARCHABLE = tuple(
    sorted(({f.name for f in fields(RunConfig) if f.metadata["grid"]} | set(LOSS_PARAMS)) - set(CELL_KEYS))
)
_RANGE_KEYS = ("low", "high", "log")
_LIST_SETTINGS = {f.name for f in fields(RunConfig) if "tuple" in str(f.type)}  # MMCL's margins: choices only

Overrides = dict[str, Dimension | None]  # None: not searched


@dataclass(frozen=True)
class SearchTables:
    """An experiment file's [search] (`shared`) and [search.<loss>] (`losses`) tables, checked."""

    shared: Overrides = field(default_factory=dict)
    losses: dict[str, Overrides] = field(default_factory=dict)

    def named(self) -> set[str]:
        return set(self.shared) | {name for table in self.losses.values() for name in table}


def parse_search(table: Mapping[str, Any], source: str) -> SearchTables:
    """The [search] section of an experiment file, every key and value checked."""
    shared: Overrides = {}
    losses: dict[str, Overrides] = {}
    for key, value in table.items():
        if key in LOSSES:
            if not isinstance(value, dict):
                raise MMLBenchError(f"[search.{key}] in {source} must be a table of dimensions, got {value!r}")
            losses[key] = {name: _dimension(name, spec, f"[search.{key}] {name} in {source}", loss=key) for name, spec in value.items()}
        elif key in SEARCHABLE:
            shared[key] = _dimension(key, value, f"[search] {key} in {source}")
        else:
            raise _unknown(key, f"[search] of {source}")
    return SearchTables(shared, losses)


def _unknown(name: str, where: str) -> MMLBenchError:
    if name in CELL_KEYS:
        return MMLBenchError(f"{name} in {where} is what makes a cell, not a parameter to search: grid it instead")
    return unknown_name(f"parameter to search in {where} (or a loss)", name, [*SEARCHABLE, *LOSSES])


def _dimension(name: str, spec: Any, label: str, *, loss: str | None = None) -> Dimension | None:
    if name not in SEARCHABLE:
        raise _unknown(name, label.rsplit(" in ", 1)[-1])
    if loss is not None and name in LOSS_PARAMS and name not in LOSSES[loss].param_names:
        taken = ", ".join(LOSSES[loss].param_names) or "no parameters"
        raise MMLBenchError(f"{label}: loss '{loss}' does not take {name} (it takes {taken})")
    if spec is False:
        return None
    if isinstance(spec, list):
        if not spec:
            raise MMLBenchError(f"{label} has no choices: give at least one")
        return Choices(tuple(check_setting(name, value, label) for value in spec), source="the experiment file")
    if isinstance(spec, dict):
        return _range(name, spec, label)
    raise MMLBenchError(f"{label} must be {{ low = ..., high = ... [, log = true] }}, a list of choices, or false; got {spec!r}")


def _range(name: str, spec: dict[str, Any], label: str) -> Range:
    unknown = [key for key in spec if key not in _RANGE_KEYS]
    if unknown or "low" not in spec or "high" not in spec:
        raise MMLBenchError(f"{label} needs low and high (and optionally log), got keys {', '.join(spec) or 'none'}")
    if name in _LIST_SETTINGS or value_type(name) not in (int, float):
        raise MMLBenchError(f"{label}: {name} is not a number: give a list of choices")
    low, high = (check_setting(name, spec[key], f"{label}'s {key}") for key in ("low", "high"))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise MMLBenchError(f"{label}'s log must be true or false, got {log!r}")
    if low == high:
        raise MMLBenchError(f"{label} is an empty range (low = high = {low:g}): give one choice, [{low:g}], to fix it")
    if low > high:
        raise MMLBenchError(f"{label} has low {low:g} > high {high:g}")
    if log and low <= 0:
        raise MMLBenchError(f"{label} is on a log scale: its low must be > 0, got {low:g}")
    return Range(low, high, log, source="the experiment file")


def cell_space(
    config: RunConfig, tables: SearchTables, fixed: Collection[str] = (), gridded: Collection[str] = ()
) -> dict[str, Dimension]:
    """What one cell (a resolved config) searches: see the module docstring; every value checked against the cell."""
    merged: Overrides = {**LOSSES[config.loss].search_space(), **tables.shared, **tables.losses.get(config.loss, {})}
    for name in merged:
        if name in gridded and merged[name] is not None and name not in fixed:
            raise MMLBenchError(f"{name} is both a [grid] axis and searched: keep one ([search] {name} = false stops the search)")
    space = {
        name: dimension for name, dimension in merged.items()
        if dimension is not None and name not in fixed and getattr(config, name) is not None
    }
    for name, dimension in space.items():
        for value in _extremes(dimension):
            _check_value(config, name, value)
    return space


def _extremes(dimension: Dimension) -> tuple[Any, ...]:
    return (dimension.low, dimension.high) if isinstance(dimension, Range) else dimension.values


def _check_value(config: RunConfig, name: str, value: Any) -> None:
    """`value` of `name` in this cell resolves (the loss's and config's own checks), or one line naming both."""
    try:
        with_value(config, {name: value})
    except MMLBenchError as exc:
        raise MMLBenchError(f"searching {name} over {_shown(value)} for {config.loss}: {exc}") from None


def unused(tables: SearchTables, configs: list[RunConfig]) -> list[str]:
    """The parameters of [search] tables that no cell searches (another model's, or no loss's of the grid)."""
    return sorted(name for name in tables.named() if not any(getattr(config, name) is not None for config in configs))


def with_value(config: RunConfig, values: Mapping[str, Any]) -> RunConfig:
    """The config with these settings, resolved and checked."""
    return dataclasses.replace(config, **values).resolved()


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(_shown, value))
    return f"{value:g}" if isinstance(value, float) else str(value)
