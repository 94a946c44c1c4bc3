"""Default search spaces of `mmlbench tune`: a parameter's range or choices, and where it comes from.

A dimension is a `Range` (low .. high, on a log scale or not; whole numbers when its setting
is an integer) or `Choices` (a list of values). Each loss's registry entry names its own
tunable parameters (`LossSpec.search`); SHARED holds those every loss's runs have, and SCORE
the scoring choice of the losses commonly run on dot products. An experiment file's [search]
and [search.<loss>] tables override them (plan/tuning/space.py). Every dimension says why it
is what it is (`source`): the tuning page of the manual lists them (tests/test_tune_space.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Range:
    """low .. high; sampled uniformly, or uniformly in log(value) with `log`."""

    low: float
    high: float
    log: bool = False
    source: str = field(default="", compare=False)

    def describe(self) -> str:
        return f"{_shown(self.low)} .. {_shown(self.high)}" + (", log" if self.log else "")


@dataclass(frozen=True)
class Choices:
    """One of `values` (a tuple value, such as MMCL's margins, is one choice)."""

    values: tuple[Any, ...]
    source: str = field(default="", compare=False)

    def describe(self) -> str:
        return " or ".join(_shown(value) for value in self.values)


Dimension = Range | Choices


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(_shown, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


SHARED: dict[str, Dimension] = {
    "lr": Range(1e-4, 1e-2, log=True, source="the reference MF runs' 1e-4 up two decades (LightGCN's 1e-3 inside); our choice"),
    "l2": Range(1e-9, 1e-6, log=True, source=(
        "the reference MF runs' 1e-9 .. 1e-7 and a decade more; our choice (with --l2-scope table, Adam turns a "
        "larger penalty into a shrink of every row at every step)")),
    "dropout": Range(0.0, 0.5, source="around the reference MF runs' 0.1; our choice"),
}
SCORE = Choices(("cosine", "dot"), source=(
    "cosine as the reference; dot as these losses are most often run (MF-BPR, LightGCN, RecBole); the search decides"))
