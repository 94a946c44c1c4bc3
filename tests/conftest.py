"""Shared fixtures: one CPU thread (tiny tensors gain nothing from more), planted data."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
import torch

from mmlbench.data.download import MIRROR_ENV
from mmlbench.paths import DATA_DIR_ENV
from synthetic import make_planted

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
# A local Ray instance on the loopback interface, without an auth token (tests/test_ray_executor.py's docstring).
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


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


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance on the loopback interface with 2 CPUs; its workers import this checkout."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in RAY_ENV.items():
            patch.setenv(name, value)
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        sigterm = signal.getsignal(signal.SIGTERM)
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        signal.signal(signal.SIGTERM, sigterm)  # ray.init makes SIGTERM exit the test process
        try:
            yield
        finally:
            ray.shutdown()
