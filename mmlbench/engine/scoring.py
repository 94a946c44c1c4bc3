"""Scores of users against gathered items, with a hand-written backward for speed.

Cosine training scores s[b, m] = <u_b, e_idx[b,m]> / |e_idx[b,m]| for unit user vectors u
come from one gather of the item table. Autograd through `F.normalize` on a [B, N, d]
tensor spends most of a CPU step in broadcasting kernels; the closed-form gradient below
is the same function at a fraction of the cost (checked against float64 autograd in tests).
"""

from __future__ import annotations

import torch
from torch import Tensor

_EPS = 1e-24  # squared-norm floor, so a zero vector scores 0 instead of NaN


def unit(vectors: Tensor) -> Tensor:
    """Rows scaled to unit length (zero rows stay zero)."""
    return vectors * torch.rsqrt((vectors * vectors).sum(-1, keepdim=True).clamp_min(_EPS))


class GatheredCosine(torch.autograd.Function):
    """(table [I, d], users [B, d] unit, index [B, M]) -> (cosine [B, M], squared norms [B, M])."""

    @staticmethod
    def forward(ctx, table: Tensor, users: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        gathered = table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[1])
        # Squared norms of the whole table, then gathered: fewer bytes than squaring `gathered`.
        squared = (table * table).sum(-1)[index]
        inverse_norm = torch.rsqrt(squared.clamp_min(_EPS))
        cosine = torch.bmm(gathered, users.unsqueeze(-1)).squeeze(-1) * inverse_norm
        ctx.save_for_backward(gathered, users, index, inverse_norm, cosine)
        ctx.table_rows = table.shape[0]
        return cosine, squared

    @staticmethod
    def backward(ctx, grad_cosine: Tensor, grad_squared: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        gathered, users, index, inverse_norm, cosine = ctx.saved_tensors
        # d cos / d e = (u - cos * e / |e|) / |e| ;  d |e|^2 / d e = 2 e
        scaled = grad_cosine * inverse_norm
        along_item = -scaled * cosine * inverse_norm
        if grad_squared is not None:
            along_item = along_item + 2 * grad_squared
        grad_gathered = gathered * along_item.unsqueeze(-1)
        grad_gathered.addcmul_(scaled.unsqueeze(-1), users.unsqueeze(1))  # in place: no second [B, M, d]
        grad_table = gathered.new_zeros((ctx.table_rows, gathered.shape[-1]))
        grad_table.index_add_(0, index.reshape(-1), grad_gathered.reshape(-1, gathered.shape[-1]))
        grad_users = torch.bmm(scaled.unsqueeze(1), gathered).squeeze(1)
        return grad_table, grad_users, None


def gathered_scores(table: Tensor, users: Tensor, index: Tensor, cosine: bool) -> tuple[Tensor, Tensor]:
    """Scores of each user against its gathered items, and those items' squared norms.

    With cosine=True the user vectors must already be unit length.
    """
    if cosine:
        return GatheredCosine.apply(table, users, index)
    gathered = table[index]
    return (gathered * users.unsqueeze(1)).sum(-1), (gathered * gathered).sum(-1)
