"""The run store: a crash mid-write never leaves a readable (half-written) run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from mmlbench import store


def _record(run_id: str = "r1", recall: float = 0.5) -> store.RunRecord:
    row = {"run_id": run_id, "status": store.STATUS_COMPLETED, "config_hash": run_id * 4, "recall@20": recall}
    return store.RunRecord(row, curve=pd.DataFrame({"epoch": [1], "loss": [0.3]}), per_user=None, checkpoint={"state_dict": {}})


def test_round_trip(tmp_path):
    store.write_run(tmp_path, _record())
    runs = store.read_runs(tmp_path)
    assert runs[["run_id", "recall@20", "schema_version"]].values.tolist() == [["r1", 0.5, store.SCHEMA_VERSION]]
    assert store.find_completed(tmp_path, "r1r1r1r1") is not None


def test_exception_mid_write_leaves_nothing(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr("torch.save", explode)  # run.parquet and curve.parquet are already written
    with pytest.raises(OSError):
        store.write_run(tmp_path, _record())
    assert store.read_runs(tmp_path).empty
    assert list(store.runs_dir(tmp_path).iterdir()) == []


def test_exception_while_replacing_keeps_the_old_run(tmp_path, monkeypatch):
    store.write_run(tmp_path, _record(recall=0.5))
    monkeypatch.setattr("torch.save", lambda *a, **k: (_ for _ in ()).throw(OSError("full")))
    with pytest.raises(OSError):
        store.write_run(tmp_path, _record(recall=0.9))
    assert store.read_runs(tmp_path)["recall@20"].tolist() == [0.5]


def test_killed_process_leaves_no_readable_run(tmp_path):
    # The child is killed (os._exit, no cleanup) in the middle of writing the checkpoint.
    script = textwrap.dedent(
        f"""
        import os, torch
        import pandas as pd
        from mmlbench import store
        torch.save = lambda *a, **k: os._exit(9)
        row = {{"run_id": "killed", "status": "completed", "config_hash": "x"}}
        store.write_run({str(tmp_path)!r}, store.RunRecord(row, pd.DataFrame({{"epoch": [1]}}), None, {{"a": 1}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=False)
    assert proc.returncode == 9
    leftovers = list(store.runs_dir(tmp_path).iterdir())
    assert leftovers and all(p.name.startswith(".") for p in leftovers)  # only a hidden temp folder
    assert store.read_runs(tmp_path).empty


def test_resolve_run_by_prefix_and_errors(tmp_path):
    store.write_run(tmp_path, _record("gowalla-mf-ccl-a"))
    store.write_run(tmp_path, _record("gowalla-mf-ccl-b"))
    assert store.resolve_run(tmp_path, "gowalla-mf-ccl-a").name == "gowalla-mf-ccl-a"
    with pytest.raises(store.MMLBenchError, match="matches 2 runs"):
        store.resolve_run(tmp_path, "gowalla-mf")
    with pytest.raises(store.MMLBenchError, match="no run"):
        store.resolve_run(tmp_path, "yelp")
