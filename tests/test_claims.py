"""Claims: a run being trained is claimed in the store, so a second sweep skips it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.config import RunConfig
from mmlbench.data.processed import read_meta
from mmlbench.paths import processed_dir
from mmlbench.plan.sweep import CLAIMED, plan, run_sweep
from mmlbench.runs.options import TrainOptions
from mmlbench.store import claims

runner = CliRunner()
FAST = dict(negatives=5, batch_size=64, lr=0.01, epochs=2)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: no process has this pid any more
    return child.pid


def _plant_claim(results, config_hash, *, pid, host=None):
    path = claims.claim_path(results, config_hash)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid, "since": "2026-01-01T00:00:00+00:00"}))
    return path


def _hash(config: RunConfig, planted_dir) -> str:
    return config.resolved().hash(read_meta(processed_dir(config.dataset, planted_dir))["fingerprint"])


def _options(planted_dir, tmp_path) -> TrainOptions:
    return TrainOptions(device="cpu", data_dir=planted_dir, results_dir=tmp_path / "r", quiet=True)


def test_claim_is_exclusive_and_released(tmp_path):
    claim = claims.claim_run(tmp_path, "abc")
    assert (claim.host, claim.pid) == (socket.gethostname(), os.getpid())
    assert json.loads(claim.path.read_text())["pid"] == os.getpid()
    with pytest.raises(claims.ClaimedElsewhere, match=f"pid {os.getpid()}"):
        claims.claim_run(tmp_path, "abc")  # this process is alive, so its claim holds
    claims.release_run(claim)
    assert not claim.path.exists()
    with pytest.raises(RuntimeError), claims.claimed(tmp_path, "abc"):
        raise RuntimeError("the run failed")
    assert not claims.claim_path(tmp_path, "abc").exists()  # released however the run ended


def test_stale_claim_is_taken_over_but_another_hosts_claim_holds(tmp_path):
    _plant_claim(tmp_path, "stale", pid=_dead_pid())
    assert claims.claim_run(tmp_path, "stale").pid == os.getpid()
    _plant_claim(tmp_path, "remote", pid=_dead_pid(), host="another-host")
    with pytest.raises(claims.ClaimedElsewhere, match="on another-host"):
        claims.claim_run(tmp_path, "remote")  # its pid cannot be checked from here


def test_a_held_claim_makes_a_second_sweep_skip_the_cell(planted_dir, tmp_path):
    held, free = (RunConfig("planted", loss=loss, **FAST).resolved() for loss in ("ccl", "bpr"))
    claim = _plant_claim(tmp_path / "r", _hash(held, planted_dir), pid=os.getpid())  # a live process
    options = _options(planted_dir, tmp_path)
    assert [state for *_, state in plan([held, free], options)] == [CLAIMED, "to run"]
    entries = run_sweep([held, free], options)
    assert [e.status for e in entries] == [CLAIMED, store.STATUS_COMPLETED]
    assert f"pid {os.getpid()}" in entries[0].error
    assert store.read_runs(tmp_path / "r")["loss"].tolist() == ["bpr"]
    assert claim.exists()  # someone else's claim is left alone


def _train_cli(planted_dir, tmp_path, losses: str):
    return runner.invoke(app, [
        "train", "--dataset", "planted", "--loss", losses, "--negatives", "5", "--batch-size", "64",
        "--lr", "0.01", "--epochs", "2", "--device", "cpu", "-q",
        "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"),
    ])


def test_sweep_table_says_claimed_elsewhere_and_exits_0(planted_dir, tmp_path):
    held = RunConfig("planted", loss="ccl", **FAST)
    _plant_claim(tmp_path / "r", _hash(held, planted_dir), pid=os.getpid())
    result = _train_cli(planted_dir, tmp_path, "ccl,bpr")
    assert result.exit_code == 0, result.output
    assert "claimed elsewhere" in result.stdout and "1 completed" in result.stdout


def test_a_stale_claim_is_trained_and_every_claim_is_released(planted_dir, tmp_path):
    config = RunConfig("planted", **FAST)
    _plant_claim(tmp_path / "r", _hash(config, planted_dir), pid=_dead_pid())  # a killed sweep's claim
    entries = run_sweep([config], _options(planted_dir, tmp_path))
    assert [e.status for e in entries] == [store.STATUS_COMPLETED]
    assert list((store.runs_dir(tmp_path / "r") / claims.CLAIMS_DIR).iterdir()) == []


def test_a_failed_run_releases_its_claim(planted_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("mmlbench.engine.step.TrainStep.run_epoch", lambda self, on_batch=None: (float("nan"), 0.0))
    entries = run_sweep([RunConfig("planted", **FAST)], _options(planted_dir, tmp_path))
    assert entries[0].status == store.STATUS_FAILED and "diverged" in entries[0].error
    assert list((store.runs_dir(tmp_path / "r") / claims.CLAIMS_DIR).iterdir()) == []


def test_a_single_claimed_run_is_one_line_and_not_a_failure(planted_dir, tmp_path):
    held = RunConfig("planted", loss="ccl", **FAST)
    _plant_claim(tmp_path / "r", _hash(held, planted_dir), pid=os.getpid())
    result = _train_cli(planted_dir, tmp_path, "ccl")
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"being trained by pid {os.getpid()}" in result.stderr


def _write_claim_file(path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)


@pytest.mark.parametrize(
    "content, why",
    [("", "empty"), ('{"host": "x", "pi', "not a claim's JSON"), ('{"pid": 12}', "no host"), (None, "a folder")],
    ids=["empty", "garbled", "no-host", "folder"],
)
def test_a_damaged_claim_is_reported_with_its_path_and_taken_over(planted_dir, tmp_path, content, why):
    config = RunConfig("planted", **FAST)
    path = claims.claim_path(tmp_path / "r", _hash(config, planted_dir))
    _write_claim_file(path, content)
    result = _train_cli(planted_dir, tmp_path, "ccl")
    assert result.exit_code == 0, result.output
    assert f"warning: the claim {path} cannot be read ({why}); treating it as stale" in result.stderr
    assert store.read_runs(tmp_path / "r")["status"].tolist() == [store.STATUS_COMPLETED]
    assert list(path.parent.iterdir()) == []  # taken over, then released


def _start_of(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


@pytest.fixture
def live_child():
    """A live process that is not training anything: (its pid, its start time)."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        yield child.pid, _start_of(child.pid)
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process start times come from /proc")
def test_a_claim_naming_a_reused_pid_is_stale_but_the_process_that_wrote_it_holds_it(tmp_path, live_child):
    pid, started = live_child
    path = claims.claim_path(tmp_path, "reused")
    fields = {"host": socket.gethostname(), "pid": pid, "since": "2026-01-01T00:00:00+00:00"}
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**fields, "pid_start": started - 1}))  # written by an earlier process with that pid
    assert claims.live_claim(tmp_path, "reused") is None
    assert claims.claim_run(tmp_path, "reused").pid == os.getpid()

    path = claims.claim_path(tmp_path, "held")
    path.write_text(json.dumps({**fields, "pid_start": started}))
    with pytest.raises(claims.ClaimedElsewhere, match=f"pid {pid}"):
        claims.claim_run(tmp_path, "held")
    path.write_text(json.dumps(fields))  # written before start times were recorded: matched by pid only
    with pytest.raises(claims.ClaimedElsewhere, match=f"pid {pid}"):
        claims.claim_run(tmp_path, "held")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process start times come from /proc")
def test_a_claim_records_its_process_start_time_and_what_it_trains(tmp_path):
    claim = claims.claim_run(tmp_path, "abc", {"run_id": "planted-mf-ccl-n5-s1-abc"})
    saved = json.loads(claim.path.read_text())
    assert saved["pid_start"] == _start_of(os.getpid()) and saved["run"] == {"run_id": "planted-mf-ccl-n5-s1-abc"}
    assert claims.read_claim(claim.path) == claim
