"""Negative samplers: ranges, exclusion of positives, popularity proportions."""

from __future__ import annotations

import torch

from mmlbench.engine.sampling import make_sampler


def _sampler(name, keys, counts, n_items=10, negatives=400, alpha=1.0):
    return make_sampler(name, n_items=n_items, negatives=negatives, positive_keys=keys, item_counts=counts, params={"popularity_alpha": alpha})


def test_uniform_covers_every_item_with_replacement():
    torch.manual_seed(0)
    drawn = _sampler("uniform", torch.tensor([0]), torch.ones(10))(torch.arange(5))
    assert drawn.shape == (5, 400)
    assert set(drawn.flatten().tolist()) == set(range(10))


def test_uniform_exclude_positives_never_returns_a_positive():
    torch.manual_seed(0)
    n_items = 10
    positives = {0: [1, 2, 3, 4, 5, 6, 7, 8], 1: [0], 2: []}  # user 0 has only items 0 and 9 left
    keys = torch.tensor(sorted(u * n_items + i for u, items in positives.items() for i in items))
    drawn = _sampler("uniform-exclude-pos", keys, torch.ones(n_items))(torch.tensor([0, 1, 2, 0]))
    assert set(drawn[0].tolist()) == {0, 9} and set(drawn[3].tolist()) == {0, 9}
    assert 0 not in drawn[1].tolist()
    assert len(set(drawn[2].tolist())) == n_items


def test_popularity_follows_counts_to_the_power_alpha():
    torch.manual_seed(0)
    counts = torch.tensor([1.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    drawn = _sampler("popularity", torch.tensor([0]), counts, negatives=20000, alpha=0.5)(torch.arange(1)).flatten()
    share_of_item2 = (drawn == 2).float().mean().item()
    assert set(drawn.tolist()) == {0, 2}
    assert abs(share_of_item2 - 2 / 3) < 0.02  # sqrt(4) / (sqrt(1) + sqrt(4))
