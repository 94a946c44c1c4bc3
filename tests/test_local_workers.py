"""`--jobs N` worker processes: a dead worker costs only its run (retried once), and no worker outlives its sweep.

Real processes throughout: the CLI in a subprocess, workers killed with SIGKILL, the main
process killed with SIGKILL. Every wait is on a file or a process, with a generous timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.plan.executors import local_worker
from mmlbench.plan.executors.base import fingerprint_of
from mmlbench.runs import resume
from mmlbench.store import claims, ids
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
FAST = ["--negatives", "5", "--batch-size", "64", "--device", "cpu", "-q", "--checkpoint-every", "0"]
TIMEOUT = 300.0  # seconds: generous, for a loaded 2-core machine


def _train_command(planted_dir: Path, results: Path, *args: str) -> list[str]:
    return ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(results), *FAST, "--jobs", "2", *args]


def _sweep_killing_bpr_workers(tmp_path: Path, planted_dir: Path, deaths: int) -> subprocess.CompletedProcess:
    """A 4-loss `--jobs 2` sweep whose bpr worker kills itself (SIGKILL) after epoch 2, `deaths` times.

    The patch is at the top of the script, which spawned workers import again as their
    __mp_main__: it acts in the workers, where the runs train.
    """
    command = _train_command(planted_dir, tmp_path / "r", "--loss", "ccl,bpr,bce,mmcl", "--epochs", "4")
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from mmlbench.runs.progress import TrainingProgress

        DEATHS = Path({str(tmp_path / "deaths")!r})
        original = TrainingProgress.epoch_done

        def epoch_done(self, log):
            original(self, log)  # after the epoch's resume checkpoint (--checkpoint-every 0)
            if self.config.loss == "bpr" and log.epoch >= 2 and len(DEATHS.read_text() if DEATHS.exists() else "") < {deaths}:
                with DEATHS.open("a") as deaths:
                    deaths.write("x")
                os.kill(os.getpid(), signal.SIGKILL)

        TrainingProgress.epoch_done = epoch_done
        if __name__ == "__main__":
            from mmlbench.cli import app
            sys.argv = ["mmlbench", *{command!r}]
            app()
        """))
    return subprocess.run([sys.executable, str(script)], env=ENV, capture_output=True, text=True, timeout=TIMEOUT)


def test_a_killed_worker_costs_only_its_run_which_is_retried_and_resumes(planted_dir, tmp_path):
    """Before: BrokenProcessPool, '4 of 4 runs failed', the queued runs never started."""
    result = _sweep_killing_bpr_workers(tmp_path, planted_dir, deaths=1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "deaths").read_text() == "x"
    runs = store.read_runs(tmp_path / "r").set_index("loss")
    assert sorted(runs.index) == ["bce", "bpr", "ccl", "mmcl"] and set(runs["status"]) == {store.STATUS_COMPLETED}
    assert runs.loc["bpr", "resumed_from_epoch"] == 2  # the retry went on from the killed run's checkpoint
    assert "4 completed" in result.stdout


def test_a_run_whose_worker_dies_twice_is_failed_and_the_others_go_on(planted_dir, tmp_path):
    result = _sweep_killing_bpr_workers(tmp_path, planted_dir, deaths=2)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the worker process running it died (2 tries): killed by SIGKILL" in result.stdout
    assert "3 completed · 1 failed" in result.stdout and "1 of 4 runs failed" in result.stderr
    runs = store.read_runs(tmp_path / "r")
    assert sorted(runs["loss"]) == ["bce", "ccl", "mmcl"] and set(runs["status"]) == {store.STATUS_COMPLETED}  # as the table says


def _gone(pid: int) -> bool:
    """The process has exited (a zombie left to an init that does not reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return state in ("Z", "X")


def _training_pids(results: Path, configs: list[RunConfig], planted_dir: Path) -> list[int]:
    """The pids of the workers training `configs`, once each has written a resume checkpoint; [] before."""
    pids = []
    for config in configs:
        config_hash = config.resolved().hash(fingerprint_of("planted", planted_dir))
        held = claims.read_claim(claims.claim_path(results, config_hash))
        if held is None or not (ids.resume_folder(results, ids.run_id(config, config_hash)) / resume.STATE_FILE).is_file():
            return []
        pids.append(held.pid)
    return pids


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups: POSIX")
def test_workers_exit_when_the_main_process_is_killed(planted_dir, tmp_path):
    """Before: the workers trained on to the end of the queue, then idled for ever."""
    results = tmp_path / "r"
    endless = ["--epochs", "100000", "--patience", "100000", "--eval-every", "100000"]
    command = [sys.executable, "-m", "mmlbench", *_train_command(planted_dir, results, "--loss", "ccl,bpr,bce", *endless)]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    configs = [RunConfig("planted", loss=loss, negatives=5, batch_size=64, epochs=100000, patience=100000, eval_every=100000) for loss in ("ccl", "bpr")]
    try:
        workers = wait_until(lambda: _training_pids(results, configs, planted_dir), "two workers training", proc)
        proc.kill()
        proc.wait()
        wait_until(lambda: all(_gone(pid) for pid in workers), f"workers {workers} to exit")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group, should a worker have survived
    runs = store.read_runs(results)
    assert sorted(runs["loss"]) == ["bpr", "ccl"] and set(runs["status"]) == {store.STATUS_INTERRUPTED}  # stopped cleanly
    assert list((store.runs_dir(results) / claims.CLAIMS_DIR).glob("*.claim")) == []


WATCHED_CHILD = """
import os, sys, threading
from mmlbench.plan.executors.local_worker import watch_parent
threading.Thread(target=watch_parent, args=(os.getppid(), 0.05), daemon=True).start()
print(os.getpid(), flush=True)
threading.Event().wait()
"""


def test_the_parent_watcher_ends_its_process_when_the_parent_dies():
    """The fallback where the kernel does not signal a parent's death (not Linux): tried here alone."""
    parent_script = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {WATCHED_CHILD!r}])\n"
    parent = subprocess.Popen([sys.executable, "-c", parent_script], env=ENV, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        child = int(parent.stdout.readline())  # printed once the watcher runs
        parent.kill()
        parent.wait()
        wait_until(lambda: _gone(child), f"the watched child {child} to exit")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)


@pytest.mark.parametrize("omp_threads", [None, "2"])
def test_each_worker_takes_its_share_of_the_cores_unless_the_user_set_omp_num_threads(planted_dir, tmp_path, omp_threads):
    env = {key: value for key, value in ENV.items() if key != "OMP_NUM_THREADS"}
    if omp_threads:
        env["OMP_NUM_THREADS"] = omp_threads
    command = _train_command(planted_dir, tmp_path / "r", "--loss", "ccl,bpr", "--epochs", "1")
    done = subprocess.run([sys.executable, "-m", "mmlbench", *command], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    rows = store.read_runs(tmp_path / "r")
    expected = _torch_threads(env) if omp_threads else local_worker.share_of_cores(2)  # 1 on 2 cores, not torch's 2
    assert list(rows["cpu_threads"]) == [expected, expected]


def _torch_threads(env: dict[str, str]) -> int:
    """The threads torch starts with in this environment (OMP_NUM_THREADS, capped by the cores)."""
    script = "import torch; print(torch.get_num_threads())"
    return int(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout)


def test_the_cores_are_shared_out_between_the_workers(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [local_worker.share_of_cores(jobs) for jobs in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_tune_workers_take_their_share_of_the_cores_too(tmp_path):
    from tune_support import make_tune_data, tune_args

    env = {key: value for key, value in ENV.items() if key != "OMP_NUM_THREADS"}
    data, results = make_tune_data(tmp_path / "d"), tmp_path / "r"
    command = tune_args(data, results, "--jobs", "2", trials=2, seeds=1)
    done = subprocess.run([sys.executable, "-m", "mmlbench", *command], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    trials = store.read_runs(results)
    trials = trials[trials["selection"] == "trial"]
    assert len(trials) >= 1 and set(trials["cpu_threads"]) == {local_worker.share_of_cores(2)}  # 1 on 2 cores, not torch's 2
