"""Encoders: MF (ID embeddings), SimpleX (ID embedding fused with the user's history) and
LightGCN (ID embeddings smoothed over the training graph).

All follow the reference towers (RecBox `MF.user_tower`/`forward`, RecZoo SimpleX): the user
vector is L2-normalised first and dropout comes after it, so a training score is
<dropout(u/|u|), i/|i|> (kept coordinates scaled by 1/(1-p): it can exceed 1).

An encoder offers `item_table()`, `user_vectors(users, normalize)` and `embedding_tables()`
(the ID tables the L2 penalty covers). One whose vectors come out of a computation shared by
all users and items (LightGCN's propagation) also defines `refresh()`: `refresh(model)` is
called once at the start of every training step and of every evaluation, so that shared work
is done once there instead of once per read.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mmlbench.engine.scoring import unit

if TYPE_CHECKING:
    from mmlbench.config import RunConfig
    from mmlbench.data.dataset import InteractionData


def id_tables(n_users: int, n_items: int, dim: int, init_std: float) -> tuple[nn.Embedding, nn.Embedding]:
    """The user and item ID embeddings, initialised N(0, init_std^2) as the reference does."""
    tables = nn.Embedding(n_users, dim), nn.Embedding(n_items, dim)
    for table in tables:
        nn.init.normal_(table.weight, std=init_std)
    return tables


def dropout(vectors: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Training dropout drawn from `generator` (None: the device's default one).

    The mask is built as the CPU kernel of F.dropout builds it (bernoulli(1 - p), divided
    by 1 - p, multiplied in), so on the CPU it equals F.dropout bit for bit. F.dropout
    itself takes no generator and, on CUDA, draws through a fused kernel of its own: this
    form is what lets runs trained together (engine.lockstep) draw each from its own
    stream and still match their runs alone.
    """
    if p == 0:
        return vectors
    mask = torch.empty_like(vectors).bernoulli_(1 - p, generator=generator).div_(1 - p)
    return vectors * mask


class Dropout(nn.Dropout):
    """nn.Dropout through `dropout` (see there): the same module, drawing as a run in lockstep does."""

    def forward(self, vectors: Tensor) -> Tensor:
        return dropout(vectors, self.p) if self.training else vectors


class MF(nn.Module):
    """Matrix factorisation: a user embedding and an item embedding, dropout on the user vector."""

    def __init__(self, n_users: int, n_items: int, dim: int, dropout: float, init_std: float) -> None:
        super().__init__()
        self.user_embedding, self.item_embedding = id_tables(n_users, n_items, dim, init_std)
        self.dropout = Dropout(dropout)

    def item_table(self) -> Tensor:
        return self.item_embedding.weight

    def embedding_tables(self) -> tuple[Tensor, Tensor]:
        """The user and item ID tables (what the L2 regulariser covers)."""
        return self.user_embedding.weight, self.item_embedding.weight

    def user_vectors(self, users: Tensor, normalize: bool = False) -> Tensor:
        """User vectors for a batch: normalised (for cosine scores) first, then dropout."""
        embedded = self.user_embedding(users)
        return self.dropout(unit(embedded) if normalize else embedded)


_ATTENTION_EPS = 1e-9  # the reference's masked_softmax


class SimpleX(nn.Module):
    """SimpleX: h_u = g * e_u + (1 - g) * V p_u, p_u aggregating the user's history items.

    The history (first `history_len` training items of each user) lives on the device as a
    padded [n_users, L] index with a mask; history items share the item embedding table.
    Aggregators: `mean`; `user-attention`, the reference's (`reference_attention`: a key with
    a bias, padded slots in the softmax's denominator); `user-attention-masked`, a bias-free
    key and a softmax over the history's items only (mmlbench's form before the reference's).
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
        self.user_embedding, self.item_embedding = id_tables(n_users, n_items, dim, init_std)
        self.fuse = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_normal_(self.fuse.weight)
        self.aggregator = aggregator
        self.attention = nn.Linear(dim, dim, bias=aggregator == "user-attention") if aggregator != "mean" else None
        if self.attention is not None:  # as RecBox's init_weights: Xavier-normal weight, zero bias
            nn.init.xavier_normal_(self.attention.weight)
            if self.attention.bias is not None:
                nn.init.zeros_(self.attention.bias)
        self.dropout = Dropout(dropout)
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
        if self.aggregator == "user-attention":
            return reference_attention(torch.tanh(self.attention(items)), user_vectors, items, mask)
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


def reference_attention(keys: Tensor, user_vectors: Tensor, items: Tensor, mask: Tensor) -> Tensor:
    """The user attention of RecZoo's SimpleX (`BehaviorAggregator.user_attention`), [B, d].

    Logits are keys . e_u; padded slots get logit 0, not -inf, and the weights are
    exp(x) / (sum over all L slots of exp(x) + 1e-9), so each padded slot adds exp(0) = 1 to
    the denominator (the reference's `masked_softmax`, which thereby never divides by zero).
    The reference's padded slots hold a zero embedding; ours index item 0, hence the mask on
    the pooled vectors. No max is subtracted before exp, as in the reference.
    """
    logits = torch.bmm(keys, user_vectors.unsqueeze(-1)).squeeze(-1).masked_fill(~mask, 0.0)
    exp = torch.exp(logits)
    weights = exp / (exp.sum(dim=1, keepdim=True) + _ATTENTION_EPS)
    return torch.bmm((weights * mask).unsqueeze(1), items).squeeze(1)


class LightGCN(nn.Module):
    """LightGCN (He et al., SIGIR 2020): E^(k) = A_hat E^(k-1), vectors = mean of E^(0..L).

    E^(0) stacks the user and item ID tables; A_hat = D^-1/2 A D^-1/2 is the normalised
    adjacency of the user-item graph of the training pairs, a sparse CSR buffer built once on
    the device. No feature transforms, no nonlinearity. Every training step propagates the
    whole graph (that is LightGCN's cost); the L2 penalty covers E^(0) only, as in LightGCN.
    Dropout, as in MF, on the normalised user vector (LightGCN itself uses none: --dropout 0).
    """

    def __init__(
        self, n_users: int, n_items: int, dim: int, dropout: float, init_std: float, adjacency: Tensor, layers: int
    ) -> None:
        super().__init__()
        self.user_embedding, self.item_embedding = id_tables(n_users, n_items, dim, init_std)
        self.dropout = Dropout(dropout)
        self.layers = layers
        self.register_buffer("adjacency", adjacency, persistent=False)
        self._propagated: tuple[Tensor, Tensor] | None = None

    def refresh(self) -> None:
        """Forget the propagated tables: the weights changed (or the grad mode did)."""
        self._propagated = None

    def propagated(self) -> tuple[Tensor, Tensor]:
        """(user table, item table) after propagation, computed once per refresh().

        While training, the tables are built with autograd on even when first read under
        no_grad (the hard sampler scores candidates that way before the step's forward), so
        the step reuses them instead of propagating twice.
        """
        stale = self._propagated is not None and torch.is_grad_enabled() and not self._propagated[0].requires_grad
        if self._propagated is None or stale:
            with torch.set_grad_enabled(self.training or torch.is_grad_enabled()):
                layer = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
                total = layer
                for _ in range(self.layers):
                    layer = SymmetricSparseProduct.apply(self.adjacency, layer)
                    total = total + layer
                sizes = [self.user_embedding.num_embeddings, self.item_embedding.num_embeddings]
                self._propagated = torch.split(total / (self.layers + 1), sizes)
        return self._propagated

    def item_table(self) -> Tensor:
        return self.propagated()[1]

    def embedding_tables(self) -> tuple[Tensor, Tensor]:
        """The layer-0 ID tables (what the L2 regulariser covers)."""
        return self.user_embedding.weight, self.item_embedding.weight

    def user_vectors(self, users: Tensor, normalize: bool = False) -> Tensor:
        propagated = self.propagated()[0][users]
        return self.dropout(unit(propagated) if normalize else propagated)


class SymmetricSparseProduct(torch.autograd.Function):
    """(A [n, n] sparse and symmetric, X [n, d]) -> A X, with the backward A^T G = A G.

    torch's own backward for a CSR product transposes A on every call (3x the forward's
    time on the CPU at Gowalla scale); symmetry makes the transpose unnecessary.
    """

    @staticmethod
    def forward(ctx, adjacency: Tensor, dense: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adjacency = adjacency
        return adjacency @ dense

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:  # type: ignore[override]
        return None, ctx.adjacency @ grad


def normalized_adjacency(train_keys: Tensor, n_users: int, n_items: int) -> Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph (users first, then items) as a sparse CSR tensor.

    `train_keys` are user * n_items + item of the training pairs; a repeated pair is one edge.
    The entry of edge (u, i) is 1 / sqrt(deg(u) deg(i)); nodes without edges have empty rows.
    """
    keys = torch.unique(train_keys)
    users, items = keys // n_items, keys % n_items
    user_degree = torch.bincount(users, minlength=n_users).float()
    item_degree = torch.bincount(items, minlength=n_items).float()
    weights = torch.rsqrt(user_degree[users] * item_degree[items])
    rows, cols = torch.cat([users, items + n_users]), torch.cat([items + n_users, users])
    size = n_users + n_items
    with warnings.catch_warnings():  # "sparse CSR support is in beta": it is what we use, on purpose
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.cat([weights, weights]), (size, size))
        return coo.coalesce().to_sparse_csr()


def refresh(model: nn.Module) -> None:
    """Let the model redo its shared computation (see the module docstring); most have none."""
    hook = getattr(model, "refresh", None)
    if hook is not None:
        hook()


def build_mf(config: RunConfig, data: InteractionData) -> nn.Module:
    return MF(data.n_users, data.n_items, config.embedding_dim, config.dropout, config.init_std)


def build_simplex(config: RunConfig, data: InteractionData) -> nn.Module:
    index, mask = data.history(config.history_len)
    return SimpleX(
        data.n_users, data.n_items, config.embedding_dim, config.dropout, config.init_std,
        index, mask, config.aggregator, config.gamma,
    )


def build_lightgcn(config: RunConfig, data: InteractionData) -> nn.Module:
    adjacency = normalized_adjacency(data.splits["train"].keys, data.n_users, data.n_items)
    return LightGCN(
        data.n_users, data.n_items, config.embedding_dim, config.dropout, config.init_std, adjacency, config.layers
    )
