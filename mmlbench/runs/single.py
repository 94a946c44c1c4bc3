"""One run end to end: config -> data -> model -> fit -> test evaluation (unless left out) -> run folder."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mmlbench import store
from mmlbench.config import RunConfig
from mmlbench.console import warn
from mmlbench.data.dataset import InteractionData
from mmlbench.engine.device import device_name, matmul_precision, peak_memory_bytes, reset_peak_memory
from mmlbench.engine.trainer import EpochLog, FitResult, StopFit, Trainer
from mmlbench.fsutil import is_disk_full
from mmlbench.provenance import versions
from mmlbench.runs import build, resume, trained
from mmlbench.runs.options import RunOutcome, TrainOptions
from mmlbench.runs.preflight import prepare
from mmlbench.runs.progress import TrainingProgress
from mmlbench.store import claims, ids
from mmlbench.store.ids import claimed_run


EpochHook = Callable[[EpochLog], None]  # raising StopFit there stores the run as pruned
__all__ = [
    "EpochHook", "EpochLog", "StopFit", "finish_run", "now", "reuse", "reused_run", "run_row", "store_failure", "train_claimed",
    "train_run",
]


def train_run(config: RunConfig, options: TrainOptions, *, on_epoch: EpochHook | None = None, test: bool = True) -> RunOutcome:
    """Train one run and store it; a completed run with the same config hash is reused.

    The run is claimed in the store while it trains: claims.ClaimedElsewhere when another
    live process is training the same config. `on_epoch(log)` sees each epoch once it is
    evaluated (its validation metrics in `log.metrics` when due); a KeyboardInterrupt raised there
    stops the run as Ctrl-C does, a StopFit (a tuner's pruner) stores it as `pruned`.

    With `test` off (a tuner selecting on the validation split) the test evaluation is left out:
    the run is stored with status `trained` (its curve and best weights, no test metric), and a
    trained or completed run of the config is reused. Training a trained config again with `test`
    on evaluates its stored weights on test once (runs.trained) instead of training it again.
    """
    config, device, data = prepare(config, options)
    results_dir = options.results_dir
    config_hash = config.hash(data.fingerprint)
    run_id = ids.run_id(config, config_hash)
    reused = reuse(results_dir, config_hash, options, trained_id=None if test else run_id)
    if reused is not None:
        return reused
    with claims.claimed(results_dir, config_hash, claimed_run(config, config_hash)):
        # Checked again under the claim: another sweep may have finished it since.
        reused = reuse(results_dir, config_hash, options, trained_id=None if test else run_id)
        if reused is not None:
            return reused
        record = trained.tested(results_dir, run_id, config_hash, config, data, device, options) if test and not options.force else None
        if record is not None:
            run_dir = _store(results_dir, record.row, record.curve, record.per_user, None, record.extra_files)
            return RunOutcome(run_dir, store.read_run(run_dir))
        return train_claimed(config, options, device, data, results_dir, on_epoch=on_epoch, test=test)


def reuse(results_dir: Path, config_hash: str, options: TrainOptions, *, trained_id: str | None = None) -> RunOutcome | None:
    """The completed run of this config hash as a skipped outcome, unless absent or --force; also
    the trained run `trained_id` (a run id), for a run that leaves its test evaluation out (a
    trial, which reuses a run without marking it)."""
    if options.force:
        return None
    existing = store.find_completed(results_dir, config_hash)
    if existing is not None:
        return reused_run(existing, options) if trained_id is None else RunOutcome(existing, store.read_run(existing), skipped=True)
    if trained_id is not None:
        trained_dir = store.find_stored(results_dir, trained_id, config_hash, store.STATUS_TRAINED)
        if trained_dir is not None:
            return RunOutcome(trained_dir, store.read_run(trained_dir), skipped=True)
    return None


def reused_run(run_dir: Path, options: TrainOptions) -> RunOutcome:
    """A completed run, reused: it takes `options.marks` (a tuner's final seed that is a run trained
    before becomes the tuned run of that setting)."""
    row = store.read_run(run_dir)
    marks = {name: value for name, value in options.marks.items() if row.get(name) != value}
    if marks:
        store.set_columns(run_dir, marks)
        row = store.read_run(run_dir)
    return RunOutcome(run_dir, row, skipped=True)


def train_claimed(
    config: RunConfig, options: TrainOptions, device: torch.device, data: InteractionData, results_dir: Path,
    *, on_epoch: EpochHook | None = None, test: bool = True,
) -> RunOutcome:
    """Train one run alone and store it (see train_run); the caller holds its claim and has checked it is not done."""
    config_hash = config.hash(data.fingerprint)
    run_id = ids.run_id(config, config_hash)
    resume_folder = ids.resume_folder(results_dir, run_id)
    if options.force or not options.resume:
        resume.discard(resume_folder)
    torch.manual_seed(config.seed)
    reset_peak_memory(device)
    model = build.model(config, data, device)
    started_at, started = now(), time.perf_counter()
    checkpoints = resume.Checkpoints(
        resume_folder, options.checkpoint_every,
        lambda fit, snapshot: resume.capture(trainer, fit, config_hash, snapshot=snapshot),
    )
    with matmul_precision(config.precision):  # training and the test evaluation alike
        with TrainingProgress(config, quiet=options.quiet) as progress:
            trainer = Trainer(
                config, data, build.parts(config, data, model), device,
                eval_batch_users=options.eval_batch_users, cuda_graphs=options.cuda_graphs,
                on_epoch=_then(progress.epoch_done, on_epoch), on_batch=progress.batch_done,
                on_checkpoint=checkpoints.epoch_closed, warn=warn,
            )
            resumed = resume.load(resume_folder, trainer, config_hash)  # after seeding and building: overrides both
            resumed_from = len(resumed.epochs) if resumed is not None else 0
            resume.announce(run_id, resumed_from, quiet=options.quiet)
            progress.start(trainer.batches_per_epoch, first_epoch=resumed_from + 1)
            row = run_row(config, data, device, started_at) | {"resumed_from_epoch": resumed_from, **options.marks}
            try:
                fit = trainer.fit(resumed)
            except store.StoreUnwritable:
                raise  # nothing more can be written: the sweep stops with this line
            except Exception as exc:  # divergence, out of memory, ...: leave a record of the failure
                checkpoints.flush()  # the last epoch that finished
                store_failure(results_dir, row, exc)
                raise
        if fit.interrupted:
            checkpoints.flush()
        try:
            return finish_run(results_dir, row, trainer, fit, started, cuda_graphs=trainer.step.use_graph, test=test)
        except BaseException:  # Ctrl-C or an error (out of memory) at the test evaluation: resumable after its last epoch
            checkpoints.flush()
            raise


def _then(first: EpochHook, second: EpochHook | None) -> EpochHook:
    if second is None:
        return first

    def both(log: EpochLog) -> None:
        first(log)
        second(log)

    return both


def run_row(
    config: RunConfig, data: InteractionData, device: torch.device, started_at: str, *, lockstep_group: int = 1
) -> dict[str, Any]:
    """The run row's columns known before training: ids, config, provenance, how it is executed.

    `execution` says whether the run trained alone or in a lockstep group of `lockstep_group`
    runs sharing one step (engine.lockstep); it does not enter the config hash: a run trained
    either way is the same cell. (`precision`, the arithmetic of its matrix products, is a
    setting: in the config columns and, when not fp32, in the hash.)
    """
    config_hash = config.hash(data.fingerprint)
    return {
        "run_id": ids.run_id(config, config_hash),
        "config_hash": config_hash,
        "setting_hash": config.hash(data.fingerprint, with_seed=False),
        "protocol": data.protocol,
        "dataset_sha256": data.fingerprint,
        "n_items": data.n_items,  # the catalogue: what negatives = all means
        **config.to_row(),
        **versions(),
        "device": device.type,
        "device_name": device_name(device),
        "cpu_threads": torch.get_num_threads(),  # what the timings were measured with (a --jobs worker: its share of the cores)
        "started_at": started_at,
        "execution": "lockstep" if lockstep_group > 1 else "alone",
        "lockstep_group": lockstep_group,
    }


def store_failure(results_dir: Path, row: dict[str, Any], exc: BaseException) -> None:
    """Leave a record of a run that failed while training (divergence, out of memory, ...)."""
    _store(results_dir, {**row, "status": store.STATUS_FAILED, "error": str(exc)}, None, None, None)


def finish_run(
    results_dir: Path, row: dict[str, Any], trainer: Trainer, fit: FitResult, started: float, *, cuda_graphs: bool,
    test: bool = True,
) -> RunOutcome:
    """After the fit: the best weights evaluated on test (unless `test` is off) and the run folder written.

    Status: interrupted, pruned (the fit was stopped: no test evaluation and no checkpoint),
    completed, or trained when `test` is off. A finished run's resume checkpoint is removed only
    then: a kill before that resumes at the test evaluation. `started` is the perf_counter time
    the run started at.
    """
    config, data, device, model = trainer.config, trainer.data, trainer.device, trainer.model
    status = _status(fit, test)
    if fit.best_state is not None:
        model.load_state_dict(fit.best_state)
    row = {**row, **_costs(fit, data, config, device, time.perf_counter() - started)}
    row.update({"status": status, "error": "", "best_epoch": fit.best_epoch, "epochs_run": len(fit.epochs)})
    row["cuda_graphs"] = cuda_graphs  # False if capture failed and training fell back
    row["monitor_value"] = fit.best_value
    per_user = None
    if test and not fit.stopped:
        evaluation = trainer.evaluate("test", per_user=True)
        row.update({"test_eval_seconds": evaluation.seconds, **evaluation.metrics})
        per_user = evaluation.per_user
    checkpoint = None if fit.stopped else _checkpoint(model, config, data)
    run_dir = _store(results_dir, row, _curve(fit), per_user, checkpoint)
    if status != store.STATUS_INTERRUPTED:
        resume.discard(ids.resume_folder(results_dir, str(row["run_id"])))
    return RunOutcome(run_dir, store.read_run(run_dir))


def _status(fit: FitResult, test: bool) -> str:
    if fit.interrupted:
        return store.STATUS_INTERRUPTED
    if fit.stopped:
        return store.STATUS_PRUNED
    return store.STATUS_COMPLETED if test else store.STATUS_TRAINED


def _store(
    results_dir: Path,
    row: dict[str, Any],
    curve: pd.DataFrame | None,
    per_user: pd.DataFrame | None,
    checkpoint: dict[str, Any] | None,
    files: dict[str, bytes] | None = None,
) -> Path:
    row = {**row, "finished_at": now()}
    try:
        return store.write_run(results_dir, store.RunRecord(row, curve, per_user, checkpoint, files or {}))
    except (OSError, RuntimeError) as exc:  # write_run has removed its temporary folder
        if is_disk_full(exc):
            raise store.StoreUnwritable(f"disk full while writing {row['run_id']} to {store.runs_dir(results_dir)}") from exc
        raise


def _costs(fit: FitResult, data: InteractionData, config: RunConfig, device: torch.device, wall: float) -> dict:
    epoch_median = fit.epoch_seconds_median
    pairs_per_epoch = data.train_items.numel()
    if config.last_batch == "wrap":
        pairs_per_epoch = math.ceil(pairs_per_epoch / config.batch_size) * config.batch_size
    return {
        "epoch_seconds_median": epoch_median,
        "eval_seconds_median": fit.eval_seconds_median,
        "train_seconds_total": sum(e.epoch_seconds for e in fit.epochs),
        "wall_seconds": wall,
        "samples_per_second": pairs_per_epoch / epoch_median if epoch_median > 0 else math.nan,
        "peak_memory_bytes": peak_memory_bytes(device),
    }


def _curve(fit: FitResult) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "epoch": e.epoch, "loss": e.loss, "violations": e.violations, "lr": e.lr,
                "epoch_seconds": e.epoch_seconds, "eval_seconds": e.eval_seconds, **e.metrics,
            }
            for e in fit.epochs
        ]
    )


def _checkpoint(model: torch.nn.Module, config: RunConfig, data: InteractionData) -> dict:
    return {
        "format": 1,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config.to_row(),
        "n_users": data.n_users,
        "n_items": data.n_items,
        "dataset_fingerprint": data.fingerprint,
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
