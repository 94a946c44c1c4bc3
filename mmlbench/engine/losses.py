"""Losses over scores: f(s_pos [B], s_neg [B, N], **params) -> scalar (mean over the batch);
a loss whose spec `takes_embeddings` (DirectAU) takes the batch's vectors instead:
f(users [B, d], positive items [B, d], **params).

Each loss is a small pure function; its keyword-only parameters are RunConfig field names,
so the registry (`mmlbench.plugins.losses`: defaults, checks, capabilities) can hand any
loss the parameters it asks for and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr(s_pos: Tensor, s_neg: Tensor) -> Tensor:
    """Bayesian personalised ranking: mean_j -log sigmoid(s_pos - s_neg_j)."""
    return F.softplus(s_neg - s_pos.unsqueeze(1)).mean(dim=1).mean()


def bce(s_pos: Tensor, s_neg: Tensor) -> Tensor:
    """Binary cross-entropy: -log sigmoid(s_pos) - mean_j log(1 - sigmoid(s_neg_j)).

    Reduction: the negatives' term is averaged over the N negatives (not summed), so the
    positive and the negatives weigh the same whatever N is.
    """
    return (F.softplus(-s_pos) + F.softplus(s_neg).mean(dim=1)).mean()


def ssm(
    s_pos: Tensor, s_neg: Tensor, neg_log_q: Tensor | None = None, *, temperature: float, logq_correction: bool = False
) -> Tensor:
    """Sampled softmax (InfoNCE): -log(exp(s_pos/t) / (exp(s_pos/t) + sum_j exp(s_neg_j/t))).

    With `logq_correction`, negative j's logit is s_neg_j/t - log(I q_j): `neg_log_q` [B, N]
    holds log(I q_j), the log of the probability q_j with which the sampler drew item j
    relative to uniform's 1/I. Then E_q[exp(s_j/t) / (I q_j)] = E_uniform[exp(s_j/t)], so
    the negatives' sum estimates what uniform sampling estimates whatever the sampler, and
    with the uniform sampler (log(I q) = 0) the correction changes nothing. The positive is
    not drawn from q and keeps its logit.
    """
    negatives = s_neg / temperature
    if logq_correction:
        if neg_log_q is None:
            raise ValueError("ssm with logq_correction needs the negatives' log-probabilities")
        negatives = negatives - neg_log_q
    logits = torch.cat([s_pos.unsqueeze(1) / temperature, negatives], dim=1)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def bsl(s_pos: Tensor, s_neg: Tensor, *, temperature: float, negative_power: float) -> Tensor:
    """Bilateral softmax loss (Wu et al., ICDE 2024), in the form of the authors' code:
    -s_pos/t1 + t2 * log sum_j exp(s_neg_j/t1), with t1 = `temperature`, t2 = `negative_power`.

    t2 is the power on the negatives' softmax sum (the BSL code's `temperature_2`, and the
    τ2 of its published settings). Written with two temperatures it is t2 times
    -s_pos/(t1 t2) + log sum_j exp(s_neg_j/t1): positive temperature t1*t2, negative
    temperature t1, so the two temperatures are equal exactly when t2 = 1, and then this is
    the BSL code's softmax loss. That softmax leaves the positive out of the denominator,
    unlike `ssm`: per row, bsl(t, 1) = ssm(t) + log(1 - exp(-ssm(t))), equal to neither
    `ssm` nor `ssm` plus a constant. Negatives are summed ("reweight" mode, the README's
    form); the published MF runs average them ("multi" mode), which only subtracts the
    constant t2 log N, and also pool exp(s_pos/t1) over a batch's rows of the same user,
    which a loss over one row cannot do (8.5% of the rows of a batch of 1024 on Gowalla
    share their user with another row).
    """
    positive = s_pos / temperature
    negative = torch.logsumexp(s_neg / temperature, dim=1)
    return (negative_power * negative - positive).mean()


def mse(s_pos: Tensor, s_neg: Tensor) -> Tensor:
    """Squared error to the labels 1 and 0: (1 - s_pos)^2 + mean_j s_neg_j^2, meant for cosines.

    Reduction: the negatives are averaged over the N negatives, so their weight does not grow
    with N. RecBox's MSELoss (the reference library) halves both terms and sums the negatives,
    (1 - s_pos)^2 / 2 + sum_j s_neg_j^2 / 2, i.e. its negatives weigh N times ours.
    """
    return ((1 - s_pos).square() + s_neg.square().mean(dim=1)).mean()


def hinge(s_pos: Tensor, s_neg: Tensor, *, margin: float) -> Tensor:
    """Pairwise margin ranking: mean_j relu(m - s_pos + s_neg_j), the positive ahead by m.

    As RecBox's PairwiseMarginLoss (mean over the batch and the N negatives); its default
    m = 1 is ours: on cosine scores a pair stops counting once the gap reaches half the range.
    """
    return torch.relu(margin - s_pos.unsqueeze(1) + s_neg).mean()


def ccl(s_pos: Tensor, s_neg: Tensor, *, margin: float, negative_weight: float) -> Tensor:
    """SimpleX's cosine contrastive loss: relu(1 - s_pos) + w * mean_j relu(s_neg_j - m)."""
    positive = torch.relu(1 - s_pos)
    negative = torch.relu(s_neg - margin).mean(dim=1)
    return (positive + negative_weight * negative).mean()


def mmcl(
    s_pos: Tensor,
    s_neg: Tensor,
    *,
    margins: Sequence[float],
    margin_weights: Sequence[float],
    negative_weight: float,
    positive_weight: float,
) -> Tensor:
    """Multi-margin cosine loss: w_pos relu(1 - s_pos) + W mean_j sum_k w_k relu(s_neg_j - m_k).

    A loop over the few margins with Python scalars: no tensor is built from host data, so
    the step stays capturable as a CUDA graph.
    """
    per_negative = sum(weight * torch.relu(s_neg - margin) for margin, weight in zip(margins, margin_weights))
    positive = torch.relu(1 - s_pos)
    return (positive_weight * positive + negative_weight * per_negative.mean(dim=1)).mean()


def directau(users: Tensor, items: Tensor, *, uniformity_weight: float) -> Tensor:
    """DirectAU (Wang et al., KDD 2022): alignment + γ (uniformity(users) + uniformity(items)) / 2.

    Takes the batch's user vectors and positive-item vectors [B, d], not scores, and draws no
    negatives. With x, y the L2-normalised rows: alignment = mean_b |x_b - y_b|^2;
    uniformity(x) = log mean_{a<b} exp(-2 |x_a - x_b|^2) over the batch's distinct row pairs,
    as the authors' code (`torch.pdist`; a user or item on several rows counts each time).
    γ = `uniformity_weight`.
    """
    users, items = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
    alignment = (users - items).square().sum(-1).mean()
    return alignment + uniformity_weight * (_uniformity(users) + _uniformity(items)) / 2


def _uniformity(x: Tensor) -> Tensor:
    return torch.pdist(x).square().mul(-2).exp().mean().log()
