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
from mmlbench.store.listing import find_run


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
    assert not store.runs_dir(tmp_path).exists()  # nor the folder made for it


def test_exception_while_replacing_keeps_the_old_run(tmp_path, monkeypatch):
    store.write_run(tmp_path, _record(recall=0.5))
    monkeypatch.setattr("torch.save", lambda *a, **k: (_ for _ in ()).throw(OSError("full")))
    with pytest.raises(OSError):
        store.write_run(tmp_path, _record(recall=0.9))
    assert store.read_runs(tmp_path)["recall@20"].tolist() == [0.5]


def test_a_run_folder_sent_as_files_is_written_back_whole(tmp_path):
    """--ship-results: a worker's run folder travels as files and lands atomically in another store."""
    sent = store.write_run(tmp_path / "worker", _record(recall=0.7))
    files = store.run_files(sent)
    assert sorted(files) == sorted([store.CHECKPOINT_FILE, store.CURVE_FILE, store.RUN_FILE])
    received = store.write_run_files(tmp_path / "driver", "r1", files)
    assert received == store.runs_dir(tmp_path / "driver") / "r1"
    assert {p.name: p.read_bytes() for p in received.iterdir()} == files
    assert store.read_runs(tmp_path / "driver")["recall@20"].tolist() == [0.7]


@pytest.mark.parametrize(("run_id", "name"), [("../r1", "run.parquet"), ("r1", "../run.parquet"), ("r1", ".hidden")])
def test_received_run_files_must_have_plain_names(tmp_path, run_id, name):
    with pytest.raises(store.MMLBenchError, match="not plain names"):
        store.write_run_files(tmp_path, run_id, {name: b"x"})
    assert not tmp_path.joinpath("runs").exists() or not any(tmp_path.joinpath("runs").iterdir())


def test_an_unwritable_store_refuses_received_files_in_one_line(tmp_path):
    (tmp_path / "runs").write_text("a file where the runs folder should be")
    with pytest.raises(store.StoreUnwritable, match="cannot write r1 to"):
        store.write_run_files(tmp_path, "r1", {store.RUN_FILE: b"x"})


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


def test_find_run_by_path_id_or_prefix_and_errors(tmp_path):
    store.write_run(tmp_path, _record("gowalla-mf-ccl-a"))
    store.write_run(tmp_path, _record("gowalla-mf-ccl-b"))
    assert find_run(tmp_path, "gowalla-mf-ccl-a").name == "gowalla-mf-ccl-a"
    assert find_run(tmp_path, str(store.runs_dir(tmp_path) / "gowalla-mf-ccl-b")).name == "gowalla-mf-ccl-b"
    with pytest.raises(store.MMLBenchError, match="starts 2 run ids"):
        find_run(tmp_path, "gowalla-mf")
    with pytest.raises(store.MMLBenchError, match="unknown run 'yelp'"):
        find_run(tmp_path, "yelp")
