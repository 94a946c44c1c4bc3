"""Per-user hold-out helpers, worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mmlbench.data.splits import SplitSpec, holdout_sizes, parse_split, top_per_user
from mmlbench.errors import MMLBenchError


@pytest.mark.parametrize(
    ("text", "spec", "canonical"),
    [
        ("random:0.2", SplitSpec("random", 0.2), "random:0.2"),
        (" temporal:0.25 ", SplitSpec("temporal", 0.25), "temporal:0.25"),
        ("leave-one-out", SplitSpec("leave-one-out"), "leave-one-out"),
    ],
)
def test_parse_split(text, spec, canonical):
    assert parse_split(text) == spec
    assert str(parse_split(text)) == canonical


@pytest.mark.parametrize("text", ["leave-one-out:0.1", "temporal", "random:nan", "random:-0.1", ""])
def test_parse_split_rejects(text):
    with pytest.raises(MMLBenchError, match="--split"):
        parse_split(text)


def test_holdout_sizes_round_half_up_and_keep_one_row():
    rows = np.array([0, 1, 2, 3, 4, 5, 10])
    assert holdout_sizes(rows, 0.5).tolist() == [0, 0, 1, 2, 2, 3, 5]
    assert holdout_sizes(rows, 0.99).tolist() == [0, 0, 1, 2, 3, 4, 9]


def test_top_per_user_takes_highest_priority_and_breaks_ties_with_the_next_key():
    users = np.array([0, 0, 0, 1, 1])
    times = np.array([3, 1, 2, 5, 5])
    items = np.array([0, 1, 2, 0, 1])
    mask = top_per_user(users, np.array([2, 1]), times, items)
    assert mask.tolist() == [True, False, True, False, True]
