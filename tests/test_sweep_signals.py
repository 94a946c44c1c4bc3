"""Ctrl-C and SIGTERM stop a whole sweep, in one process or with worker processes (a real subprocess)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.engine.trainer import Trainer
from mmlbench.store import claims
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
# Runs that never finish on their own: only the signal can end them.
ENDLESS = ["--negatives", "5", "--batch-size", "64", "--epochs", "100000", "--patience", "100000", "--device", "cpu", "-q"]
TIMEOUT = 600.0  # seconds: generous, for a loaded 2-core machine


@pytest.mark.parametrize(
    ("jobs", "signum", "whole_group"),
    [
        (2, signal.SIGINT, True),  # Ctrl-C at a terminal: every process of the group gets it
        (2, signal.SIGTERM, False),  # `kill PID`: only the main process gets it
        (1, signal.SIGTERM, False),
    ],
)
def test_a_signal_stops_the_whole_sweep(planted_dir, tmp_path, jobs, signum, whole_group):
    results = tmp_path / "r"
    claimed = store.runs_dir(results) / claims.CLAIMS_DIR
    command = [
        sys.executable, "-m", "mmlbench", "train", "--dataset", "planted", "--loss", "ccl,bpr", "--seed", "1,2",
        "--jobs", str(jobs), "--data-dir", str(planted_dir), "--results-dir", str(results), *ENDLESS,
        "--checkpoint-every", "0",  # a resume checkpoint after every epoch: the sign that a run is in its epochs
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        # Every worker is training: claimed, and past its first epoch (a claim alone is taken before the data loads).
        wait_until(
            lambda: len(list(claimed.glob("*.claim"))) == jobs == len(list(store.runs_dir(results).glob(".*.resume/state.pt"))),
            "every worker's first resume checkpoint", proc,
        )
        (os.killpg if whole_group else os.kill)(proc.pid, signum)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:  # never leave an endless sweep behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # 130, or killed by SIGINT, which a shell also reports as 130: under `python -m`, CPython ends
    # that way once a KeyboardInterrupt has passed through exec() of a string (dataclasses do that,
    # e.g. in torch's lazy imports when the signal lands before the first epoch), even if caught.
    assert proc.returncode in (130, -signal.SIGINT), stderr
    assert "sweep: 4 runs" in stdout  # the summary is printed
    assert f"{4 - jobs} cancelled · {jobs} interrupted" in stdout
    assert "interrupted:" in stderr and "Traceback" not in stderr
    runs = store.read_runs(results)
    assert runs["status"].tolist() == [store.STATUS_INTERRUPTED] * jobs  # stored as interrupted; queued runs never ran
    assert list(claimed.glob("*.claim")) == []  # the claims were released


def test_ctrl_c_in_a_sequential_sweep_stops_it_and_prints_the_summary(planted_dir, tmp_path, monkeypatch):
    def interrupted(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    result = CliRunner().invoke(app, [
        "train", "--dataset", "planted", "--loss", "ccl,bpr,bce", "--data-dir", str(planted_dir),
        "--results-dir", str(tmp_path / "r"), *ENDLESS,
    ])
    assert result.exit_code == 130, result.output
    assert "sweep: 3 runs" in result.stdout and "2 cancelled · 1 interrupted" in result.stdout
    assert "interrupted: 1 run(s) stopped, 2 not started" in result.stderr
    assert store.read_runs(tmp_path / "r")["status"].tolist() == [store.STATUS_INTERRUPTED]
