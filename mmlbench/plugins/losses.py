"""The loss registry: each loss's parameters, defaults, checks and capabilities.

The functions themselves are in `mmlbench.engine.losses` (torch); their keyword-only
parameters are RunConfig field names and are exactly the keys of the spec's defaults
(tests/test_plugins.py holds every entry to that).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mmlbench.console import warn
from mmlbench.errors import MMLBenchError
from mmlbench.plugins import PluginSpec, Registry
from mmlbench.plugins.search import SCORE, SHARED, Choices, Dimension, Range


@dataclass(frozen=True)
class LossSpec(PluginSpec):
    """A registered loss. `log_q_switch` names the boolean parameter that makes the loss take
    a third argument, the negatives' log sampling probabilities relative to uniform, log(I q) [B, N].

    `takes_embeddings`: the loss takes the batch's user and positive-item vectors [B, d]
    instead of scores and draws no negatives (its runs have negatives = 0). `search`: what
    `mmlbench tune` searches for this loss besides plugins.search.SHARED (its parameters, and
    `score` for the losses commonly run on dot products).
    """

    log_q_switch: str | None = None
    takes_embeddings: bool = False
    search: Mapping[str, Dimension] = field(default_factory=dict)

    def search_space(self) -> dict[str, Dimension]:
        """The default search space of this loss's runs: the shared dimensions, then its own."""
        return {**SHARED, **self.search}

    def needs_log_q(self, params: dict[str, Any]) -> bool:
        return self.log_q_switch is not None and bool(params[self.log_q_switch])


def _check_ccl(params: dict[str, Any]) -> None:
    _check_margin(params["margin"])
    _check_positive("negative_weight", params["negative_weight"])


def _check_mmcl(params: dict[str, Any]) -> None:
    margins, weights = params["margins"], params["margin_weights"]
    if len(margins) != len(weights):
        raise MMLBenchError(
            f"--margins has {len(margins)} values but --margin-weights has {len(weights)}; give one weight per margin"
        )
    if not margins:
        raise MMLBenchError("--margins needs at least one margin")
    for margin in margins:
        _check_margin(margin)
    if any(w < 0 for w in weights):
        raise MMLBenchError(f"--margin-weights must be non-negative, got {list(weights)}")
    if abs(sum(weights) - 1) > 1e-6:
        warn(f"--margin-weights sum to {sum(weights):g}, not 1: --negative-weight no longer plays CCL's w")
    _check_positive("negative_weight", params["negative_weight"])
    _check_positive("positive_weight", params["positive_weight"])


def _check_ssm(params: dict[str, Any]) -> None:
    _check_positive("temperature", params["temperature"])
    if not isinstance(params["logq_correction"], bool):
        raise MMLBenchError(f"--logq-correction is a switch (true or false), got {params['logq_correction']!r}")


def _check_bsl(params: dict[str, Any]) -> None:
    _check_positive("temperature", params["temperature"])
    _check_positive("negative_power", params["negative_power"])


def _check_hinge(params: dict[str, Any]) -> None:
    _check_positive("margin", params["margin"])


def _check_directau(params: dict[str, Any]) -> None:
    _check_positive("uniformity_weight", params["uniformity_weight"])


def _check_margin(margin: float) -> None:
    if not -1 <= margin <= 1:
        raise MMLBenchError(f"a cosine margin must lie in [-1, 1], got {margin}")


def _check_positive(name: str, value: float) -> None:
    if value <= 0:
        raise MMLBenchError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def _loss(name: str, defaults: dict[str, Any] | None = None, check: Any = None, **capabilities: Any) -> LossSpec:
    """A loss spec; `capabilities` are LossSpec's other fields (log_q_switch, takes_embeddings, search)."""
    return LossSpec(f"mmlbench.engine.losses:{name}", defaults or {}, check=check, **capabilities)


# Defaults from the reference runs (docs/fidelity.md): CCL as in SimpleX; MMCL and BSL as in their authors' Gowalla runs;
# DirectAU's gamma as its authors' default (their Gowalla command uses 5, Yelp2018 1).
# Search ranges (`mmlbench tune`): around those values, each with its source (docs/tune.md lists them).
_MARGIN_SETS = ((0.7, 0.8, 0.9), (0.6, 0.7, 0.8), (0.8, 0.85, 0.9), (0.5, 0.7, 0.9))
LOSSES: Registry[LossSpec] = Registry("loss", {
    "bpr": _loss("bpr", search={"score": SCORE}),
    "bce": _loss("bce", search={"score": SCORE}),
    "mse": _loss("mse", search={"score": SCORE}),
    "ssm": _loss(
        "ssm", {"temperature": 0.1, "logq_correction": False}, _check_ssm, log_q_switch="logq_correction",
        search={"temperature": Range(0.02, 1.0, log=True, source="around the SSM presets' 0.1; our choice"),
                "score": SCORE},
    ),
    "bsl": _loss("bsl", {"temperature": 0.08, "negative_power": 1.22}, _check_bsl, search={
        "temperature": Range(0.02, 0.5, log=True, source="around the BSL authors' τ1 0.08 (Gowalla) and 0.11 (Yelp2018)"),
        "negative_power": Range(0.5, 2.0, source="around the BSL authors' τ2 1.22 (Gowalla) and 1.10 (Yelp2018)"),
    }),
    "hinge": _loss("hinge", {"margin": 1.0}, _check_hinge, search={
        "margin": Range(0.05, 2.0, log=True, source="around RecBox's default margin 1; our choice"), "score": SCORE,
    }),
    "directau": _loss("directau", {"uniformity_weight": 1.0}, _check_directau, takes_embeddings=True, search={
        "uniformity_weight": Range(0.1, 10.0, log=True, source="around the DirectAU authors' γ 1 (default) and 5 (Gowalla)"),
    }),
    "ccl": _loss("ccl", {"margin": 0.9, "negative_weight": 150.0}, _check_ccl, search={
        "margin": Range(0.1, 0.95, source="SimpleX's Gowalla margin 0.9 near the top; our choice below"),
        "negative_weight": Range(1.0, 1000.0, log=True, source="around SimpleX's Gowalla w 150; our choice"),
    }),
    "mmcl": _loss(
        "mmcl",
        {"margins": (0.7, 0.8, 0.9), "margin_weights": (0.10, 0.15, 0.75), "negative_weight": 700.0, "positive_weight": 1.0},
        _check_mmcl,
        search={
            "margins": Choices(_MARGIN_SETS, source=(
                "the MMCL author's Gowalla set 0.7,0.8,0.9 and three of our own, each with the author's weights "
                "0.10,0.15,0.75")),
            "negative_weight": Range(50.0, 2000.0, log=True, source="around the MMCL author's W 700 (Gowalla), 400 (Yelp2018)"),
        },
    ),
})

# Every loss parameter any loss takes: RunConfig keeps these None unless the loss uses them.
LOSS_PARAMS: tuple[str, ...] = LOSSES.param_names


def get_loss(name: str) -> LossSpec:
    return LOSSES.spec(name)


def resolve_params(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The loss's parameters: given values where set (not None), its defaults elsewhere, checked."""
    return get_loss(name).resolve(given)
