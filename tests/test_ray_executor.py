"""`train --backend ray`: the runs of a sweep as Ray tasks, on one local Ray instance with 2 CPUs.

One instance serves the whole module (starting one takes seconds). Known pitfalls on one
machine: without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 Ray rewrites 127.0.0.1 to the primary
interface; a local ray.init writes an auth token that later drivers need unless
RAY_AUTH_MODE=disabled; `ray stop` would kill every Ray process of the machine, so the
instance is only ever shut down with ray.shutdown().
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmlbench import store
from mmlbench.cli import app
from mmlbench.config import RunConfig
from mmlbench.errors import MMLBenchError
from mmlbench.plan.executors import RAY_EXTRA, BackendOptions, get_executor
from mmlbench.plan.executors import ray as ray_backend
from mmlbench.plan.executors.base import fingerprint_of
from mmlbench.plan.executors.ray_worker import run_cell
from mmlbench.plan.sweep import CANCELLED, run_sweep, was_interrupted
from mmlbench.runs import resume
from mmlbench.runs.options import TrainOptions
from mmlbench.store import claims, ids
from waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "results" / "baselines"
FAST = ["--negatives", "5", "--batch-size", "64", "--epochs", "2", "--device", "cpu", "-q"]
runner = CliRunner()


@pytest.fixture(scope="module")
def ci_data(tmp_path_factory):
    """The planted CI benchmark's data (results/baselines), preprocessed as run_ci_benchmark.sh does."""
    data = tmp_path_factory.mktemp("ci") / "data"
    result = runner.invoke(app, [
        "preprocess", "--input", str(BASELINES / "ci-interactions.csv"), "--name", "ci-planted", "--user-col", "user",
        "--item-col", "item", "--split", "random:0.2", "--seed", "7", "--data-dir", str(data),
    ])
    assert result.exit_code == 0, result.output
    return data


def _train_ci(data: Path, results: Path, *args: str):
    """The CI grid (4 losses), 5 of its 15 epochs: seconds of CPU per run."""
    return runner.invoke(app, [
        "train", "--config", str(BASELINES / "ci.toml"), "--data-dir", str(data), "--results-dir", str(results),
        "--epochs", "5", "--device", "cpu", "-q", *args,
    ])


@pytest.fixture(scope="module")
def ci_on_ray(local_ray, ci_data, tmp_path_factory):
    """The CI grid trained with --backend ray into a shared store."""
    results = tmp_path_factory.mktemp("ray") / "results"
    result = _train_ci(ci_data, results, "--backend", "ray")
    assert result.exit_code == 0, result.output
    return results


def _metrics(results: Path) -> dict[str, dict[str, float]]:
    runs = store.read_runs(results)
    columns = [c for c in runs.columns if "@" in c]
    return {row["run_id"]: {c: row[c] for c in ["status", *columns]} for _, row in runs.iterrows()}


def test_the_ci_grid_on_ray_gives_the_local_backends_metrics_cell_for_cell(ci_on_ray, ci_data, tmp_path):
    local = _train_ci(ci_data, tmp_path / "local")
    assert local.exit_code == 0, local.output
    on_ray, on_this_machine = _metrics(ci_on_ray), _metrics(tmp_path / "local")
    assert len(on_ray) == 4 and {cell["status"] for cell in on_ray.values()} == {store.STATUS_COMPLETED}
    assert on_ray == on_this_machine


def test_completed_cells_are_never_submitted_again(ci_on_ray, ci_data, monkeypatch):
    class NoSubmission:
        def options(self, **resources):
            raise AssertionError("a completed cell was submitted")

    monkeypatch.setattr(ray_backend, "_remote_cell", NoSubmission())
    again = _train_ci(ci_data, ci_on_ray, "--backend", "ray", "--format", "json")
    assert again.exit_code == 0, again.output
    assert '"skipped": 4' in again.stdout


def test_ship_results_writes_the_same_folders_as_a_shared_store(ci_on_ray, ci_data, tmp_path):
    shipped = tmp_path / "shipped"
    result = _train_ci(ci_data, shipped, "--backend", "ray", "--ship-results")
    assert result.exit_code == 0, result.output
    folders = {d.name: sorted(p.name for p in d.iterdir()) for d in store.iter_run_dirs(shipped)}
    assert folders == {d.name: sorted(p.name for p in d.iterdir()) for d in store.iter_run_dirs(ci_on_ray)}
    assert _metrics(shipped) == _metrics(ci_on_ray)
    assert sorted(p.name for p in store.runs_dir(shipped).iterdir()) == sorted([*folders, claims.CLAIMS_DIR])
    assert list((store.runs_dir(shipped) / claims.CLAIMS_DIR).iterdir()) == []  # the driver's claims released


def test_a_failing_cell_does_not_stop_the_others(local_ray, planted_dir, tmp_path):
    # --negatives 100 with uniform-exclude-pos is impossible on 60 items; 5 is fine.
    result = runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), *FAST,
        "--sampler", "uniform-exclude-pos", "--negatives", "5,100", "--backend", "ray",
    ])
    assert result.exit_code == 1
    assert "1 of 2 runs failed" in result.stderr and "--negatives 100 is more than" in result.stdout
    assert store.read_runs(tmp_path / "r")[["negatives", "status"]].values.tolist() == [[5, store.STATUS_COMPLETED]]


def test_a_worker_with_other_data_fails_its_cell_clearly(planted_dir, tmp_path):
    options = TrainOptions(device="cpu", data_dir=planted_dir, results_dir=tmp_path / "r", quiet=True)
    result = run_cell(RunConfig("planted", negatives=5, epochs=1), options, "0" * 64, False)
    assert result.entry.status == store.STATUS_FAILED
    found = fingerprint_of("planted", planted_dir)
    assert f"has fingerprint {found[:12]}, not 000000000000 as where the sweep was planned" in result.entry.error
    assert not (tmp_path / "r").exists()  # nothing trained


# A run long enough to be killed mid-way, its resume checkpoint written after every epoch
# (checkpoint_every=0): `_worker_training` waits for the first one.
SLOW = dict(loss="bpr", negatives=5, batch_size=64, epochs=150, patience=150, eval_every=150)


def _sweep_in_background(planted_dir: Path, results: Path, configs: list[RunConfig]):
    options = TrainOptions(device="cpu", data_dir=planted_dir, results_dir=results, quiet=True, checkpoint_every=0)
    entries: list = []
    thread = threading.Thread(target=lambda: entries.extend(run_sweep(configs, options, executor=get_executor("ray"))))
    thread.start()
    return thread, entries


def _worker_training(results: Path, config: RunConfig, planted_dir: Path, other_than: int = 0) -> int:
    """The pid of the worker training `config`, once it has finished an epoch (read from its claim)."""
    config_hash = config.hash(fingerprint_of(config.dataset, planted_dir))
    checkpoint = ids.resume_folder(results, ids.run_id(config, config_hash)) / resume.STATE_FILE

    def training_pid() -> int:
        held = claims.read_claim(claims.claim_path(results, config_hash))
        return held.pid if held and held.pid != other_than and checkpoint.is_file() else 0

    return wait_until(training_pid, f"a Ray worker to train seed {config.seed} for an epoch")


def test_ctrl_c_interrupts_the_running_cells_and_cancels_the_queued_one(local_ray, planted_dir, tmp_path):
    results = tmp_path / "r"
    configs = [RunConfig("planted", **{**SLOW, "epochs": 100_000, "patience": 100_000, "seed": seed}) for seed in (1, 2, 3)]
    options = TrainOptions(device="cpu", data_dir=planted_dir, results_dir=results, quiet=True, checkpoint_every=0)
    claimed = store.runs_dir(results) / claims.CLAIMS_DIR

    def interrupt_once_two_train() -> None:  # 2 CPUs: two cells run, one waits
        for config in configs[:2]:
            _worker_training(results, config, planted_dir)
        os.kill(os.getpid(), signal.SIGTERM)  # run_sweep turns it into a KeyboardInterrupt, as Ctrl-C

    threading.Thread(target=interrupt_once_two_train, daemon=True).start()
    entries = run_sweep(configs, options, executor=get_executor("ray"))
    assert was_interrupted(entries)
    assert sorted(entry.status for entry in entries) == [CANCELLED, store.STATUS_INTERRUPTED, store.STATUS_INTERRUPTED], [
        (entry.status, entry.error, entry.traceback) for entry in entries]
    assert sorted(store.read_runs(results)["status"]) == [store.STATUS_INTERRUPTED] * 2  # what ran is kept
    assert list(claimed.iterdir()) == []


@pytest.mark.parametrize("deaths", [1, 2])
def test_a_killed_worker_is_retried_once_and_resumes(local_ray, planted_dir, tmp_path, deaths):
    results, config = tmp_path / "r", RunConfig("planted", **SLOW)
    thread, entries = _sweep_in_background(planted_dir, results, [config])
    killed = 0
    for _ in range(deaths):
        killed = _worker_training(results, config, planted_dir, other_than=killed)
        os.kill(killed, signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive(), "the sweep did not end"
    [entry] = entries
    if deaths == 1:
        assert entry.status == store.STATUS_COMPLETED, entry.error
        assert entry.outcome.row["resumed_from_epoch"] >= 1  # the retry went on from the killed run's checkpoint
    else:
        assert entry.status == store.STATUS_FAILED
        assert "the Ray worker or node running it died (2 tries)" in entry.error
        assert store.read_runs(results).empty


def _one_line_refusal(result, message: str, results: Path) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [f"error: {message}"]
    assert not results.exists()  # nothing submitted, nothing written


@pytest.mark.parametrize(("request_", "message"), [
    (["--cpus-per-run", "64"], "no node of the Ray cluster can take a run with --cpus-per-run 64 and --gpus-per-run 0 (its nodes have at most 2 CPUs and 0 GPUs); nothing was submitted"),
    (["--gpus-per-run", "1"], "no node of the Ray cluster can take a run with --cpus-per-run 1 and --gpus-per-run 1 (its nodes have at most 2 CPUs and 0 GPUs); nothing was submitted"),
])
def test_a_request_no_node_can_meet_is_refused_before_submitting(local_ray, planted_dir, tmp_path, request_, message):
    result = runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), *FAST,
        "--backend", "ray", *request_,
    ])
    _one_line_refusal(result, message, tmp_path / "r")


def test_the_backend_without_the_extra_is_one_line_naming_it(planted_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the extra
    result = runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), *FAST,
        "--backend", "ray",
    ])
    _one_line_refusal(result, RAY_EXTRA, tmp_path / "r")
    assert RAY_EXTRA == "--backend ray needs the ray extra: pip install 'mmlbench[ray]'"


@pytest.mark.parametrize(("args", "message"), [
    (["--address", "auto"], "for --backend ray only: --address"),
    (["--gpus-per-run", "0.5", "--ship-results"], "for --backend ray only: --gpus-per-run, --ship-results"),
    (["--backend", "ray", "--jobs", "2"], "--jobs is for --backend local; on Ray, --gpus-per-run and --cpus-per-run decide how many runs share a node"),
])
def test_options_of_the_other_backend_are_one_line(planted_dir, tmp_path, args, message):
    result = runner.invoke(app, [
        "train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), *FAST, *args,
    ])
    _one_line_refusal(result, message, tmp_path / "r")


ONE_GPU_NODES = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]


@pytest.mark.parametrize(("settings", "device", "expected"), [
    (BackendOptions(), "auto", {"num_cpus": 1.0, "num_gpus": 1.0}),  # GPUs on the cluster: one per run
    (BackendOptions(), "cpu", {"num_cpus": 1.0, "num_gpus": 0.0}),
    (BackendOptions(gpus_per_run=0.5, cpus_per_run=4), "auto", {"num_cpus": 4.0, "num_gpus": 0.5}),
])
def test_task_resources_default_to_one_gpu_where_the_cluster_has_gpus(settings, device, expected):
    assert ray_backend.task_resources(settings, device, ONE_GPU_NODES) == expected


@pytest.mark.parametrize(("settings", "device", "message"), [
    (BackendOptions(gpus_per_run=2), "auto", "no node of the Ray cluster can take a run with --cpus-per-run 1 and --gpus-per-run 2 (its nodes have at most 8 CPUs and 1 GPUs)"),
    (BackendOptions(gpus_per_run=1.5), "auto", r"--gpus-per-run 1.5: above 1 it must be a whole number"),
    (BackendOptions(gpus_per_run=0), "cuda", "--device cuda with --gpus-per-run 0"),
])
def test_task_resources_refuse_what_no_node_has(settings, device, message):
    with pytest.raises(MMLBenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ray_backend.task_resources(settings, device, ONE_GPU_NODES)


@pytest.mark.parametrize(("device", "gpus", "expected"), [("auto", 0.0, "cpu"), ("auto", 0.5, "auto"), ("cpu", 0.0, "cpu")])
def test_a_run_holding_no_gpu_never_picks_one(device, gpus, expected):
    assert ray_backend.worker_device(device, {"num_cpus": 1.0, "num_gpus": gpus}) == expected


def test_packing_fractions_of_a_gpu_counts_the_runs_a_cluster_holds():
    assert ray_backend.capacity({"num_cpus": 1.0, "num_gpus": 0.5}, ONE_GPU_NODES) == 4
    assert ray_backend.capacity({"num_cpus": 3.0, "num_gpus": 0.0}, ONE_GPU_NODES) == 4


def test_help_and_the_local_backend_never_import_ray(planted_dir, tmp_path):
    script = (
        "import sys\nfrom mmlbench.cli import app\n"
        "for args in (['train', '--help'], sys.argv[1:]):\n"
        "    try:\n        app(args)\n    except SystemExit as exc:\n        assert not exc.code, exc.code\n"
        "print('ray imported:', 'ray' in sys.modules)\n"
    )
    train = ["train", "--dataset", "planted", "--data-dir", str(planted_dir), "--results-dir", str(tmp_path / "r"), *FAST]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", script, *train], capture_output=True, text=True, env=env, timeout=600)
    assert result.stdout.strip().splitlines()[-1] == "ray imported: False", result.stdout + result.stderr
