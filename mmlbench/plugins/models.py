"""The model (encoder) registry: each model's parameters, defaults, checks and capabilities.

A builder in `mmlbench.engine.models` takes (n_users, n_items, config, history) and returns
the torch module; `history(L)` gives the users' padded histories, which only models that
declare `needs_history` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmlbench.errors import MMLBenchError
from mmlbench.plugins import PluginSpec, Registry


@dataclass(frozen=True)
class ModelSpec(PluginSpec):
    """A registered encoder."""

    needs_history: bool = False  # reads each user's training items (history_len of them)


def _check_simplex(params: dict[str, Any]) -> None:
    if not 0 <= params["gamma"] <= 1:
        raise MMLBenchError(f"--gamma must lie in [0, 1], got {params['gamma']}")
    if params["history_len"] < 1:
        raise MMLBenchError(f"--history-len must be >= 1, got {params['history_len']}")


MODELS: Registry[ModelSpec] = Registry("model", {
    "mf": ModelSpec("mmlbench.engine.models:build_mf"),
    "simplex": ModelSpec(
        "mmlbench.engine.models:build_simplex",
        {"aggregator": "mean", "gamma": 0.5, "history_len": 50},  # SimpleX's defaults
        choices={"aggregator": ("mean", "user-attention")},
        check=_check_simplex,
        needs_history=True,
    ),
})


def get_model(name: str) -> ModelSpec:
    return MODELS.spec(name)
