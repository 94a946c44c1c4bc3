"""One run of a lockstep group (engine.lockstep): its trainer, its own random stream, its fit and Adam state.

Below both the group's epoch loop (engine.lockstep) and its batched step (engine.group_step),
which both act on members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mmlbench.config import RunConfig
from mmlbench.engine.trainer import FitResult, Trainer


@dataclass
class Member:
    """One run of a group: its Trainer (sampler on its own generator, loss, evaluation) and fit."""

    trainer: Trainer
    generator: torch.Generator
    result: FitResult = field(default_factory=lambda: FitResult(None, 0, -math.inf, []))
    error: BaseException | None = None  # its own failure (divergence); the group goes on without it
    moments: list[Tensor] | None = None  # Adam: exp_avg per table, exp_avg_sq per table (views while grouped)
    steps: list[Tensor] = field(default_factory=list)  # Adam's step count per table

    @property
    def config(self) -> RunConfig:
        return self.trainer.config

    @property
    def tables(self) -> list[Tensor]:
        return list(self.trainer.model.embedding_tables())
