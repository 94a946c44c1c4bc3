"""The negative-sampler registry: each sampler's parameters, defaults and capabilities.

A factory in `mmlbench.engine.sampling` takes (n_items=, negatives=) plus its parameters
and, where its capabilities say so, `positive_keys=` (sorted user * n_items + item keys
of the training pairs), `item_counts=` (training interactions per item) and `scorer=`
((users [B], items [B, M]) -> the current model's scores [B, M], without gradient).
The sampler it returns maps the batch's users [B] to negatives [B, N], or, with
`needs_positives`, (users [B], positive items [B]) to negatives [B, N].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmlbench.errors import MMLBenchError
from mmlbench.plugins import Derived, PluginSpec, Registry


@dataclass(frozen=True)
class SamplerSpec(PluginSpec):
    """A registered sampler. `log_q` names the function giving log(I q(item)) [I] from the item
    counts and the parameters, for losses that correct for the sampler; None: uniform (zero)."""

    capturable: bool = False  # fixed shapes, no host sync: the training step can be a CUDA graph
    needs_item_counts: bool = False
    needs_positive_keys: bool = False
    needs_positives: bool = False  # called with the batch's positive items too
    needs_scorer: bool = False  # its factory takes the current model's score function
    log_q: str | None = None


def _check_in_batch(params: dict[str, Any]) -> None:
    if params["negatives"] > params["batch_size"] - 1:
        raise MMLBenchError(
            f"--sampler in-batch takes its negatives from the other rows of the batch: --negatives {params['negatives']} "
            f"must be <= --batch-size - 1 = {params['batch_size'] - 1}"
        )


def _check_hard(params: dict[str, Any]) -> None:
    if params["candidates"] < params["negatives"]:
        raise MMLBenchError(
            f"--candidates {params['candidates']} must be >= --negatives {params['negatives']} "
            "(--sampler hard keeps the best --negatives of --candidates uniform draws)"
        )


def _check_popularity(params: dict[str, Any]) -> None:
    if params["popularity_alpha"] < 0:  # count ** alpha: infinite for an item never seen in training
        raise MMLBenchError(
            f"--popularity-alpha must be >= 0 (0: uniform; 1: as popular as in training), got {params['popularity_alpha']:g}"
        )


SAMPLERS: Registry[SamplerSpec] = Registry("sampler", {
    "uniform": SamplerSpec("mmlbench.engine.sampling:uniform", capturable=True),
    "uniform-exclude-pos": SamplerSpec("mmlbench.engine.sampling:uniform_exclude_positives", needs_positive_keys=True),
    "popularity": SamplerSpec(
        "mmlbench.engine.sampling:popularity",
        {"popularity_alpha": 0.75},  # word2vec's exponent: flattens popularity, keeps its order
        check=_check_popularity,
        needs_item_counts=True,
        log_q="mmlbench.engine.sampling:popularity_log_q",
    ),
    "in-batch": SamplerSpec(
        "mmlbench.engine.sampling:in_batch",
        check=_check_in_batch,
        reads=("negatives", "batch_size"),
        capturable=True,
        needs_positives=True,
        log_q="mmlbench.engine.sampling:in_batch_log_q",
    ),
    "hard": SamplerSpec(
        "mmlbench.engine.sampling:hard",
        # Keeping the top fifth of the draws: each kept negative outscores ~80% of uniform
        # ones, at a sampling cost of a few times the step's own gather; larger pools mostly
        # add the user's unobserved relevant items (false negatives) to the kept ones.
        {"candidates": Derived(lambda run: 5 * run["negatives"], "5 x --negatives")},
        check=_check_hard,
        reads=("negatives",),
        capturable=True,
        needs_scorer=True,
    ),
})
