"""The one place a resolved RunConfig becomes what the engine trains: plug-ins are looked up here.

The registries (`mmlbench.plugins`) say what each model, loss and sampler is called, takes and
can do; here a run's entries are looked up by name, their implementations loaded and bound to
the data: the model, the sampler (on the run's own generator in a lockstep group), the loss
function with its parameters, the sampler's log-probabilities for a loss that corrects for
them, whether the step can be a CUDA graph, and which runs can share one lockstep step. The
engine takes the result (`engine.parts.Parts`) and never sees a registry. (Checking a config's
values against the specs is the config's own job: RunConfig.resolved.)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mmlbench.config import ALL, RunConfig
from mmlbench.data.dataset import InteractionData
from mmlbench.engine.lockstep import SHARED
from mmlbench.engine.parts import Parts
from mmlbench.engine.sampling import Sampler, Scorer, model_scorer
from mmlbench.plugins import load
from mmlbench.plugins.losses import LOSSES, LossSpec
from mmlbench.plugins.models import MODELS, ModelSpec
from mmlbench.plugins.samplers import SAMPLERS, SamplerSpec


@dataclass(frozen=True)
class Specs:
    """A run's entries of the three registries."""

    model: ModelSpec
    loss: LossSpec
    sampler: SamplerSpec


def specs(config: RunConfig) -> Specs:
    """The registry entries `config` names (an unknown name is a one-line error suggesting the closest)."""
    return Specs(MODELS.spec(config.model), LOSSES.spec(config.loss), SAMPLERS.spec(config.sampler))


def model(config: RunConfig, data: InteractionData, device: torch.device | None = None) -> nn.Module:
    """The encoder named by config.model, for `data` (its sizes; SimpleX reads the users'
    histories, LightGCN the training graph), on `device` when given."""
    module = specs(config).model.load()(config, data)
    return module if device is None else module.to(device)


def parts(config: RunConfig, data: InteractionData, model: nn.Module, *, generator: torch.Generator | None = None) -> Parts:
    """Everything a run trains with: its `model` (built first, by `model`, after seeding), its loss
    function, its sampler drawing from `generator` (None: the device's default one) and what the
    step must know of them. Nothing here draws a random number."""
    found = specs(config)
    loss_params, sampler_params = found.loss.params_of(config), found.sampler.params_of(config)
    sampler = None
    if not found.loss.takes_embeddings and config.negatives != ALL:  # all: every item, nothing drawn
        sampler = make_sampler(
            config.sampler,
            n_items=data.n_items,
            negatives=config.negatives,
            positive_keys=data.splits["train"].keys,
            item_counts=data.item_counts(),
            params=sampler_params,
            scorer=model_scorer(model, config.score == "cosine") if found.sampler.needs_scorer else None,
            generator=generator,
        )
    log_q = None
    if found.loss.needs_log_q(loss_params):
        log_q = relative_log_q(config.sampler, item_counts=data.item_counts(), params=sampler_params)
    return Parts(
        model, loss_function(config.loss, loss_params), sampler,
        sampler_takes_positives=found.sampler.needs_positives, log_q=log_q,
        capturable=found.sampler.capturable and found.model.capturable,
        loss_key=(config.loss, tuple(sorted(loss_params.items()))),
    )


def loss_function(name: str, params: dict[str, Any]) -> Callable[..., Tensor]:
    """A closure computing the named loss with fixed parameters: (s_pos, s_neg), plus the
    negatives' log(I q) [B, N] where the spec's `needs_log_q(params)`."""
    fn = LOSSES.spec(name).load()

    def compute(s_pos: Tensor, s_neg: Tensor, neg_log_q: Tensor | None = None) -> Tensor:
        if neg_log_q is None:
            return fn(s_pos, s_neg, **params)
        return fn(s_pos, s_neg, neg_log_q, **params)

    return compute


def make_sampler(
    name: str,
    *,
    n_items: int,
    negatives: int,
    positive_keys: Tensor,
    item_counts: Tensor,
    params: Mapping[str, Any],
    scorer: Scorer | None = None,
    generator: torch.Generator | None = None,
) -> Sampler:
    """The sampler called `name`, bound to the training data (and, where it needs one, to the
    model's `scorer`); `params` holds (at least) its parameters. A `generator` is handed to
    factories that take one (`takes_generator`); None leaves every sampler on the default one."""
    spec = SAMPLERS.spec(name)
    data: dict[str, Any] = {}
    if generator is not None:
        if not takes_generator(name):
            raise ValueError(f"sampler {name} cannot draw from a given generator")
        data["generator"] = generator
    if spec.needs_positive_keys:
        data["positive_keys"] = positive_keys
    if spec.needs_item_counts:
        data["item_counts"] = item_counts
    if spec.needs_scorer:
        if scorer is None:
            raise ValueError(f"sampler {name} needs the model's scorer")
        data["scorer"] = scorer
    return spec.load()(n_items=n_items, negatives=negatives, **data, **_own(spec, params))


def relative_log_q(name: str, *, item_counts: Tensor, params: Mapping[str, Any]) -> Tensor:
    """log(I q(item)) [I]: the log of the sampler's probability of each item relative to
    uniform's 1/I, for losses that correct for the sampler. Zero for the uniform samplers
    (uniform-exclude-pos is uniform over a user's non-positives: 1/(I - |P_u|), taken as 1/I)."""
    spec = SAMPLERS.spec(name)
    if spec.log_q is None:
        return torch.zeros(item_counts.numel(), device=item_counts.device)
    return load(spec.log_q)(item_counts, **_own(spec, params))


def takes_generator(name: str) -> bool:
    """Whether the sampler's factory takes a `generator` to draw from (needed to train it in lockstep)."""
    return "generator" in inspect.signature(SAMPLERS.spec(name).load()).parameters


def _own(spec: SamplerSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: params[key] for key in spec.param_names}


def group_key(config: RunConfig) -> tuple | None:
    """What runs must share to train in one lockstep step (a resolved config), or None: it trains alone.

    MF only (its tables are the whole model), losses over scores (not DirectAU's vectors), and
    samplers that draw from a given generator and do not look at the batch's positives or the model.
    """
    found = specs(config)
    if config.model != "mf" or found.loss.takes_embeddings:
        return None
    if found.sampler.needs_positives or found.sampler.needs_scorer or not takes_generator(config.sampler):
        return None
    return (*(getattr(config, name) for name in SHARED), config.sampler, tuple(sorted(found.sampler.params_of(config).items())))
