"""The model (encoder) registry: each model's parameters, defaults, checks and capabilities.

A builder in `mmlbench.engine.models` takes (config, data) and returns the torch module;
`data` is the InteractionData on the device: its sizes, and the users' histories or the
training pairs for the models that declare `needs_history` or `needs_graph`.
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
    needs_graph: bool = False  # propagates over the training graph every step (layers of it)
    capturable: bool = False  # its training step can be captured as a CUDA graph


def _check_simplex(params: dict[str, Any]) -> None:
    if not 0 <= params["gamma"] <= 1:
        raise MMLBenchError(f"--gamma must lie in [0, 1], got {params['gamma']}")
    if params["history_len"] < 1:
        raise MMLBenchError(f"--history-len must be >= 1, got {params['history_len']}")


def _check_lightgcn(params: dict[str, Any]) -> None:
    if params["layers"] < 0:
        raise MMLBenchError(f"--layers must be >= 0, got {params['layers']} (0 is MF on the same code path)")


MODELS: Registry[ModelSpec] = Registry("model", {
    "lightgcn": ModelSpec(
        "mmlbench.engine.models:build_lightgcn",
        {"layers": 3},  # LightGCN's setting
        check=_check_lightgcn,
        needs_graph=True,
        capturable=False,  # sparse products inside a captured graph are untested: train eagerly
    ),
    "mf": ModelSpec("mmlbench.engine.models:build_mf", capturable=True),
    "simplex": ModelSpec(
        "mmlbench.engine.models:build_simplex",
        {"aggregator": "mean", "gamma": 0.5, "history_len": 50},  # SimpleX's defaults
        # user-attention: RecZoo's arithmetic; user-attention-masked: mmlbench's form before it
        choices={"aggregator": ("mean", "user-attention", "user-attention-masked")},
        check=_check_simplex,
        needs_history=True,
        capturable=True,
    ),
})
