"""Negative samplers, drawn on the device in one call per batch: users [B] -> items [B, N]
(in-batch: users [B], positive items [B] -> items [B, N]); and an epoch's training pairs.

Each is registered, with its parameters and capabilities, in `mmlbench.plugins.samplers`.
They draw from torch's default generator of the device, which the run's seed sets and which
CUDA graph capture knows how to advance on every replay, or, where the factory takes a
`generator` (runs trained together in engine.lockstep, each on its own stream), from that one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mmlbench.data.dataset import InteractionData
from mmlbench.engine.scoring import unit
from mmlbench.errors import MMLBenchError

Sampler = Callable[..., Tensor]  # (users [B]) or, with needs_positives, (users [B], positives [B]) -> [B, N]
Scorer = Callable[[Tensor, Tensor], Tensor]  # (users [B], items [B, M]) -> scores [B, M], no gradient

# Re-draw rounds for uniform-exclude-pos before giving up; each round re-draws only the
# collisions, so with even 99% of items positive the chance of needing this many is tiny.
_MAX_REDRAW_ROUNDS = 200


def uniform(n_items: int, negatives: int, generator: torch.Generator | None = None) -> Sampler:
    """Uniform over all items, with replacement (the paper's sampler; positives not excluded)."""

    def sample(users: Tensor) -> Tensor:
        return torch.randint(n_items, (users.shape[0], negatives), device=users.device, generator=generator)

    return sample


def uniform_exclude_positives(
    n_items: int, negatives: int, positive_keys: Tensor, generator: torch.Generator | None = None
) -> Sampler:
    """Uniform over the items the user has not interacted with in train.

    `positive_keys` are the sorted keys user * n_items + item of the training pairs; a
    vectorised searchsorted finds collisions, and only those are re-drawn.
    """
    last = positive_keys.numel() - 1

    def sample(users: Tensor) -> Tensor:
        drawn = torch.randint(n_items, (users.shape[0], negatives), device=users.device, generator=generator)
        user_base = users.unsqueeze(1) * n_items
        for _ in range(_MAX_REDRAW_ROUNDS):
            keys = user_base + drawn
            found = positive_keys[torch.searchsorted(positive_keys, keys).clamp_max_(last)] == keys
            if not bool(found.any()):
                return drawn
            fresh = torch.randint(n_items, drawn.shape, device=drawn.device, generator=generator)
            drawn = torch.where(found, fresh, drawn)
        raise MMLBenchError("uniform-exclude-pos could not find enough non-positive items; use --sampler uniform")

    return sample


def epoch_pairs(data: InteractionData, method: str, generator: torch.Generator | None = None) -> Tensor:
    """One epoch's training pairs, in training order, as indices into data.train_users / train_items.

    `pairs`: every training pair once, in a random order (the reference's shuffled epoch).
    `user-uniform`: as many draws as there are training pairs, each a user drawn uniformly
    among the users with training pairs and then one of that user's training items uniformly,
    all with replacement, as LightGCN's official code draws its epoch (`UniformSample_original`,
    which skips the draws of users without items). The index is the CSR position
    indptr[user] + offset, so the rest of the step reads the pair as any other.
    """
    n_pairs, device = data.train_items.numel(), data.train_items.device
    if method == "pairs":
        return torch.randperm(n_pairs, device=device, generator=generator)
    train = data.splits["train"]
    users = train.users()
    drawn = users[torch.randint(users.numel(), (n_pairs,), device=device, generator=generator)]
    counts = train.counts()[drawn]
    uniform = torch.rand(n_pairs, device=device, dtype=torch.float64, generator=generator)
    offsets = torch.minimum((uniform * counts).long(), counts - 1)  # in case u * count rounds up to count
    return train.indptr[drawn] + offsets


def popularity_probabilities(item_counts: Tensor, alpha: float) -> Tensor:
    """q(item) = count ** alpha / sum(count ** alpha), in float64."""
    weights = item_counts.double().pow(alpha)
    if float(weights.sum()) <= 0:
        raise MMLBenchError("popularity sampling needs at least one item with training interactions")
    return weights / weights.sum()


def popularity(
    n_items: int, negatives: int, item_counts: Tensor, popularity_alpha: float, generator: torch.Generator | None = None
) -> Sampler:
    """Items drawn with probability proportional to (training count) ** alpha, with replacement."""
    probabilities = popularity_probabilities(item_counts, popularity_alpha).float()

    def sample(users: Tensor) -> Tensor:
        flat = torch.multinomial(probabilities, users.shape[0] * negatives, replacement=True, generator=generator)
        return flat.view(users.shape[0], negatives)

    return sample


def popularity_log_q(item_counts: Tensor, popularity_alpha: float) -> Tensor:
    """log(I q(item)) [I] of the popularity sampler."""
    q = popularity_probabilities(item_counts, popularity_alpha)
    return torch.log(q * q.numel()).float()


def in_batch(n_items: int, negatives: int) -> Sampler:
    """The positives of other rows of the batch: row b takes rows b+1, ..., b+N's (cyclically).

    No draws: the batch is already a random sample of the training pairs, so its positives
    are negatives drawn in proportion to item popularity (see `in_batch_log_q`). Taking the N
    following rows rather than all B-1 keeps [B, N] fixed for any N <= B-1 (checked with the
    config). An "accidental hit", another row holding the same item as row b's positive, is
    kept as a negative, as most in-batch implementations do. In a smaller last batch of
    B' <= N rows the cycle wraps, so a row there also meets its own positive among its
    negatives (`--last-batch wrap` avoids small batches). Capturable: two aranges, a modulo
    and a gather, all of fixed shape for a fixed B.
    """

    def sample(users: Tensor, positives: Tensor) -> Tensor:
        batch, device = positives.shape[0], positives.device
        rows = torch.arange(batch, device=device).unsqueeze(1)
        return positives[(rows + torch.arange(1, negatives + 1, device=device)) % batch]

    return sample


def in_batch_log_q(item_counts: Tensor) -> Tensor:
    """log(I q(item)) [I] of in-batch negatives: q = count / total, the share of training pairs."""
    return popularity_log_q(item_counts, 1.0)


def hard(n_items: int, negatives: int, candidates: int, scorer: Scorer) -> Sampler:
    """Dynamic negative sampling (Zhang et al., SIGIR 2013): of `candidates` uniform draws per
    pair, the `negatives` the current model scores highest.

    One [B, M] randint, the scorer's [B, M, d] gather and product under no_grad, a topk and a
    gather: fixed shapes, no host sync and no data-dependent branch, so the step stays
    capturable as a CUDA graph (the scorer's kernels are captured with the step's and read
    the live tables on every replay). Ties and repeated candidates are kept as drawn. An
    encoder whose item table is computed (a graph encoder's propagation) computes it once
    more per step for the scorer, under no_grad.
    """

    def sample(users: Tensor) -> Tensor:
        drawn = torch.randint(n_items, (users.shape[0], candidates), device=users.device)
        kept = scorer(users, drawn).topk(negatives, dim=1, sorted=False).indices
        return drawn.gather(1, kept)

    return sample


def model_scorer(model: torch.nn.Module, cosine: bool) -> Scorer:
    """The model's current scores of users against items [B, M], without gradient or dropout
    (as the evaluator scores), cosine or dot as the run scores. Dropout is switched off
    module by module rather than with model.eval(), which other encoders may give a meaning.
    """
    dropouts = [module for module in model.modules() if isinstance(module, torch.nn.Dropout)]

    def score(users: Tensor, items: Tensor) -> Tensor:
        with torch.no_grad():
            modes = [module.training for module in dropouts]
            for module in dropouts:
                module.training = False
            try:
                vectors = model.user_vectors(users, normalize=cosine)
            finally:
                for module, mode in zip(dropouts, modes):
                    module.training = mode
            table = unit(model.item_table()) if cosine else model.item_table()  # [I, d]: cheaper than [B, M, d]
            return torch.bmm(table[items], vectors.unsqueeze(-1)).squeeze(-1)

    return score
