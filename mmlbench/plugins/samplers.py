"""The negative-sampler registry: each sampler's parameters, defaults and capabilities.

A factory in `mmlbench.engine.sampling` takes (n_items=, negatives=) plus its parameters
and, where its capabilities say so, `positive_keys=` (sorted user * n_items + item keys
of the training pairs) and `item_counts=` (training interactions per item).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmlbench.plugins import PluginSpec, Registry


@dataclass(frozen=True)
class SamplerSpec(PluginSpec):
    """A registered sampler. `log_q` names the function giving log(I q(item)) [I] from the item
    counts and the parameters, for losses that correct for the sampler; None: uniform (zero)."""

    capturable: bool = False  # fixed shapes, no host sync: the training step can be a CUDA graph
    needs_item_counts: bool = False
    needs_positive_keys: bool = False
    log_q: str | None = None


SAMPLERS: Registry[SamplerSpec] = Registry("sampler", {
    "uniform": SamplerSpec("mmlbench.engine.sampling:uniform", capturable=True),
    "uniform-exclude-pos": SamplerSpec("mmlbench.engine.sampling:uniform_exclude_positives", needs_positive_keys=True),
    "popularity": SamplerSpec(
        "mmlbench.engine.sampling:popularity",
        {"popularity_alpha": 0.75},  # word2vec's exponent: flattens popularity, keeps its order
        needs_item_counts=True,
        log_q="mmlbench.engine.sampling:popularity_log_q",
    ),
})


def get_sampler(name: str) -> SamplerSpec:
    return SAMPLERS.spec(name)
