"""The executor seam: run_sweep hands its configs to whatever executor it is given or registered."""

from __future__ import annotations

import os
import signal

import pytest
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.config import RunConfig
from mmlbench.errors import MMLBenchError
from mmlbench.plan import executors
from mmlbench.plan.executors import BackendOptions, ExecutorSpec, get_executor
from mmlbench.plan.executors.inprocess import InProcessExecutor
from mmlbench.plan.executors.local import LocalProcessExecutor
from mmlbench.plan.sweep import CANCELLED, CLAIMED, SweepEntry, run_sweep, was_interrupted
from mmlbench.runs.options import TrainOptions

runner = CliRunner()


class RecordingExecutor:
    """A backend that trains nothing: it records what it was given and answers with `answer(config)`."""

    def __init__(self, jobs: int = 1, answer=lambda config: SweepEntry(config, state=CLAIMED)) -> None:
        self.jobs = jobs
        self.answer = answer
        self.calls: list[tuple[list[RunConfig], TrainOptions]] = []

    def run(self, configs: list[RunConfig], options: TrainOptions) -> list[SweepEntry]:
        self.calls.append((list(configs), options))
        return [self.answer(config) for config in configs]


def _options(tmp_path) -> TrainOptions:
    return TrainOptions(device="cpu", data_dir=tmp_path / "data", results_dir=tmp_path / "r", quiet=True)


def test_run_sweep_hands_every_config_to_the_executor_it_is_given(tmp_path):
    configs = [RunConfig("nowhere", loss=loss) for loss in ("ccl", "bpr", "mmcl")]
    executor = RecordingExecutor()
    entries = run_sweep(configs, _options(tmp_path), executor=executor)
    assert executor.calls == [(configs, _options(tmp_path))]
    assert [entry.config for entry in entries] == configs and {entry.status for entry in entries} == {CLAIMED}
    assert not (tmp_path / "r").exists()  # the executor, not run_sweep, decides what runs


def test_sigterm_reaches_the_executor_as_an_interrupt(tmp_path):
    """The contract: run_sweep turns SIGTERM into KeyboardInterrupt; the executor returns cancelled entries."""

    class StoppedExecutor:
        def run(self, configs, options):
            try:
                os.kill(os.getpid(), signal.SIGTERM)  # os.kill runs the handler before it returns
            except KeyboardInterrupt:
                return [SweepEntry(config, state=CANCELLED) for config in configs]
            return [SweepEntry(config) for config in configs]

    before = signal.getsignal(signal.SIGTERM)
    entries = run_sweep([RunConfig("nowhere")], _options(tmp_path), executor=StoppedExecutor())
    assert [entry.status for entry in entries] == [CANCELLED] and was_interrupted(entries)
    assert signal.getsignal(signal.SIGTERM) is before  # restored after the sweep


@pytest.mark.parametrize(("jobs", "kind"), [(1, InProcessExecutor), (3, LocalProcessExecutor)])
def test_the_local_backend_picks_processes_by_jobs(jobs, kind):
    executor = get_executor("local", BackendOptions(jobs=jobs))
    assert type(executor) is kind
    assert getattr(executor, "jobs", 1) == jobs


def test_an_unknown_backend_is_one_line_naming_the_closest():
    with pytest.raises(MMLBenchError, match=r"unknown backend 'locla'. Did you mean 'local'\? Valid: local, lockstep, ray\."):
        get_executor("locla")


_made: list[RecordingExecutor] = []


def _failing(config):
    if config.loss == "bpr":
        return SweepEntry(config, error="worker lost")
    return SweepEntry(config, state=CLAIMED)


def make(settings):
    """The factory of the recording backend registered below (an ExecutorSpec names it by module and name)."""
    _made.append(RecordingExecutor(settings.jobs, answer=_failing))
    return _made[-1]


def test_a_registered_backend_runs_trains_sweep(planted_dir, tmp_path, monkeypatch):
    """A new backend is one class plus one registry entry: `train` uses it and reports its entries."""
    _made.clear()
    made = _made
    monkeypatch.setitem(executors.EXECUTORS, "local", ExecutorSpec(f"{__name__}:make", help="records"))
    result = runner.invoke(app, [
        "train", "--dataset", "planted", "--loss", "ccl,bpr", "--jobs", "3", "--device", "cpu",
        "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), "-q",
    ])
    assert result.exit_code == 1, result.output
    [executor] = made
    assert executor.jobs == 3
    [(configs, options)] = executor.calls
    assert [config.loss for config in configs] == ["ccl", "bpr"] and options.data_dir == planted_dir
    assert "sweep: 2 runs" in result.stdout and "worker lost" in result.stdout
    assert "1 of 2 runs failed" in result.stderr
    assert store.read_runs(tmp_path / "r").empty  # nothing trained behind the executor's back
