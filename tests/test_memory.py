"""The pre-flight memory check: a run that cannot fit is refused before anything is written."""

from __future__ import annotations

import pytest
import torch

from mmlbench.config import RunConfig
from mmlbench.errors import MMLBenchError
from mmlbench.runs import preflight


def test_estimate_grows_with_every_size_option():
    base = preflight.training_bytes(RunConfig("d").resolved(), 1000, 500)
    for change in ({"negatives": 1000}, {"batch_size": 4096}, {"embedding_dim": 512}):
        assert preflight.training_bytes(RunConfig("d", **change).resolved(), 1000, 500) > base
    assert preflight.training_bytes(RunConfig("d").resolved(), 10**6, 500) > base  # the tables
    assert preflight.training_bytes(RunConfig("d", model="simplex").resolved(), 1000, 500) > base  # the histories


def test_estimate_covers_the_gathered_rows():
    config = RunConfig("d", negatives=100, batch_size=512, embedding_dim=64).resolved()
    gathered = 512 * 101 * 64 * 4  # one float32 copy of [B, N+1, d]
    assert preflight.training_bytes(config, 10, 10) >= 2 * gathered


def test_machine_memory_is_known():
    assert preflight.device_bytes(torch.device("cpu")) > 1 << 20


def test_check_fits_names_the_size_options(monkeypatch):
    monkeypatch.setattr(preflight, "device_bytes", lambda device: 1 << 30)
    config = RunConfig("d", negatives=100_000).resolved()
    with pytest.raises(MMLBenchError, match="--negatives 100000, --batch-size 512 and --embedding-dim 64 need about"):
        preflight.check_fits(config, 100, 100, torch.device("cpu"))
    preflight.check_fits(RunConfig("d").resolved(), 100, 100, torch.device("cpu"))  # the default fits in 1 GiB
