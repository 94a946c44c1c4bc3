"""Encoders: MF (ID embeddings) and SimpleX (ID embedding fused with the user's history).

Both follow the reference towers (RecBox `MF.user_tower`/`forward`, RecZoo SimpleX): the user
vector is L2-normalised first and dropout comes after it, so a training score is
<dropout(u/|u|), i/|i|> (kept coordinates scaled by 1/(1-p): it can exceed 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mmlbench.engine.scoring import unit
from mmlbench.plugins.models import get_model

if TYPE_CHECKING:
    from mmlbench.config import RunConfig

HistoryFn = Callable[[int], tuple[Tensor, Tensor]]


class MF(nn.Module):
    """Matrix factorisation: a user embedding and an item embedding, dropout on the user vector."""

    def __init__(self, n_users: int, n_items: int, dim: int, dropout: float, init_std: float) -> None:
        super().__init__()
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        self.dropout = nn.Dropout(dropout)
        for table in (self.user_embedding, self.item_embedding):
            nn.init.normal_(table.weight, std=init_std)

    def item_table(self) -> Tensor:
        return self.item_embedding.weight

    def embedding_tables(self) -> tuple[Tensor, Tensor]:
        """The user and item ID tables (what the L2 regulariser covers)."""
        return self.user_embedding.weight, self.item_embedding.weight

    def user_vectors(self, users: Tensor, normalize: bool = False) -> Tensor:
        """User vectors for a batch: normalised (for cosine scores) first, then dropout."""
        embedded = self.user_embedding(users)
        return self.dropout(unit(embedded) if normalize else embedded)


class SimpleX(nn.Module):
    """SimpleX: h_u = g * e_u + (1 - g) * V p_u, p_u aggregating the user's history items.

    The history (first `history_len` training items of each user) lives on the device as a
    padded [n_users, L] index with a mask; history items share the item embedding table.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        dropout: float,
        init_std: float,
        history: Tensor,
        history_mask: Tensor,
        aggregator: str,
        gamma: float,
    ) -> None:
        super().__init__()
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        for table in (self.user_embedding, self.item_embedding):
            nn.init.normal_(table.weight, std=init_std)
        self.fuse = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_normal_(self.fuse.weight)
        self.attention = nn.Linear(dim, dim, bias=False) if aggregator == "user-attention" else None
        if self.attention is not None:
            nn.init.xavier_normal_(self.attention.weight)
        self.dropout = nn.Dropout(dropout)
        self.gamma = gamma
        self.register_buffer("history", history, persistent=False)
        self.register_buffer("history_mask", history_mask, persistent=False)

    def item_table(self) -> Tensor:
        return self.item_embedding.weight

    def embedding_tables(self) -> tuple[Tensor, Tensor]:
        return self.user_embedding.weight, self.item_embedding.weight

    def _aggregate(self, user_vectors: Tensor, users: Tensor) -> Tensor:
        items = self.item_embedding(self.history[users])  # [B, L, d]
        mask = self.history_mask[users]  # [B, L]
        if self.attention is None:
            weights = mask.float() / mask.sum(1, keepdim=True).clamp_min(1)
        else:
            logits = (torch.tanh(self.attention(items)) * user_vectors.unsqueeze(1)).sum(-1)
            weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=1)
            weights = torch.nan_to_num(weights)  # a user with an empty history pools to zero
        return (weights.unsqueeze(-1) * items).sum(1)

    def user_vectors(self, users: Tensor, normalize: bool = False) -> Tensor:
        embedded = self.user_embedding(users)
        pooled = self.fuse(self._aggregate(embedded, users))
        fused = self.gamma * embedded + (1 - self.gamma) * pooled
        return self.dropout(unit(fused) if normalize else fused)


def build_mf(n_users: int, n_items: int, config: RunConfig, history: HistoryFn) -> nn.Module:
    return MF(n_users, n_items, config.embedding_dim, config.dropout, config.init_std)


def build_simplex(n_users: int, n_items: int, config: RunConfig, history: HistoryFn) -> nn.Module:
    index, mask = history(config.history_len)
    return SimpleX(
        n_users, n_items, config.embedding_dim, config.dropout, config.init_std,
        index, mask, config.aggregator, config.gamma,
    )


def build_model(config: RunConfig, n_users: int, n_items: int, history: HistoryFn) -> nn.Module:
    """The encoder named by config.model (registered in `mmlbench.plugins.models`);
    `history(L)` gives the padded user histories."""
    return get_model(config.model).load()(n_users, n_items, config, history)
