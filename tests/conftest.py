"""Shared fixtures: one CPU thread (tiny tensors gain nothing from more), planted data."""

from __future__ import annotations

import pytest
import torch

from synthetic import make_planted

torch.set_num_threads(1)


@pytest.fixture
def planted_dir(tmp_path):
    """A data home holding the processed 'planted' dataset (120 users, 60 items, 4 clusters)."""
    data_dir = tmp_path / "datasets"
    make_planted(data_dir)
    return data_dir
