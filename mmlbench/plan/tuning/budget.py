"""A tune's budget and protocol: trials per cell, final seeds, the pruner; from [tune] and the command line.

    [tune]                    # an experiment file's defaults; --trials, --seeds, --pruner win
    trials = 20               # finished trials per cell (completed, pruned or failed)
    seeds = 3                 # the best setting's runs tested on test: seeds base .. base + N - 1
    pruner = "median"         # median, hyperband or none
    [quick]
    tune = { trials = 6 }     # --quick: the variant's own
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmlbench.errors import MMLBenchError, unknown_name

PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class TuneSettings:
    """The same for every cell of a tune: `trials` finished trials each, `seeds` final runs of its best setting."""

    trials: int = 20
    seeds: int = 3
    pruner: str = "median"

    def __post_init__(self) -> None:
        for name in ("trials", "seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MMLBenchError(f"--{name} must be a whole number >= 1, got {value!r}")
        if self.pruner not in PRUNERS:
            raise unknown_name("pruner", self.pruner, PRUNERS)

    def over(self, given: Mapping[str, Any]) -> TuneSettings:
        """These settings with the values `given` (not None) on top."""
        return TuneSettings(**{**self.__dict__, **{key: value for key, value in given.items() if value is not None}})


def parse_tune(table: Mapping[str, Any], label: str) -> dict[str, Any]:
    """A [tune] table: its keys checked (values are checked when settings are made of them)."""
    for key, value in table.items():
        if key not in TuneSettings.__dataclass_fields__:
            raise unknown_name(f"key in {label}", key, tuple(TuneSettings.__dataclass_fields__))
        try:
            TuneSettings().over({key: value})
        except MMLBenchError as exc:
            raise MMLBenchError(f"{label}: {exc}") from None
    return dict(table)
