"""`tune` across processes: kill -9 then the same command, two tunes at once on one store, `--jobs 2`
worker processes, and Ray tasks on a local instance. Waits are on processes and files, never on sleeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.engine.trainer import Trainer
from tune_support import FAST, budget_order, document, journal_trials, make_tune_data, no_live_claims, tune_args

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
# Runs of this process and its children compute alike: one thread.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), "OMP_NUM_THREADS": "1"}


def _script(body: str, args: list[str]) -> list[str]:
    """python -c: `body` (patches), then `mmlbench ARGS` in this same process."""
    code = textwrap.dedent(body) + textwrap.dedent(f"""
        import sys, torch
        torch.set_num_threads(1)
        from mmlbench.cli import app
        sys.argv = ["mmlbench", *{args!r}]
        app()
    """)
    return [sys.executable, "-c", code]


@pytest.mark.parametrize(
    "kill, code, left", [("SIGKILL", -9, ["COMPLETE", "RUNNING"]), ("SIGTERM", 130, ["COMPLETE", "FAIL", "WAITING"])]
)
def test_a_killed_tune_then_the_same_command_finishes_the_study_without_training_a_finished_trial_again(tmp_path, kill, code, left):
    """kill -9 leaves trial 1 in flight (given back by the next start); SIGTERM stops as Ctrl-C does (exit
    130, given back at once). Either way the same command resumes it from its epoch 2 and trains nothing else again."""
    data, results = make_tune_data(tmp_path / "d"), tmp_path / "r"
    args = tune_args(data, results, "--checkpoint-every", "0", trials=3, seeds=1)
    killer = f"""
        import os, signal
        from mmlbench.plan.tuning import trial
        real = trial.train_run
        def killing(config, options, *, on_epoch, test):
            def hook(log):
                on_epoch(log)
                if options.marks["trial"] == 1 and log.epoch == 2:
                    os.kill(os.getpid(), signal.{kill})
            return real(config, options, on_epoch=hook, test=test)
        trial.train_run = killing
    """
    killed = subprocess.run(_script(killer, args), env=ENV, capture_output=True, text=True, timeout=600)
    assert killed.returncode == code, killed.stderr
    ((_, before),) = journal_trials(results).items()
    assert [t["state"] for t in before] == left

    trained: list[tuple[float, int]] = []
    real_epoch = Trainer._train_epoch
    Trainer._train_epoch = lambda self, n: trained.append((self.config.lr, n)) or real_epoch(self, n)
    try:
        finished = runner.invoke(app, [*args, "--format", "json"])
    finally:
        Trainer._train_epoch = real_epoch
    assert finished.exit_code == 0, finished.output
    ((_, after),) = journal_trials(results).items()
    done = budget_order(after)
    assert [t["state"] for t in done] == ["COMPLETE"] * 3 and after[1]["attrs"]["given_back"] and len(after) == 4
    assert done[1]["params"] == before[1]["params"]  # the killed trial, enqueued again
    assert trained[0] == (done[1]["params"]["lr"], 3)  # resumed after its epoch 2; trial 0 never trained again
    assert done[0]["params"]["lr"] not in {lr for lr, _ in trained}
    assert no_live_claims(results)


def test_two_tunes_at_once_on_one_store_train_each_run_once_and_share_the_budget(tmp_path):
    """A space of two settings, 4 trials: two processes tune the same study at once. The budget holds
    (4 finished trials), and each setting's run is trained once in all: the other trials reuse it."""
    data, results, log = make_tune_data(tmp_path / "d"), tmp_path / "r", tmp_path / "trained.log"
    experiment = tmp_path / "two.toml"
    experiment.write_text("[search]\nlr = [0.01, 0.02]\nl2 = false\ndropout = false\nscore = false\n")
    args = tune_args(data, results, "--config", str(experiment), "--format", "json", trials=4, seeds=1)
    logging = f"""
        import os, pathlib, time
        from mmlbench.runs import single
        real = single.train_claimed
        def logged(config, *args, **kwargs):
            with open({str(log)!r}, "a") as handle:
                handle.write(f"{{config.lr}} {{config.seed}}\\n")
            return real(config, *args, **kwargs)
        single.train_claimed = logged
        ready = pathlib.Path({str(tmp_path)!r}) / f"ready-{{os.getpid()}}"
        ready.touch()
        deadline = time.monotonic() + 300
        while len(list(ready.parent.glob("ready-*"))) < 2 and time.monotonic() < deadline:  # both start tuning together
            time.sleep(0.01)
    """
    both = [subprocess.Popen(_script(logging, args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs
    lines = log.read_text().splitlines()
    assert sorted(lines) == sorted(set(lines)) and len(lines) == 2  # each setting trained once, in one process
    ((_, trials),) = journal_trials(results).items()
    assert len(budget_order(trials)) == 4 and all(t["state"] == "COMPLETE" for t in trials)
    tuned = store.read_runs(results)
    assert len(tuned) == 2 and (tuned["selection"] == "tuned").sum() == 1
    bests = [json.loads(out)["cells"][0]["best"] for out, _ in outputs]
    assert bests[0] == bests[1]


def test_jobs_2_runs_the_trials_in_two_worker_processes(tmp_path):
    data, results = make_tune_data(tmp_path / "d"), tmp_path / "r"
    tuned = runner.invoke(app, tune_args(data, results, "--jobs", "2", "--format", "json", trials=4, seeds=2))
    assert tuned.exit_code == 0, tuned.output
    (cell,) = document(tuned)["cells"]
    assert cell["trials"]["finished"] == 4 and cell["final"]["n"] == 2
    ((_, trials),) = journal_trials(results).items()
    owners = {t["attrs"]["owner"]["pid"] for t in trials}
    assert len(owners) == 2 and os.getpid() not in owners  # the two workers, not this process
    assert no_live_claims(results)


def test_ray_runs_each_trial_as_a_task_and_the_final_seeds_too(local_ray, tmp_path):
    """A space of one setting, which `train` ran before: the trials run as Ray tasks (reusing that run and
    reporting its curve), the base seed's final is that run, marked tuned by the driver, seed 2020 a task."""
    data, results, experiment = make_tune_data(tmp_path / "d"), tmp_path / "r", tmp_path / "one.toml"
    experiment.write_text("[search]\nlr = [0.01]\nl2 = false\ndropout = false\nscore = false\n")
    trained = runner.invoke(app, ["train", "--dataset", "planted", "--data-dir", str(data), "--results-dir", str(results),
                                  "--lr", "0.01", *FAST])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    tuned = runner.invoke(app, tune_args(data, results, "--config", str(experiment), "--backend", "ray", "--format", "json", trials=2, seeds=2))
    assert tuned.exit_code == 0, tuned.output
    (cell,) = document(tuned)["cells"]
    assert cell["trials"]["finished"] == 2 and [run["status"] for run in cell["final"]["runs"]] == ["skipped", "completed"]
    ((_, trials),) = journal_trials(results).items()
    assert os.getpid() not in {t["attrs"]["owner"]["pid"] for t in trials}  # asked and told by Ray's workers
    assert all(t["intermediate"] for t in trials)  # which reported the epochs
    runs = store.read_runs(results)
    assert sorted(runs["seed"]) == [2019, 2020] and set(runs["selection"]) == {"tuned"} and set(runs["study"]) == {cell["study"]}
