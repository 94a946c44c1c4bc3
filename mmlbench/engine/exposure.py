"""Beyond-accuracy metrics from the evaluator's top-K lists, in the same pass (no second scoring).

Popularity is the training data's: an item's popularity is its share of the training
interactions, count_i / (all training pairs). Per user, over the items of the user's top-K
list (a user with fewer unseen items than K has a shorter list; masked items never count):
- arp@K: mean popularity of the listed items (average recommendation popularity);
- tail@K: share of the listed items in the long tail, i.e. outside the head: the
  floor(head_fraction * I + 1/2) items with the most training interactions (ties at the
  cut go to the lower item id, so the head has exactly that many items);
- novelty@K: mean self-information -log2 popularity; an item with no training interaction
  counts as having one (else its novelty would be infinite).
Over all the users' lists together:
- coverage@K: share of the I catalogue items that appear in at least one top-K list;
- gini@K: Gini index of the items' exposure counts (how many lists hold each item, items
  never listed counting 0): sum_i (2i - I - 1) x_i / (I sum x) over the counts x sorted
  ascending, i = 1..I; 0 when every item is listed equally often, (I - 1) / I when one item
  takes all the exposure.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PER_USER = ("arp", "tail", "novelty")


def popularity_share(item_counts: Tensor) -> Tensor:
    """count_i / sum(count), float64 [I]."""
    counts = item_counts.double()
    return counts / counts.sum()


def head_items(item_counts: Tensor, head_fraction: float) -> Tensor:
    """A bool mask [I] of the floor(head_fraction * I + 1/2) most popular items, ties to the lower id."""
    size = math.floor(head_fraction * item_counts.numel() + 0.5)
    order = torch.sort(item_counts, descending=True, stable=True).indices  # stable: equal counts by id
    head = torch.zeros(item_counts.numel(), dtype=torch.bool, device=item_counts.device)
    head[order[:size]] = True
    return head


class Exposure:
    """Accumulates the top-K lists of an evaluation, batch by batch, for the metrics above."""

    def __init__(self, item_counts: Tensor, head_fraction: float, ks: tuple[int, ...], k_max: int) -> None:
        share = popularity_share(item_counts)
        total = item_counts.double().sum()
        self.per_item = {
            "arp": share,
            "tail": (~head_items(item_counts, head_fraction)).double(),
            "novelty": -torch.log2(item_counts.double().clamp_min(1) / total),
        }
        self.ks, self.k_max = ks, k_max
        self.exposure = torch.zeros((len(ks), item_counts.numel()), dtype=torch.float64, device=item_counts.device)

    def add(self, top: Tensor, listed: Tensor) -> dict[str, Tensor]:
        """Take one batch's lists (top [B, K_max] items, listed [B, K_max]: not masked); returns
        its per-user metrics {'arp@10': [B], ...}."""
        weight = listed.double()
        length = torch.cumsum(weight, 1)
        out: dict[str, Tensor] = {}
        for name, values in self.per_item.items():
            cumulative = torch.cumsum(values[top] * weight, 1)
            for k in self.ks:
                column = min(k, self.k_max) - 1
                out[f"{name}@{k}"] = cumulative[:, column] / length[:, column]
        for row, k in enumerate(self.ks):
            cut = min(k, self.k_max)
            self.exposure[row].index_add_(0, top[:, :cut].reshape(-1), weight[:, :cut].reshape(-1))
        return out

    def totals(self) -> dict[str, float]:
        """coverage@K and gini@K over every list added."""
        n_items = self.exposure.shape[1]
        ranks = torch.arange(1, n_items + 1, dtype=torch.float64, device=self.exposure.device)
        out = {}
        for row, k in enumerate(self.ks):
            counts = self.exposure[row]
            ascending = torch.sort(counts).values
            out[f"coverage@{k}"] = float((counts > 0).double().mean())
            out[f"gini@{k}"] = float(((2 * ranks - n_items - 1) * ascending).sum() / (n_items * counts.sum()))
        return out
