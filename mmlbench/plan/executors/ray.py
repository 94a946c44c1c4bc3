"""The Ray executor (`--backend ray`): one Ray task per run still to run, on a cluster or a local instance.

The plan runs here, on the driver (`base.plan`): a completed run is read back and never
submitted again, a run claimed by a live process is skipped. Every other run is one task
calling `run_task` on a worker (so `--device auto` resolves there), holding `--cpus-per-run`
CPUs and `--gpus-per-run` GPUs of Ray's resources. A request that no node can meet is refused
before anything is submitted, where Ray would leave it pending for ever.

Results: by default the workers write into the store themselves (`--results-dir` and
`--data-dir` must be the same paths on every node), claims included. With `ship_results` a
worker trains into a scratch store and returns the run folders as files; the driver claims
the runs in its store and writes the folders (`store.write_run_files`, atomic). Either way a
worker first checks that its processed data has the fingerprint the driver planned with.

Failures: a run that raises is its entry, as everywhere (not retried). A worker or node that
dies is retried once by Ray (`max_retries`), then the run is a failed entry. Ctrl-C (or
SIGTERM, through run_sweep) cancels the outstanding tasks: a running one gets a
KeyboardInterrupt (held until a write in progress is done, fsutil.interrupts_held), so its
run is stored as interrupted, and the driver waits for it; the others come back CANCELLED.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import ray
from ray import exceptions as ray_errors

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.console import ProgressBar
from mmlbench.errors import MMLBenchError
from mmlbench.paths import data_home
from mmlbench.plan.executors import BackendOptions
from mmlbench.plan.executors.base import CANCELLED, CLAIMED, SweepEntry, fingerprint_of, plan
from mmlbench.plan.executors.ray_connect import connected
from mmlbench.plan.executors.ray_worker import CellResult, run_cell
from mmlbench.runs.options import TrainOptions
from mmlbench.runs.single import reused_run
from mmlbench.store import claims

SYSTEM_RETRIES = 1  # a dead worker or node: Ray runs the task once more, then it is a failed run
POLL_SECONDS = 0.5  # how often the progress line is refreshed while nothing finishes

_remote_cell = ray.remote(max_retries=SYSTEM_RETRIES, retry_exceptions=False)(run_cell)


def make(settings: BackendOptions) -> RayExecutor:
    """A Ray cluster, or a local Ray instance: one Ray task per run (the `ray` extra)."""
    return RayExecutor(settings)


class RayExecutor:
    """Runs the configs of a sweep as Ray tasks; see the module docstring."""

    def __init__(self, settings: BackendOptions) -> None:
        self.settings = settings

    def run(self, configs: list[RunConfig], options: TrainOptions) -> list[SweepEntry]:
        # Absolute paths: a worker's working folder is not the driver's.
        options = dataclasses.replace(
            options, data_dir=data_home(options.data_dir).absolute(), results_dir=options.results_dir.absolute()
        )
        with connected(self.settings.address, quiet=options.quiet, timeout=self.settings.connect_timeout):
            nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
            resources = task_resources(self.settings, options.device, nodes)
            sweep = _Sweep(options, resources, self.settings.ship_results, SweepProgress(len(configs), capacity(resources, nodes), options.quiet))
            return sweep.run(configs)


def task_resources(settings: BackendOptions, device: str, nodes: list[dict[str, float]]) -> dict[str, float]:
    """The Ray resources of one run, checked against what the live nodes have (their 'Resources')."""
    cpus = 1.0 if settings.cpus_per_run is None else float(settings.cpus_per_run)
    gpus = settings.gpus_per_run
    if gpus is None:
        gpus = 1.0 if device != "cpu" and any(node.get("GPU", 0) > 0 for node in nodes) else 0.0
    if gpus > 1 and not float(gpus).is_integer():
        raise MMLBenchError(f"--gpus-per-run {gpus:g}: above 1 it must be a whole number (Ray shares single GPUs only)")
    if device == "cuda" and gpus == 0:
        raise MMLBenchError("--device cuda with --gpus-per-run 0: the runs would get no GPU (give --gpus-per-run)")
    if not any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
        most_cpus = max((node.get("CPU", 0) for node in nodes), default=0)
        most_gpus = max((node.get("GPU", 0) for node in nodes), default=0)
        raise MMLBenchError(
            f"no node of the Ray cluster can take a run with --cpus-per-run {cpus:g} and --gpus-per-run {gpus:g}"
            f" (its nodes have at most {most_cpus:g} CPUs and {most_gpus:g} GPUs); nothing was submitted"
        )
    return {"num_cpus": cpus, "num_gpus": float(gpus)}


def worker_device(device: str, resources: dict[str, float]) -> str:
    """The --device a worker gets: 'auto' without a GPU among its resources is the CPU.

    Ray leaves CUDA_VISIBLE_DEVICES alone for a task that holds no GPU, so 'auto' would
    otherwise train on a GPU that Ray has handed to other runs.
    """
    return "cpu" if device == "auto" and resources["num_gpus"] == 0 else device


def capacity(resources: dict[str, float], nodes: list[dict[str, float]]) -> int:
    """How many runs the live nodes hold at once (if nothing else uses them): the progress line's 'running'."""
    total = 0
    for node in nodes:
        fits = [int(node.get(name, 0) // need) for name, need in (("CPU", resources["num_cpus"]), ("GPU", resources["num_gpus"])) if need > 0]
        total += min(fits) if fits else 1_000_000
    return total


class SweepProgress(ProgressBar):
    """One line for the whole sweep: runs done, running, failed, to run.

    'Running' is what the cluster holds at once (`capacity`) of the submitted runs: Ray does not
    tell the driver when a queued task starts. Shown at a terminal only, as the training bars.
    """

    def __init__(self, total: int, capacity: int, quiet: bool) -> None:
        self.total, self.capacity = total, capacity
        self.done = self.failed = 0
        super().__init__(quiet)
        self.task = self.bar.add_task("", total=total) if self.bar is not None else None

    def finished(self, entry: SweepEntry, pending: int) -> None:
        if entry.status == store.STATUS_FAILED:
            self.failed += 1
        else:
            self.done += 1
        self.update(pending)

    def update(self, pending: int) -> None:
        running = min(pending, self.capacity)
        text = f"ray: {self.done} done · {running} running · {self.failed} failed · {self.total - self.done - self.failed - running} to run"
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, description=text, completed=self.done + self.failed)


class _Sweep:
    """One sweep on the cluster: submit the runs to do, collect them, stop them on Ctrl-C."""

    def __init__(self, options: TrainOptions, resources: dict[str, float], ship: bool, progress: SweepProgress) -> None:
        self.options, self.resources, self.ship, self.progress = options, resources, ship, progress
        self.results_dir = Path(options.results_dir)  # type: ignore[arg-type] - made absolute by RayExecutor.run
        # Quiet: progress bars of many runs would interleave.
        self.worker_options = dataclasses.replace(options, quiet=True, device=worker_device(options.device, resources))
        self.entries: dict[int, SweepEntry] = {}
        self.pending: dict[ray.ObjectRef, tuple[int, RunConfig]] = {}
        self.held: dict[int, claims.Claim] = {}  # ship_results: the driver holds the claims

    def run(self, configs: list[RunConfig]) -> list[SweepEntry]:
        with self.progress:
            try:
                self._submit_all(configs)
                while self.pending:
                    self._collect_ready(POLL_SECONDS)
            except KeyboardInterrupt:
                self._cancel()
            except store.StoreUnwritable:
                self._cancel(force=True)
                raise
            finally:
                for claim in self.held.values():
                    claims.release_run(claim)
        return [self.entries.get(index) or SweepEntry(config, state=CANCELLED) for index, config in enumerate(configs)]

    def _submit_all(self, configs: list[RunConfig]) -> None:
        fingerprints = {name: fingerprint_of(name, self.options.data_dir) for name in {c.dataset for c in configs}}
        completed = store.completed_runs(self.results_dir)
        for index, (config, _, state) in enumerate(plan(configs, self.options)):
            config_hash = config.hash(fingerprints[config.dataset])
            if state == "done" and config_hash in completed:
                self._finish(index, SweepEntry(config, reused_run(completed[config_hash], self.options)))
            elif state == CLAIMED or not self._claim(index, config_hash):
                self._finish(index, _claimed_elsewhere(config, self.results_dir, config_hash))
            else:  # to run (or done since `plan` looked: its task reuses the run)
                task = _remote_cell.options(**self.resources, name=SweepEntry(config).label)
                self.pending[task.remote(config, self.worker_options, fingerprints[config.dataset], self.ship)] = (index, config)
                self.progress.update(len(self.pending))

    def _claim(self, index: int, config_hash: str) -> bool:
        """With ship_results, claim the run in the driver's store (the workers' stores are scratch)."""
        if not self.ship:
            return True
        try:
            self.held[index] = claims.claim_run(self.results_dir, config_hash)
        except claims.ClaimedElsewhere:
            return False
        return True

    def _collect_ready(self, timeout: float) -> None:
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        for ref in ready:
            index, config = self.pending.pop(ref)
            self._finish(index, self._entry(ref, config))
            if self.entries[index].status == store.STATUS_INTERRUPTED:
                raise KeyboardInterrupt  # a run was stopped on its own: stop the whole sweep, as locally

    def _entry(self, ref: ray.ObjectRef, config: RunConfig) -> SweepEntry:
        try:
            result: CellResult = ray.get(ref)
        except ray_errors.TaskCancelledError:
            return SweepEntry(config, state=CANCELLED)
        except ray_errors.RayTaskError as exc:  # raised outside run_task, which turns the run's own failures into entries
            return SweepEntry(config, error=f"{type(exc.cause).__name__}: {exc.cause}", traceback=str(exc))
        except ray_errors.RayError as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            tries = 1 + SYSTEM_RETRIES
            return SweepEntry(config, error=f"the Ray worker or node running it died ({tries} tries): {type(exc).__name__}: {first_line}")
        if result.unwritable:
            raise store.StoreUnwritable(result.unwritable)
        return self._received(result) if self.ship else result.entry

    def _received(self, result: CellResult) -> SweepEntry:
        """Write the run folders a worker shipped into this store; the entry then points at them."""
        written = {run_id: store.write_run_files(self.results_dir, run_id, files) for run_id, files in result.folders.items()}
        entry = result.entry
        if entry.outcome is None:
            return entry
        run_dir = written.get(str(entry.outcome.row.get("run_id")), entry.outcome.run_dir)
        return dataclasses.replace(entry, outcome=dataclasses.replace(entry.outcome, run_dir=run_dir))

    def _finish(self, index: int, entry: SweepEntry) -> None:
        self.entries[index] = entry
        claim = self.held.pop(index, None)
        if claim is not None:
            claims.release_run(claim)
        self.progress.finished(entry, len(self.pending))

    def _cancel(self, *, force: bool = False) -> None:
        """Cancel every outstanding task and keep what the runs it interrupts send back.

        No time limit: on a busy machine a run's test evaluation and store write can take
        minutes, and a run cut off then would be lost instead of stored as interrupted. A
        second Ctrl-C (or SIGTERM) stops the wait and kills the tasks still running.
        """
        for ref in self.pending:
            ray.cancel(ref, force=force)
        try:
            while self.pending and not force:
                ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=POLL_SECONDS)
                for ref in ready:
                    index, config = self.pending.pop(ref)
                    with contextlib.suppress(store.StoreUnwritable):
                        self._finish(index, self._entry(ref, config))
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            pass
        for ref in self.pending:
            ray.cancel(ref, force=True)
        self.pending.clear()


def _claimed_elsewhere(config: RunConfig, results_dir: Path, config_hash: str) -> SweepEntry:
    held = claims.live_claim(results_dir, config_hash)
    message = str(claims.ClaimedElsewhere.by(held)) if held else "being trained by another process"
    return SweepEntry(config, error=message, state=CLAIMED)
