"""Shared fixtures: one CPU thread (tiny tensors gain nothing from more), planted data."""

from __future__ import annotations

import pytest
import torch

from mmlbench.data.download import MIRROR_ENV
from mmlbench.paths import DATA_DIR_ENV
from synthetic import make_planted

torch.set_num_threads(1)


@pytest.fixture
def planted_dir(tmp_path):
    """A data home holding the processed 'planted' dataset (120 users, 60 items, 4 clusters)."""
    data_dir = tmp_path / "datasets"
    make_planted(data_dir)
    return data_dir


@pytest.fixture
def clean_env(monkeypatch):
    """No $MMLBENCH_MIRROR or $MMLBENCH_DATA_DIR from the environment the tests run in."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
